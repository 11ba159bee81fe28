"""Why coverage falls short on SPS mocks (docs/VALIDATION.md (b)): the detected galaxies of a
`sedhpc mock` catalog fitted two ways with the ensemble sampler, redshift fixed, no floor:

- ``sps``: the catalog as it is (photometry from the SPS itself), the emulator's σ in the
  likelihood — the run of (b);
- ``emulator``: the same truths and the same noise draws, but the noiseless fluxes replaced by
  the emulator's own at the truth, fitted without the emulator term — a self-consistent test
  of the sampler at these S/N (no emulator error anywhere).

Prints the 68 / 95 % coverage per quantity, overall and per i-band S/N bin, and how often the
truth's log posterior exceeds every posterior sample's by more than 2 (a sampler that missed
the region holding the truth); writes OUT/coverage_diagnostic_<variant>.json.

    python tools/coverage_diagnostic.py mocks_b.ecsv mocks_b_truth.ecsv --variant sps --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sedhpc import provenance

QUANTITIES = ("logmass", "logmstar", "logzsol", "dust2", "sfr100", "mwa_gyr")
SNR_BINS = (10, 30, 100, 1000, np.inf)
NJY = 1e-9 / 3631  # maggies per nJy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("catalog", help="`sedhpc mock` catalog (fluxes in nJy)")
    ap.add_argument("truth", help="its truth table")
    ap.add_argument("--variant", choices=("sps", "emulator"), required=True)
    ap.add_argument("--band", default="lsst_baseline_i", help="S/N selection band")
    ap.add_argument("--min-snr", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    from astropy.table import Table

    from sedhpc.emulator import Emulator, default_path
    from sedhpc.likelihood import Likelihood, Observations
    from sedhpc.model import get_model
    from sedhpc.photometry import arsinh_to_maggies
    from sedhpc.samplers.fit import derived_quantities, fit_batch

    cat, tru = Table.read(a.catalog), Table.read(a.truth)
    bands = [c[2:] for c in cat.colnames if c.startswith("f_")]
    if f"snr_{a.band}" not in tru.colnames:
        ap.error(f"the truth table has no snr_{a.band} column")
    rows = np.flatnonzero(np.asarray(tru[f"snr_{a.band}"]) > a.min_snr)
    if rows.size == 0:
        ap.error(f"no galaxy has {a.band} S/N > {a.min_snr}")
    model = get_model("embedded")
    theta = np.column_stack([np.asarray(tru[n], float) for n in model.names])[rows]
    flux = np.column_stack([np.asarray(cat[f"f_{b}"], float) for b in bands])[rows] * NJY
    err = np.column_stack([np.asarray(cat[f"e_{b}"], float) for b in bands])[rows] * NJY
    emu = Emulator(default_path(), bands=bands, xp="numpy")
    sigma_emu = None
    if a.variant == "emulator":
        noise = flux - np.column_stack([np.asarray(tru[f"true_{b}"], float) for b in bands])[rows]
        flux = np.asarray(arsinh_to_maggies(emu.predict(theta).mags), float) + noise
        sigma_emu = 0.0
    zred = theta[:, model.index("zred")]
    c0 = time.process_time()
    res = fit_batch(model, emu, flux, err, zred=zred, floor=0.0, sigma_emu=sigma_emu,
                    sampler="ensemble", seed=a.seed)
    cpu = time.process_time() - c0

    lik = Likelihood(emu, Observations.build(flux, err), floor=0.0, sigma_emu=sigma_emu)
    lp_true = np.asarray(lik(theta, np.arange(len(rows)))) + model.log_prob(theta)
    lp_best = np.array([np.max(r.log_like + model.log_prob(r.samples)) for r in res])
    missed = lp_true > lp_best + 2.0
    truth_q = derived_quantities(model, theta, np.asarray(tru["log_mfrac"], float)[rows])
    snr = np.asarray(tru[f"snr_{a.band}"], float)[rows]
    cover = {}
    for name in QUANTITIES:
        inside = np.zeros((len(res), 2), bool)
        for i, r in enumerate(res):
            if name in model.names:
                s, t = r.samples[:, model.index(name)], theta[i, model.index(name)]
            else:
                s, t = r.derived[name], truth_q[name][i]
                if name == "sfr100":
                    s, t = np.log10(np.maximum(s, 1e-30)), np.log10(max(t, 1e-30))
            lo68, hi68, lo95, hi95 = np.percentile(s, [16, 84, 2.5, 97.5])
            inside[i] = lo68 <= t <= hi68, lo95 <= t <= hi95
        cover[name] = {"all": inside.mean(axis=0).tolist()}
        for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:]):
            k = (snr >= lo) & (snr < hi)
            cover[name][f"{lo:g}-{hi:g}"] = inside[k].mean(axis=0).tolist() if k.any() else None
    bins = [f"{lo:g}-{hi:g}" for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:])]
    counts = {b: int(np.sum((snr >= lo) & (snr < hi)))
              for b, lo, hi in zip(bins, SNR_BINS[:-1], SNR_BINS[1:])}
    missed_bin = {b: float(np.mean(missed[(snr >= lo) & (snr < hi)])) if counts[b] else None
                  for b, lo, hi in zip(bins, SNR_BINS[:-1], SNR_BINS[1:])}
    summary = {"variant": a.variant, "galaxies": int(len(rows)), "cpu_s": cpu,
               "converged": float(np.mean([r.converged for r in res])),
               "coverage_68_95": cover, "snr_bins": counts,
               "truth_beats_every_sample": float(np.mean(missed)),
               "truth_beats_every_sample_per_bin": missed_bin,
               "provenance": provenance.provenance("coverage-diagnostic", 1, vars(a))}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"coverage_diagnostic_{a.variant}.json").write_text(json.dumps(summary, indent=1))
    print(f"{a.variant}: {len(rows)} galaxies with {a.band} S/N > {a.min_snr:g}, "
          f"{cpu:.0f} CPU-s, {summary['converged']:.0%} converged; truth's log posterior > "
          f"every sample's + 2: {np.mean(missed):.1%}")
    print("| quantity | all: 68 % / 95 % | " + " | ".join(
        f"S/N {b} ({counts[b]})" for b in bins) + " |")
    print("|---" * (2 + len(bins)) + "|")
    for name in QUANTITIES:
        cells = [f"{cover[name]['all'][0]:.3f} / {cover[name]['all'][1]:.3f}"] + [
            "–" if cover[name][b] is None else f"{cover[name][b][0]:.2f} / {cover[name][b][1]:.2f}"
            for b in bins]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| truth beats every sample by > 2 | " + f"{np.mean(missed):.1%} | " + " | ".join(
        "–" if missed_bin[b] is None else f"{missed_bin[b]:.0%}" for b in bins) + " |")


if __name__ == "__main__":
    main()
