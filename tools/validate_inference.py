"""Validate the samplers (issue [inference]): simulation-based calibration, ensemble vs dynesty
discrepancy statistics and a two-mode photo-z test, on mocks made with the emulator itself plus
Gaussian noise (so the test isolates the samplers: fits use the same noise model, no error
floor, no emulator-error term).

    python tools/validate_inference.py --n 200 --out docs/inference

Writes OUT/summary.json (coverages, D statistics, photo-z mode masses, costs, settings,
provenance), OUT/sbc_ranks.png (rank histograms) and OUT/photoz.png. Every stage saves its fits
to OUT/cache_*.npz and is skipped when rerun with the same settings; an interrupted stage
resumes from OUT/partial_*.npz.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

from sedhpc import provenance
from sedhpc.emulator import Emulator
from sedhpc.model import get_model
from sedhpc.photometry import A, B, U0
from sedhpc.report import d_statistic
from sedhpc.samplers import fit_batch, photoz_model

BANDS = [f"lsst_baseline_{b}" for b in "ugrizy"] + ["twomass_J", "twomass_H", "twomass_Ks",
                                                     "wise_w1", "wise_w2"]
PARAMS = ["logmass", "logzsol", "dust2", "sfr100"]
PZ_SAMPLES = 4000  # posterior draws kept per photo-z fit (the samplers' default: 256)


def mocks(model, emu, n, rng, zrange=(0.01, 3.0), depth=26.0, frac=0.05, zfree=False):
    """n prior draws (redshift uniform over ``zrange``), emulator photometry plus noise of
    σ² = (frac·x)² + (5σ depth / 5)²."""
    z = rng.uniform(*zrange, n)
    theta = model.sample(rng, n, None if zfree else z[:, None])
    if zfree:
        theta[:, model.index("zred")] = z
    x = 2 * B * np.sinh((U0 - np.asarray(emu.predict(theta).mags, float)) / A)
    err = np.sqrt((frac * x) ** 2 + (10 ** (-0.4 * depth) / 5) ** 2)
    return theta, x + err * rng.standard_normal(x.shape), err


def quantity(model, res, truth, name):
    """Posterior samples and the truth of a parameter or derived quantity."""
    from sedhpc.samplers import derived_quantities
    if name in model.names:
        k = model.index(name)
        return res.samples[:, k], truth[k]
    t = derived_quantities(model, truth[None], np.zeros(1))[name][0]
    s = res.derived[name]
    if name == "sfr100":  # log10 SFR: the ranks do not change, D is taken in dex
        return np.log10(np.maximum(s, 1e-30)), np.log10(max(t, 1e-30))
    return s, t


_JOB = None


def same_key(a: str, b: str) -> bool:
    """Two cache keys name the same fits: equal settings and mock count, and flux sums equal
    to 1e-6 (the float32 emulator's photometry differs in the last bits with the number of BLAS
    threads it ran on)."""
    a, b = json.loads(a), json.loads(b)
    fa, fb = a.pop("flux"), b.pop("flux")
    for k in (a, b):  # dynesty ran on the prior's unit cube before it took coords
        if k.get("sampler") == "dynesty":
            k["opts"].setdefault("coords", "probit")
    return a == b and abs(fa - fb) <= 1e-6 * max(abs(fa), abs(fb))


def _fit_chunk(chunk):
    """Worker of ``run_fits(procs > 1)``: fit the galaxies ``chunk`` of the forked job."""
    model, emu, flux, err, z, sampler, opts = _JOB
    t0, rs = time.process_time(), []
    fit_batch(model, emu, flux, err, zred=z, floor=0.0, sigma_emu=0.0, sampler=sampler,
              seed=11, galaxies=iter(chunk), callback=rs.append, **opts)
    return rs, time.process_time() - t0


def _defaults(sampler: str) -> dict:
    """The ensemble sampler's numeric defaults, part of a cache key: fits made under other
    defaults (e.g. before independence moves were the default) are not reused."""
    if sampler != "ensemble":
        return {}
    import inspect

    from sedhpc.samplers import EnsembleSampler
    params = inspect.signature(EnsembleSampler).parameters.items()
    return {"defaults": {k: p.default for k, p in params if type(p.default) in (int, float)}}


def run_fits(tag, out, model, emu, flux, err, z, sampler, opts, procs=1):
    """Fits of every mock, cached in OUT/cache_<tag>.npz; while running, finished galaxies are
    saved every 10 to OUT/partial_<tag>.npz, so an interrupted stage resumes where it stopped
    (each galaxy's result depends only on its index and the seed, so ``procs`` forked worker
    processes give the same fits; the CPU time is the parent's plus the workers')."""
    cache, part = out / f"cache_{tag}.npz", out / f"partial_{tag}.npz"
    key = json.dumps({"sampler": sampler, "opts": opts, "n": len(flux),
                      "flux": float(np.nansum(flux)), **_defaults(sampler)}, sort_keys=True)
    if cache.exists():
        c = np.load(cache, allow_pickle=True)
        if same_key(str(c["key"]), key):
            return list(c["res"]), float(c["cpu"])
    done, cpu0 = {}, 0.0
    if part.exists():
        c = np.load(part, allow_pickle=True)
        if same_key(str(c["key"]), key):
            done, cpu0 = {r.galaxy: r for r in c["res"]}, float(c["cpu"])
    t0 = time.process_time()

    def save(path):
        res = np.empty(len(done), dtype=object)
        res[:] = [done[g] for g in sorted(done)]
        np.savez(path, res=res, cpu=cpu0 + time.process_time() - t0, key=key)

    def keep(r):
        done[r.galaxy] = r
        if len(done) % 10 == 0:
            save(part)

    todo = [g for g in range(len(flux)) if g not in done]
    if todo and procs > 1:  # forked workers fit chunks of ≤ 25; their CPU time is added
        global _JOB
        _JOB = (model, emu, flux, err, z, sampler, opts)
        size = min(25, -(-len(todo) // procs))  # a few slow fits (photo-z): one chunk per worker
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        with mp.get_context("fork").Pool(procs) as pool:
            for rs, cpu in pool.imap_unordered(_fit_chunk, chunks):
                cpu0 += cpu
                for r in rs:
                    keep(r)
    elif todo:
        fit_batch(model, emu, flux, err, zred=z, floor=0.0, sigma_emu=0.0, sampler=sampler,
                  seed=11, galaxies=iter(todo), callback=keep, **opts)
    save(cache)
    part.unlink(missing_ok=True)
    c = np.load(cache, allow_pickle=True)
    return list(c["res"]), float(c["cpu"])


def expected_coverage(res):
    """What the coverage fractions would be for a perfect posterior sampled by the same number
    n of independent draws per galaxy: the percentile interval of n draws (linear
    interpolation) covers on average about (p_hi − p_lo)(n − 1)/(n + 1) of the mass
    (0.675 / 0.943 for n = 256), less when the draws repeat or correlate."""
    n = float(np.mean([len(r.samples) for r in res]))
    return {"n_samples": n, "in68": 0.68 * (n - 1) / (n + 1), "in95": 0.95 * (n - 1) / (n + 1)}


def coverage(model, res, truth):
    out = {}
    for name in PARAMS:
        ranks, in68, in95 = [], [], []
        for r, t in zip(res, truth):
            s, tv = quantity(model, r, t, name)
            ranks.append(np.mean(s < tv))
            lo68, hi68, lo95, hi95 = np.percentile(s, [16, 84, 2.5, 97.5])
            in68.append(lo68 <= tv <= hi68)
            in95.append(lo95 <= tv <= hi95)
        out[name] = {"in68": float(np.mean(in68)), "in95": float(np.mean(in95)),
                     "ranks": [float(v) for v in ranks]}
    return out


def discrepancy(model, ra, rb, truth):
    out = {}
    for name in PARAMS:
        d = []
        for a, b, t in zip(ra, rb, truth):
            sa, _ = quantity(model, a, t, name)
            sb, _ = quantity(model, b, t, name)
            d.append(float(d_statistic(sa, sb)))
        d = np.array(d)
        out[name] = {"median_D": float(np.median(d)), "catastrophic": float(np.mean(d > 3)),
                     "D": d.tolist()}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="SBC mocks")
    ap.add_argument("--nphotoz", type=int, default=40, help="photo-z mocks screened for two modes")
    ap.add_argument("--emulator", default=None)
    ap.add_argument("--no-photoz", action="store_true", help="skip the photo-z stage")
    ap.add_argument("--nlive", type=int, default=400)
    ap.add_argument("--sample", default=None, help="dynesty proposal (default: sedhpc's, rslice)")
    ap.add_argument("--walks", type=int, default=None, help="dynesty rwalk steps (default ndim+20)")
    ap.add_argument("--slices", type=int, default=None,
                    help="dynesty slice updates per proposal (rslice default ndim+3)")
    ap.add_argument("--ref-nlive", type=int, default=1000, help="photo-z reference nlive")
    ap.add_argument("--only-photoz", action="store_true",
                    help="compute the photo-z stage's fits only (to run beside the SBC stage)")
    ap.add_argument("--samplers", default="ensemble,dynesty",
                    help="samplers to calibrate (comma list); without both, no D statistics "
                         "and no photo-z stage, only OUT/summary.json")
    ap.add_argument("--coords", default="auto", choices=("auto", "probit", "shear"),
                    help="the samplers' coordinates (fit_batch coords; the photo-z "
                    "reference run always samples the prior's unit cube)")
    ap.add_argument("--ens-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an ensemble sampler option (numbers), e.g. ind_fraction=0.8; part "
                         "of the cache key")
    ap.add_argument("--procs", type=int, default=1,
                    help="worker processes for the fits (one BLAS thread each)")
    ap.add_argument("--out", default="docs/inference")
    a = ap.parse_args(argv)
    if a.procs < 1:
        ap.error(f"--procs must be ≥ 1; got {a.procs}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from sedhpc.emulator import default_path
    path = a.emulator or str(default_path())
    emu = Emulator(path, bands=BANDS, xp="numpy")
    model = get_model("embedded")
    rng = np.random.default_rng(np.random.SeedSequence(2026, spawn_key=(5,)))
    truth, flux, err = mocks(model, emu, a.n, rng)
    z = truth[:, model.index("zred")]
    summary = {"n_mocks": a.n, "bands": BANDS, "params": PARAMS, "emulator": path,
               "noise": "sigma^2 = (0.05 x)^2 + (5-sigma depth 26 mag / 5)^2",
               "provenance": provenance.provenance("inference-validation", 1, vars(a))}
    fits = {}
    dyn = {"nlive": a.nlive, "sample": a.sample or "rslice", "coords": a.coords,
           **({"walks": a.walks} if a.walks else {}),
           **({"slices": a.slices} if a.slices else {})}
    samplers = [x.strip() for x in a.samplers.split(",") if x.strip()]
    if not set(samplers) <= {"ensemble", "dynesty"} or not samplers:
        raise SystemExit(f"--samplers: ensemble and/or dynesty, not {a.samplers!r}")
    both = set(samplers) == {"ensemble", "dynesty"}
    ens = {"coords": a.coords}  # in the cache key: fits of other coordinates are not reused
    for kv in a.ens_option:
        k, _, v = kv.partition("=")
        ens[k.strip()] = float(v) if "." in v or "e" in v else int(v)
    stages = [(n, o) for n, o in (("ensemble", ens), ("dynesty", dyn)) if n in samplers]
    for sampler, opts in (() if a.only_photoz else stages):
        res, cpu = run_fits(f"sbc_{sampler}", out, model, emu, flux, err, z, sampler, opts,
                            a.procs)
        fits[sampler] = res
        summary[sampler] = {
            "options": opts, "cpu_s_per_galaxy": cpu / a.n,
            "converged": float(np.mean([r.converged for r in res])),
            "ncall_median": float(np.median([r.diagnostics["ncall"] for r in res])),
            "ess_median": float(np.median([r.diagnostics["ess"] for r in res])),
            "coverage": coverage(model, res, truth),
            "coverage_expected_iid": expected_coverage(res)}
        print(sampler, {k: (v["in68"], v["in95"]) for k, v in
                        summary[sampler]["coverage"].items()}, f"{cpu / a.n:.2f} CPU-s/galaxy",
              file=sys.stderr)
    if not a.only_photoz and both:
        summary["discrepancy"] = discrepancy(model, fits["ensemble"], fits["dynesty"], truth)
        print({k: (v["median_D"], v["catastrophic"])
               for k, v in summary["discrepancy"].items()}, file=sys.stderr)

    if a.no_photoz or not both:
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        if not a.only_photoz:
            rank_plot(summary, out)
        return
    # two-mode photo-z: screen mocks (LSST ugrizy only, redshift free), keep those whose
    # long reference dynesty run has two modes each holding ≥ 10 % of the mass
    pz_bands = BANDS[:6]
    emu6 = Emulator(path, bands=pz_bands, xp="numpy")
    pzmodel = photoz_model(model, emu6, None)
    pz_model_mock = pzmodel
    rng = np.random.default_rng(np.random.SeedSequence(2026, spawn_key=(6,)))
    ztruth, zflux, zerr = mocks(pz_model_mock, emu6, a.nphotoz, rng, zrange=(0.05, 3.0),
                                depth=25.0, frac=0.05, zfree=True)
    pz = {}
    # mode masses from PZ_SAMPLES draws per fit: the default 256 alone carry a binomial noise
    # of ±0.03 at a 50/50 split (±0.044 on a difference of two fits) against a target of 0.1
    # the reference: dynesty on the prior's own unit cube (independent of the shear)
    ref = {"nlive": a.ref_nlive, "sample": "rslice", "nsamples": PZ_SAMPLES, "coords": "probit"}
    for tag, sampler, opts in (("reference", "dynesty", ref),
                               ("ensemble", "ensemble", {**ens, "nsamples": PZ_SAMPLES,
                                                         "ess_min": 256}),
                               ("dynesty", "dynesty", {**dyn, "nsamples": PZ_SAMPLES})):
        pz[tag], cpu = run_fits(f"pz_{tag}", out, pzmodel, emu6, zflux, zerr, None, sampler,
                                opts, a.procs)
    if a.only_photoz:
        return
    iz = pzmodel.index("zred")
    cases = []
    for g in range(a.nphotoz):
        zr = pz["reference"][g].samples[:, iz]
        edges = np.expm1(np.linspace(np.log1p(0.0), np.log1p(6.0), 61))
        h, _ = np.histogram(zr, edges)
        # split at the emptiest bin between the two highest separated peaks
        peaks = [k for k in range(len(h)) if h[k] > 0 and h[k] == h[max(0, k - 3):k + 4].max()]
        if len(peaks) < 2:
            continue
        top = sorted(peaks, key=lambda k: -h[k])[:2]
        lo, hi = sorted(top)
        cut = edges[lo + 1 + int(np.argmin(h[lo + 1:hi]))] if hi > lo + 1 else edges[hi]
        mass = {t: float(np.mean(pz[t][g].samples[:, iz] < cut)) for t in pz}
        if min(mass["reference"], 1 - mass["reference"]) < 0.1:
            continue
        cases.append({"galaxy": g, "z_true": float(ztruth[g, iz]), "z_split": float(cut),
                      "low_mode_mass": mass,
                      "abs_error": {t: abs(mass[t] - mass["reference"])
                                    for t in ("ensemble", "dynesty")}})
    summary["photoz_two_mode"] = {"bands": pz_bands, "n_screened": a.nphotoz,
                                  "reference": f"dynesty rslice nlive={a.ref_nlive}",
                                  "nsamples": PZ_SAMPLES,
                                  "cases": cases}
    print(f"two-mode photo-z cases: {len(cases)}", [c["abs_error"] for c in cases],
          file=sys.stderr)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    plots(summary, pz, cases, iz, out)
    (out / "README.md").write_text(report(summary))


def report(s) -> str:
    """Markdown summary of a validation run."""
    lines = ["# Sampler validation", "",
             f"Written by `python tools/validate_inference.py --n {s['n_mocks']} "
             f"--nphotoz {s['photoz_two_mode']['n_screened']} --nlive "
             f"{s['dynesty']['options'].get('nlive')} --ref-nlive "
             f"{s['photoz_two_mode']['reference'].split('=')[-1]} --out docs/inference` "
             f"(sedhpc {s['provenance']['sedhpc_version']}, git "
             f"{s['provenance']['git_hash'][:12]}).", "",
             f"Mocks: {s['n_mocks']} prior draws of the embedded model, redshift uniform in "
             f"[0.01, 3], emulator photometry in {', '.join(s['bands'])}, noise "
             f"{s['noise']}; fitted with the same noise model (no floor, no emulator term), so "
             "only the samplers are tested. Targets: 68 ± 5 % and 95 ± 3 %.", "",
             "## Simulation-based calibration", "",
             "| sampler | " + " | ".join(f"{p} 68 % | {p} 95 %" for p in PARAMS) +
             " | converged | CPU-s / galaxy |",
             "|---|" + "---|" * (2 * len(PARAMS) + 2)]
    for name in ("ensemble", "dynesty"):
        c = s[name]["coverage"]
        lines.append(f"| {name} | " + " | ".join(
            f"{c[p]['in68']:.3f} | {c[p]['in95']:.3f}" for p in PARAMS) +
            f" | {s[name]['converged']:.0%} | {s[name]['cpu_s_per_galaxy']:.2f} |")
    e = s["ensemble"].get("coverage_expected_iid")
    if e:  # the percentile intervals of n draws cover less than their nominal mass on average
        lines += ["", f"A perfect posterior represented by {e['n_samples']:.0f} independent "
                  f"draws per galaxy would give on average {e['in68']:.3f} / {e['in95']:.3f} "
                  "(the percentile interval of n draws covers (p_hi − p_lo)(n − 1)/(n + 1) of "
                  "the mass), less when draws repeat or correlate."]
    lines += ["", "Rank histograms: `sbc_ranks.png`.", "",
              "## Ensemble vs dynesty (same mocks)", "",
              "| quantity | median D | catastrophic (D > 3) |", "|---|---|---|"]
    for p in PARAMS:
        d = s["discrepancy"][p]
        lines.append(f"| {p} | {d['median_D']:.3f} | {d['catastrophic']:.1%} |")
    pz = s["photoz_two_mode"]
    lines += ["", "## Two-mode photo-z", "",
              f"{pz['n_screened']} mocks with redshift free (uniform prior), bands "
              f"{', '.join(pz['bands'])}; reference: {pz['reference']}. Cases where the "
              "reference p(z) has two modes each holding ≥ 10 % (split at the emptiest bin "
              "between the two highest peaks); mode masses from "
              f"{pz.get('nsamples', 256)} posterior draws per fit (the samplers run at their "
              "default settings otherwise):", "",
              "| galaxy | z true | split | low-z mass: reference | ensemble | dynesty |",
              "|---|---|---|---|---|---|"]
    for c in pz["cases"]:
        m = c["low_mode_mass"]
        lines.append(f"| {c['galaxy']} | {c['z_true']:.2f} | {c['z_split']:.2f} | "
                     f"{m['reference']:.3f} | {m['ensemble']:.3f} | {m['dynesty']:.3f} |")
    if pz["cases"]:
        worst = {t: max(c["abs_error"][t] for c in pz["cases"]) for t in ("ensemble", "dynesty")}
        lines += ["", f"Largest mode-mass error: ensemble {worst['ensemble']:.3f}, dynesty "
                  f"{worst['dynesty']:.3f} (target ≤ 0.1). Plots: `photoz.png`."]
    return "\n".join(lines) + "\n"


def rank_plot(summary, out):
    """OUT/sbc_ranks.png: rank histograms of every calibrated sampler."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    samplers = [s for s in ("ensemble", "dynesty") if s in summary]
    fig, axes = plt.subplots(len(samplers), len(PARAMS), figsize=(3.2 * len(PARAMS),
                                                                  2.8 * len(samplers)),
                             sharex=True, squeeze=False)
    for row, sampler in enumerate(samplers):
        for ax, name in zip(axes[row], PARAMS):
            c = summary[sampler]["coverage"][name]
            n = len(c["ranks"])
            ax.hist(c["ranks"], bins=10, range=(0, 1),
                    color="C0" if sampler == "ensemble" else "C1")
            ax.axhline(n / 10, color="k", lw=1)
            sd = np.sqrt(n / 10 * 0.9)
            ax.axhspan(n / 10 - 2 * sd, n / 10 + 2 * sd, color="0.85", zorder=0)
            ax.set_title(f"{sampler}: {name}\n68%: {c['in68']:.2f}  95%: {c['in95']:.2f}",
                         fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("rank of truth / N")
    fig.suptitle(f"SBC, {summary['n_mocks']} mocks (band: ±2σ of a uniform histogram)")
    fig.tight_layout()
    fig.savefig(out / "sbc_ranks.png", dpi=90)


def plots(summary, pz, cases, iz, out):
    rank_plot(summary, out)
    import matplotlib.pyplot as plt
    if cases:
        k = min(len(cases), 4)
        fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.0), squeeze=False)
        for ax, c in zip(axes[0], cases[:k]):
            for t, col in (("reference", "k"), ("ensemble", "C0"), ("dynesty", "C1")):
                ax.hist(pz[t][c["galaxy"]].samples[:, iz], bins=60, range=(0, 6), density=True,
                        histtype="step", color=col, label=t)
            ax.axvline(c["z_true"], color="r", ls=":")
            ax.set_xlabel("z")
            ax.set_title(f"galaxy {c['galaxy']}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "photoz.png", dpi=90)


if __name__ == "__main__":
    main()
