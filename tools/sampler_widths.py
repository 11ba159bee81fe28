"""Posterior widths of the ensemble sampler (default and 4× step cap) against dynesty on the
same well-measured galaxies of a `sedhpc mock` catalog, with the photometry of the
``gaussian`` variant of tools/coverage_diagnostic.py (the emulator's own fluxes plus modelled
emulator errors, so the likelihood is exact). Prints the geometric-mean ratio of the 16–84 %
half-widths to dynesty's per quantity (docs/VALIDATION.md (b)).

    python tools/sampler_widths.py mocks_b.ecsv mocks_b_truth.ecsv --n 12 --nlive 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np

NJY = 1e-9 / 3631
QUANTITIES = ("logmass", "logzsol", "dust2", "mwa_gyr")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("catalog")
    ap.add_argument("truth")
    ap.add_argument("--n", type=int, default=12, help="galaxies (drawn among --snr-range)")
    ap.add_argument("--snr-range", type=float, nargs=2, default=(30.0, 3000.0),
                    help="observed lsst_baseline_i S/N range to draw from (default 30 3000)")
    ap.add_argument("--nlive", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1, help="seed of the emulator-error draws")
    ap.add_argument("--max-steps", type=int, default=5000, help="the ensemble's step cap (the "
                    "long run takes 4×)")
    a = ap.parse_args(argv)
    from astropy.table import Table

    from sedhpc.emulator import Emulator, default_path
    from sedhpc.model import get_model
    from sedhpc.photometry import arsinh_to_maggies
    from sedhpc.samplers.fit import fit_batch

    cat, tru = Table.read(a.catalog), Table.read(a.truth)
    bands = [c[2:] for c in cat.colnames if c.startswith("f_")]
    model = get_model("embedded")
    theta = np.column_stack([np.asarray(tru[n], float) for n in model.names])
    flux = np.column_stack([np.asarray(cat[f"f_{b}"], float) for b in bands]) * NJY
    err = np.column_stack([np.asarray(cat[f"e_{b}"], float) for b in bands]) * NJY
    emu = Emulator(default_path(), bands=bands, xp="numpy")
    noise = flux - np.column_stack([np.asarray(tru[f"true_{b}"], float) for b in bands])
    rng = np.random.default_rng(np.random.SeedSequence([a.seed, 7]))
    mags = np.asarray(emu.predict(theta).mags, float)
    mags = mags + rng.normal(size=mags.shape) * np.asarray(emu.sigma_for(theta), float)
    flux = np.asarray(arsinh_to_maggies(mags), float) + noise
    if "lsst_baseline_i" not in bands:
        ap.error("the catalog needs lsst_baseline_i (the selection band)")
    snr = flux[:, bands.index("lsst_baseline_i")] / err[:, bands.index("lsst_baseline_i")]
    pool = np.flatnonzero((snr > a.snr_range[0]) & (snr < a.snr_range[1]))
    rows = np.random.default_rng(5).choice(pool, min(a.n, len(pool)), replace=False)
    kw = dict(zred=theta[rows, model.index("zred")], floor=0.0, seed=3)
    if len(rows) == 0:
        ap.error(f"no galaxy with observed lsst_baseline_i S/N in {a.snr_range}")
    runs = {"ensemble": dict(sampler="ensemble", max_steps=a.max_steps),
            "ensemble 4x steps": dict(sampler="ensemble", max_steps=4 * a.max_steps),
            "dynesty": dict(sampler="dynesty", nlive=a.nlive)}
    widths, cpu = {}, {}
    for name, opt in runs.items():
        c0 = time.process_time()
        res = fit_batch(model, emu, flux[rows], err[rows], **kw, **opt)
        cpu[name] = time.process_time() - c0
        widths[name] = {}
        for q in QUANTITIES:
            w = []
            for r in res:
                s = r.samples[:, model.index(q)] if q in model.names else r.derived[q]
                lo, hi = np.percentile(s, [16, 84])
                w.append((hi - lo) / 2)
            widths[name][q] = np.array(w)
    print(f"{len(rows)} galaxies; CPU-s: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
    print("| quantity | ensemble / dynesty | ensemble 4× steps / dynesty | 4× / 1× per galaxy |")
    print("|---|---|---|---|")
    for q in QUANTITIES:
        d = widths["dynesty"][q]
        r1, r4 = widths["ensemble"][q] / d, widths["ensemble 4x steps"][q] / d
        rr = r4 / r1
        print(f"| {q} | {np.exp(np.mean(np.log(r1))):.2f} ({r1.min():.2f}–{r1.max():.2f}) | "
              f"{np.exp(np.mean(np.log(r4))):.2f} ({r4.min():.2f}–{r4.max():.2f}) | "
              f"{rr.min():.2f}–{rr.max():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
