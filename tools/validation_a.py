"""VALIDATION (a): emulator fits against fits that call the SPS directly, next to the repeat-run
baseline, on the same galaxies (those every run has stored — the direct run may be partial).

    python tools/validation_a.py EMU_S1 EMU_S2 DIRECT [--json OUT.json]

Prints, per quantity, the median discrepancy statistic D, the catastrophic rate (D > 3) and the
68th percentile of |Δ median| over the first run's 16–84 % half-width, for EMU_S1 vs DIRECT,
EMU_S2 vs DIRECT and EMU_S1 vs EMU_S2 (the repeat baseline: same emulator, other seed).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sedhpc.report import discrepancy, load

NAMES = ["logmass", "logmstar", "logzsol", "dust2", "log_sfr100", "mwa_gyr"]


def subset(run: dict, rows) -> dict:
    k = np.isin(run["row"], rows)
    n = len(run["row"])
    return {key: (v[k] if isinstance(v, np.ndarray) and len(v) == n else v)
            for key, v in run.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("emu_s1")
    ap.add_argument("emu_s2")
    ap.add_argument("direct")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args(argv)
    runs = [load(p) for p in (a.emu_s1, a.emu_s2, a.direct)]
    rows = np.intersect1d(np.intersect1d(runs[0]["row"], runs[1]["row"]), runs[2]["row"])
    e1, e2, d = (subset(r, rows) for r in runs)
    pairs = {"emu_s1 vs SPS": (e1, d), "emu_s2 vs SPS": (e2, d),
             "repeat (emu_s1 vs emu_s2)": (e1, e2)}
    out = {"galaxies": int(len(rows)), "runs": vars(a)}
    for label, (x, y) in pairs.items():
        r = discrepancy(x, y, NAMES)
        out[label] = {n: {k: r[n][k] for k in ("median_D", "catastrophic",
                                              "p68_dmedian_over_halfwidth")} for n in NAMES}
    print(f"{len(rows)} galaxies in all three runs")
    heads = " | ".join(f"{p}: median D, D > 3, p68 |Δ med|/w" for p in pairs)
    print(f"| quantity | {heads} |")
    print("|---|" + "---|" * len(pairs))
    for n in NAMES:
        cells = [f"{out[p][n]['median_D']:.2f}, {100 * out[p][n]['catastrophic']:.1f} %, "
                 f"{out[p][n]['p68_dmedian_over_halfwidth']:.2f}" for p in pairs]
        print(f"| {n} | " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
