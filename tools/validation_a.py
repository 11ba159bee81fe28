"""VALIDATION (a): emulator fits against the posterior under the SPS itself, next to the
repeat-run baseline, on the same galaxies (those every run has stored — a direct run may be
partial).

    python tools/validation_a.py EMU_S1 EMU_S2 SPS [--truth T --where 'COL > V' ...]
                                 [--check DIRECT ...] [--json OUT.json]

SPS is either a fit that called the SPS directly (`sedhpc fit --sps embedded`) or EMU_S1
re-weighted to the SPS's likelihood (`sedhpc reweight EMU_S1 --sps embedded`; then its ESS
distribution is printed too, and EMU_S1 vs SPS differ only by the weights). Prints, per
quantity, the median discrepancy statistic D, the catastrophic rate (D > 3) and the 68th
percentile of |Δ median| over the first run's 16–84 % half-width, for EMU_S1 vs SPS, EMU_S2 vs
SPS and EMU_S1 vs EMU_S2 (the repeat baseline: same emulator, other seed). ``--where`` keeps
the galaxies whose truth-table row meets the conditions (e.g. detected ones). ``--check``
compares direct-SPS fits of some of the galaxies (any catalog holding them: matched by id) with
SPS and with EMU_S2 — the check that the re-weighted posterior is the direct one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from sedhpc.report import discrepancy, load, select

NAMES = ["logmass", "logmstar", "logzsol", "dust2", "log_sfr100", "mwa_gyr"]
FIELDS = ("median_D", "catastrophic", "p68_dmedian_over_halfwidth")


def subset(run: dict, rows) -> dict:
    k = np.isin(run["row"], rows)
    n = len(run["row"])
    return {key: (v[k] if isinstance(v, np.ndarray) and len(v) == n else v)
            for key, v in run.items()}


def renumber(run: dict, ref: dict) -> dict:
    """``run`` with rows replaced by ``ref``'s rows of the same ids (ids not in ``ref``
    dropped): for runs of a sub-catalog."""
    pos = {i: r for i, r in zip(ref["id"], ref["row"])}
    keep = np.array([i in pos for i in run["id"]], bool)
    n = len(run["row"])
    out = {key: (v[keep] if isinstance(v, np.ndarray) and len(v) == n else v)
           for key, v in run.items()}
    out["row"] = np.array([pos[i] for i in out["id"]], np.int64)
    return out


def table(pairs: dict) -> dict:
    out = {}
    for label, (x, y) in pairs.items():
        r = discrepancy(x, y, NAMES)
        out[label] = {n: {k: r[n][k] for k in FIELDS} for n in NAMES}
        out[label]["galaxies"] = r["n"]
    heads = " | ".join(f"{p}: median D, D > 3, p68 |Δ med|/w" for p in pairs)
    print(f"| quantity | {heads} |")
    print("|---|" + "---|" * len(pairs))
    for n in NAMES:
        cells = [f"{out[p][n]['median_D']:.2f}, {100 * out[p][n]['catastrophic']:.1f} %, "
                 f"{out[p][n]['p68_dmedian_over_halfwidth']:.2f}" for p in pairs]
        print(f"| {n} | " + " | ".join(cells) + " |")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("emu_s1")
    ap.add_argument("emu_s2")
    ap.add_argument("sps", metavar="SPS")
    ap.add_argument("--truth", help="truth table (for --where)")
    ap.add_argument("--where", action="append", default=[],
                    help="keep galaxies whose truth row meets 'COLUMN OP VALUE' (repeatable)")
    ap.add_argument("--check", action="append", default=[],
                    help="direct-SPS fit of some of the galaxies (matched by id)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args(argv)
    if a.where and not a.truth:
        ap.error("--where needs --truth")
    runs = [load(p) for p in (a.emu_s1, a.emu_s2, a.sps)]
    if a.where:
        truth = Table.read(a.truth)
        runs = [select(r, truth, a.where) for r in runs]
    rows = np.intersect1d(np.intersect1d(runs[0]["row"], runs[1]["row"]), runs[2]["row"])
    e1, e2, d = (subset(r, rows) for r in runs)
    out = {"galaxies": int(len(rows)), "runs": vars(a)}
    meta = json.loads((Path(a.sps) / "fit.json").read_text())
    print(f"{len(rows)} galaxies in all three runs" + (f" ({' and '.join(a.where)})"
                                                       if a.where else ""))
    if meta.get("reweight", {}).get("sps"):
        ess = np.asarray(d["ess"], float)
        n = d["samples"].shape[1]
        q = np.percentile(ess, [0, 5, 16, 50])
        out["ess"] = {"samples": int(n), "min": q[0], "p5": q[1], "p16": q[2], "median": q[3],
                      "below_50": int(np.sum(ess < 50)), "below_n_over_10": int(np.sum(
                          ess < n / 10))}
        print(f"SPS = {a.emu_s1} re-weighted to the SPS: ESS of {n} samples: min {q[0]:.0f}, "
              f"5 % {q[1]:.0f}, 16 % {q[2]:.0f}, median {q[3]:.0f}; "
              f"{out['ess']['below_50']} below 50")
    out.update(table({"emu_s1 vs SPS": (e1, d), "emu_s2 vs SPS": (e2, d),
                      "repeat (emu_s1 vs emu_s2)": (e1, e2)}))
    for path in a.check:
        c = renumber(load(path), d)
        print(f"\ncheck: {path}, {len(c['row'])} galaxies fitted with the SPS directly")
        out[f"check {path}"] = table({"direct vs SPS": (c, d), "direct vs emu_s2": (c, e2),
                                      "direct vs emu_s1": (c, e1)})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
