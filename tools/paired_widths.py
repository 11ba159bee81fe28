"""Paired posterior widths of two sampler runs on the same mocks: galaxy by galaxy, the log
ratio of the 16–84 % widths of B to A for logmass, logzsol, dust2 and log SFR100, averaged
(± its standard error). Reads the fit caches that tools/validate_inference.py writes
(OUT/cache_sbc_<sampler>.npz; not committed: rerun the two commands first) for two runs
with the same --n (docs/inference):

    python tools/validate_inference.py --n 600 --samplers ensemble --no-photoz --out A
    python tools/validate_inference.py --n 600 --samplers ensemble --no-photoz \\
        --ens-option ind_fraction=0 --out B
    python tools/paired_widths.py A/cache_sbc_ensemble.npz B/cache_sbc_ensemble.npz
"""

from __future__ import annotations

import argparse
import json

import numpy as np

QUANTITIES = ("logmass", "logzsol", "dust2", "sfr100")


def width(res, name: str, names: list) -> float:
    """16–84 % width of one galaxy's posterior of ``name`` (SFR100 in dex); ``names``: the
    model's parameter names (the columns of ``res.samples``)."""
    if name == "sfr100":
        s = np.log10(np.maximum(res.derived["sfr100"], 1e-30))
    else:
        s = res.samples[:, names.index(name)]
    lo, hi = np.percentile(s, [16, 84])
    return float(hi - lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="cache of run A (.npz)")
    ap.add_argument("b", help="cache of run B (.npz), same mocks")
    a = ap.parse_args(argv)
    from sedhpc.model import get_model
    names = list(get_model("embedded").names)
    ra = np.load(a.a, allow_pickle=True)
    rb = np.load(a.b, allow_pickle=True)
    ka, kb = json.loads(str(ra["key"])), json.loads(str(rb["key"]))
    if ka["n"] != kb["n"] or abs(ka["flux"] - kb["flux"]) > 1e-6 * max(abs(ka["flux"]), 1e-30):
        raise SystemExit(f"the two caches hold different mocks: {ka} vs {kb}")
    A, B = ra["res"], rb["res"]
    ok = [i for i in range(len(A)) if len(A[i].samples) and len(B[i].samples)]
    print(f"{len(ok)} galaxies; A: {ka['opts']}, B: {kb['opts']}")
    for q in QUANTITIES:
        lr = np.log(np.array([width(B[i], q, names) / width(A[i], q, names) for i in ok]))
        print(f"  {q}: mean log(width B / width A) {lr.mean():+.4f} ± "
              f"{lr.std(ddof=1) / np.sqrt(len(lr)):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
