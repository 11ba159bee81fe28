"""The training distribution's effect in the prior's tails (docs/VALIDATION.md (c), seed
Section 4.2): parameter tables of galaxies the prior makes rare, and the emulator − SPS
residuals of several emulators on them.

``tables``: draws from the prior (mass–metallicity relation included) and keeps

- ``declining``: rapidly declining SFHs, log sSFR100 < −12.5 yr⁻¹ (2 % of the prior);
- ``lowdensity``: the 1 % of prior draws with the lowest prior density (any parameters);
- ``bulk``: plain prior draws, for reference;

each written as an ECSV table of the model's parameters that ``sedhpc mock --source`` reads.

``residuals``: for each `sedhpc mock` truth table (noiseless fluxes true_<band>) and each
emulator, the σ, 68 % half-width and |r| > 0.1 mag fraction of emulator − SPS over the bands,
as a Markdown table; writes OUT/residuals.json.

    python tools/tails_study.py tables --n 150 --zrange 0.05 3 --seed 7 --out DIR
    python tools/tails_study.py residuals DIR/*_truth.ecsv --emulators mix.h5 prior.h5 --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sedhpc import provenance

SSFR_CUT = -12.5  # log10 sSFR100 [1/yr] of "rapidly declining"
DENSITY_QUANTILE = 0.01  # lowest-density fraction of the prior


def tables(a) -> int:
    from astropy.table import Table

    from sedhpc.model import get_model
    from sedhpc.samplers.fit import derived_quantities

    model = get_model("embedded")
    prior = model.training_distribution(1.0, tuple(a.zrange))
    rng = np.random.default_rng(a.seed)
    pool = prior.sample(rng, max(200 * a.n, 100000))
    dq = derived_quantities(model, pool, np.zeros(len(pool)))
    ssfr = np.log10(np.maximum(dq["sfr100"], 1e-30)) - pool[:, model.index("logmass")]
    lp = prior.log_prob(pool)
    cut = np.quantile(lp, DENSITY_QUANTILE)
    sets = {"declining": np.flatnonzero(ssfr < SSFR_CUT),
            "lowdensity": np.flatnonzero(lp < cut),
            "bulk": np.arange(len(pool))}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"provenance": provenance.provenance("tails-study", 1, vars(a)),
            "ssfr_cut": SSFR_CUT, "density_quantile": DENSITY_QUANTILE,
            "log_density_cut": float(cut)}
    for name, idx in sets.items():
        if len(idx) < a.n:
            raise SystemExit(f"{name}: only {len(idx)} of {len(pool)} draws qualify; "
                             f"lower --n")
        pick = rng.choice(idx, a.n, replace=False)
        t = Table(pool[pick], names=model.names, meta=dict(meta, selection=name))
        t.write(out / f"{name}.ecsv", overwrite=True)
        print(f"{out / f'{name}.ecsv'}: {a.n} of {len(idx)} qualifying draws")
    return 0


def residuals(a) -> int:
    from astropy.table import Table

    from sedhpc.emulator import Emulator
    from sedhpc.model import get_model
    from sedhpc.photometry import arsinh_mag

    model = get_model("embedded")
    rows = []
    for path in a.truth:
        t = Table.read(path)
        bands = [c[5:] for c in t.colnames if c.startswith("true_")]
        theta = np.column_stack([np.asarray(t[n], float) for n in model.names])
        u = arsinh_mag(np.column_stack([np.asarray(t[f"true_{b}"], float) for b in bands]))
        for e in a.emulators:
            emu = Emulator(e, bands=bands, xp="numpy", dtype=np.float64)
            pred = emu.predict(theta)
            ok = np.asarray(pred.inside)
            r = np.asarray(pred.mags)[ok] - u[ok]
            q16, q84 = np.percentile(r, [16, 84], axis=0)
            rows.append({"set": Path(path).name, "emulator": Path(e).name,
                         "n": int(ok.sum()), "bands": bands,
                         "sigma": np.std(r, axis=0).tolist(),
                         "halfwidth68": ((q84 - q16) / 2).tolist(),
                         "frac_gt_0.1": np.mean(np.abs(r) > 0.1, axis=0).tolist(),
                         "bias": np.mean(r, axis=0).tolist()})
    print("| set | emulator | n | σ median / max over bands [mag] | 68 % half-width median "
          "| |r| > 0.1 mag |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['emulator']} | {r['n']} | {np.median(r['sigma']):.3f} / "
              f"{np.max(r['sigma']):.3f} | {np.median(r['halfwidth68']):.3f} | "
              f"{np.mean(r['frac_gt_0.1']):.1%} |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "residuals.json").write_text(json.dumps(
        {"rows": rows, "provenance": provenance.provenance("tails-study", 1, vars(a))},
        indent=1))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tables", help="parameter tables of tail and bulk galaxies")
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--zrange", type=float, nargs=2, default=(0.05, 3.0))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p = sub.add_parser("residuals", help="emulator − SPS on mock truth tables")
    p.add_argument("truth", nargs="+", help="`sedhpc mock` truth tables")
    p.add_argument("--emulators", nargs="+", required=True)
    p.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "tables" and a.n < 1:
        ap.error("--n must be ≥ 1")
    return tables(a) if a.cmd == "tables" else residuals(a)


if __name__ == "__main__":
    raise SystemExit(main())
