"""Why coverage falls short on SPS mocks (docs/VALIDATION.md (b)): the detected galaxies of a
`sedhpc mock` catalog fitted two ways with the ensemble sampler, redshift fixed, no floor:

- ``sps``: the catalog as it is (photometry from the SPS itself), the emulator's σ in the
  likelihood — the run of (b);
- ``emulator``: the same truths and the same noise draws, but the noiseless fluxes replaced by
  the emulator's own at the truth, fitted without the emulator term — a self-consistent test
  of the sampler at these S/N (no emulator error anywhere);
- ``gaussian``: as ``emulator``, plus emulator errors drawn exactly as the likelihood models
  them (independent Gaussians of the emulator's σ, per band, in arsinh mag), fitted with the
  emulator term on — the sps run with the real errors replaced by their model, so the sampler
  is tested at the same effective S/N.

Galaxies are selected, and binned, by their S/N in ``--band`` (i): by default the S/N of the
photometry fitted (flux / error), a selection on the data, under which the posteriors of a
correct likelihood and sampler cover at the nominal rate; ``--select true`` takes the
noiseless S/N of the truth table instead — a selection on the parameters themselves, under
which coverage is *not* guaranteed (the prior pulls every posterior towards the bulk, and a
subset chosen by θ sits off it on one side).

Prints the 68 / 95 % coverage per quantity, overall and per i-band S/N bin, and how often the
truth's log posterior exceeds every posterior sample's by more than 2 (a sampler that missed
the region holding the truth); writes OUT/coverage_diagnostic_<variant>.json. ``--variant
residuals`` fits nothing: it compares the emulator with the SPS at the truths, in units of
the emulator's σ (rms and tail fractions per band, χ² over the bands, correlations).

    python tools/coverage_diagnostic.py mocks_b.ecsv mocks_b_truth.ecsv --variant sps --out DIR
    python tools/coverage_diagnostic.py mocks_b.ecsv mocks_b_truth.ecsv --variant residuals \
        --out DIR
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
    ap.add_argument("--variant", choices=("sps", "emulator", "gaussian", "residuals"),
                    required=True)
    ap.add_argument("--band", default="lsst_baseline_i", help="S/N selection band")
    ap.add_argument("--min-snr", type=float, default=10.0)
    ap.add_argument("--select", choices=("observed", "true"), default="observed",
                    help="select (and bin) on the S/N of the fitted photometry (default) or of "
                         "the noiseless truth")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=5000, help="ensemble sampler's step cap")
    ap.add_argument("--emulator", help="emulator file (default: the bundled one)")
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
    need = [f"e_{b}" for b in bands if f"e_{b}" not in cat.colnames] + [
        c for c in [f"snr_{a.band}", "log_mfrac"] + [f"true_{b}" for b in bands]
        if c not in tru.colnames]
    if not bands or need:
        ap.error(f"needs a `sedhpc mock` catalog (f_<band>, e_<band> in nJy) and its truth "
                 f"table; missing: {need or 'every f_<band> column'}")
    if a.band not in bands:
        ap.error(f"--band {a.band} is not one of the catalog's bands {bands}")
    model = get_model("embedded")
    theta = np.column_stack([np.asarray(tru[n], float) for n in model.names])
    flux = np.column_stack([np.asarray(cat[f"f_{b}"], float) for b in bands]) * NJY
    err = np.column_stack([np.asarray(cat[f"e_{b}"], float) for b in bands]) * NJY
    emu = Emulator(a.emulator or default_path(), bands=bands, xp="numpy")
    sigma_emu = None
    if a.variant in ("emulator", "gaussian"):
        noise = flux - np.column_stack([np.asarray(tru[f"true_{b}"], float) for b in bands])
        mags = np.asarray(emu.predict(theta).mags, float)
        if a.variant == "gaussian":  # emulator errors as the likelihood assumes them
            rng = np.random.default_rng(np.random.SeedSequence([a.seed, 7]))
            mags = mags + rng.normal(size=mags.shape) * np.asarray(emu.sigma_for(theta), float)
        else:
            sigma_emu = 0.0
        flux = np.asarray(arsinh_to_maggies(mags), float) + noise
    # S/N of the selection: of the photometry fitted (a selection on the data keeps Bayesian
    # coverage nominal), or of the noiseless truth (a selection on θ, which need not)
    snr_all = (flux[:, bands.index(a.band)] / err[:, bands.index(a.band)]
               if a.select == "observed" else np.asarray(tru[f"snr_{a.band}"], float))
    rows = np.flatnonzero(snr_all > a.min_snr)
    if rows.size == 0:
        ap.error(f"no galaxy has {a.select} {a.band} S/N > {a.min_snr}")
    theta, flux, err = theta[rows], flux[rows], err[rows]
    if a.variant == "residuals":
        return _residuals(a, emu, theta, tru, rows, bands, model)
    zred = theta[:, model.index("zred")]
    c0 = time.process_time()
    res = fit_batch(model, emu, flux, err, zred=zred, floor=0.0, sigma_emu=sigma_emu,
                    sampler="ensemble", seed=a.seed, max_steps=a.max_steps)
    cpu = time.process_time() - c0

    lik = Likelihood(emu, Observations.build(flux, err), floor=0.0, sigma_emu=sigma_emu)
    lp_true = np.asarray(lik(theta, np.arange(len(rows)))) + model.log_prob(theta)
    lp_best = np.array([np.max(r.log_like + model.log_prob(r.samples)) for r in res])
    missed = lp_true > lp_best + 2.0
    truth_q = derived_quantities(model, theta, np.asarray(tru["log_mfrac"], float)[rows])
    snr = snr_all[rows]
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
    print(f"{a.variant}: {len(rows)} galaxies with {a.select} {a.band} S/N > {a.min_snr:g}, "
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


def _residuals(a, emu, theta, tru, rows, bands, model):
    """Emulator − SPS at the truths [arsinh mag] over the emulator's σ there."""
    from scipy import stats

    from sedhpc.photometry import arsinh_mag

    x = np.column_stack([np.asarray(tru[f"true_{b}"], float) for b in bands])[rows]
    r = np.asarray(emu.predict(theta).mags, float) - arsinh_mag(x)
    z = r / np.asarray(emu.sigma_for(theta), float)
    chi2 = np.sum(z * z, axis=1)

    corr = np.corrcoef(r.T)[np.triu_indices(len(bands), 1)]
    summary = {"variant": "residuals", "galaxies": int(len(rows)), "bands": bands,
               "mean_over_sigma": z.mean(axis=0).tolist(),
               "rms_over_sigma": np.sqrt(np.mean(z * z, axis=0)).tolist(),
               "frac_abs_gt_3": np.mean(np.abs(z) > 3, axis=0).tolist(),
               "chi2_p50_p90_p99": np.percentile(chi2, [50, 90, 99]).tolist(),
               "chi2_gaussian_p50_p90_p99": stats.chi2.ppf([0.5, 0.9, 0.99],
                                                           len(bands)).tolist(),
               "correlation_range": [float(corr.min()), float(corr.max())],
               "provenance": provenance.provenance("coverage-diagnostic", 1, vars(a))}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coverage_diagnostic_residuals.json").write_text(json.dumps(summary, indent=1))
    f = " ".join
    print(f"emulator − SPS at the truths of {len(rows)} galaxies ({a.select} {a.band} S/N > "
          f"{a.min_snr:g}), in units of the emulator's σ, bands {f(bands)}:")
    print("  mean  " + f(f"{v:+.2f}" for v in summary["mean_over_sigma"]))
    print("  rms   " + f(f"{v:.2f}" for v in summary["rms_over_sigma"]))
    print("  |r|>3 " + f(f"{v:.3f}" for v in summary["frac_abs_gt_3"]) + "  (Gaussian 0.003)")
    print("  χ² over the bands p50/p90/p99 " + f(f"{v:.1f}" for v in summary["chi2_p50_p90_p99"])
          + "  (Gaussian " + f(f"{v:.1f}" for v in summary["chi2_gaussian_p50_p90_p99"]) + ")")
    print(f"  correlation between bands {corr.min():.2f} … {corr.max():.2f}")


if __name__ == "__main__":
    main()
