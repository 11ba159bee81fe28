"""Embedded SPS: models/s per core and memory per process, side by side with bagpipes' own
``model_galaxy.update`` + photometry, the precision of both projections against a 10× finer
filter integration, and the size of the WMAP9 choice in magnitudes.

    python tools/bench/bench_sps.py [--n 200]

Runs in one process on one thread (OMP/OpenBLAS threads = 1) and rewrites the ``sps`` section
of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

from sedhpc import cosmology  # noqa: E402
from sedhpc.model import get_model  # noqa: E402
from sedhpc.photometry import FilterSet, arsinh_mag  # noqa: E402
from sedhpc.sps.embedded import (EmbeddedSPS, bagpipes_components, import_bagpipes,  # noqa: E402
                                 write_filter_files)

HERE = Path(__file__).resolve().parent
BANDS_135 = HERE.joinpath("filters_135.txt").read_text().split()
BANDS_40 = BANDS_135[::3][:40]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(bands, theta):
    """One band set, in a fresh process (so set-up and memory are those of one SPS)."""
    model = get_model("embedded")
    t0 = time.perf_counter()
    sps = EmbeddedSPS(model, bands)
    setup = time.perf_counter() - t0
    sps.photometry(theta[:5])  # warm
    t0 = time.perf_counter()
    ours, _ = sps.photometry(theta)
    t_ours = (time.perf_counter() - t0) / len(theta)
    rss = rss_mb()

    bp = import_bagpipes()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = write_filter_files(sps.filters, Path(tmp))
        comps = [bagpipes_components(row, model.names) for row in theta]
        galaxy = bp.model_galaxy(comps[0], filt_list=files)
        ref = np.empty_like(ours)
        t0 = time.perf_counter()
        for i, comp in enumerate(comps):
            galaxy.update(comp)
            ref[i] = galaxy.photometry
        t_bp = (time.perf_counter() - t0) / len(theta)
        for i, comp in enumerate(comps):
            dist = (4 * np.pi * cosmology.luminosity_distance_cm(comp["redshift"]) ** 2)
            # galaxy.lum_flux is the last one; recompute per object via bagpipes' own interpolation
            ldist = 3.086e24 * np.interp(comp["redshift"], bp.utils.z_array, bp.utils.ldist_at_z)
            ref[i] = arsinh_mag(ref[i] * galaxy.filter_set.eff_wavs ** 2 / 2.99792458e18
                                / 3631e-23 * 4 * np.pi * ldist ** 2 / dist)
    fine = FilterSet(bands, resolution=20000)
    exact = np.array([arsinh_mag(fine.maggies_from_flambda(*sps.spectrum(row)[:2]))
                      for row in theta])
    err_ours, err_bp = np.abs(ours - exact), np.abs(ref - exact)
    return {"setup_s": setup, "ours_ms": t_ours * 1e3, "bagpipes_ms": t_bp * 1e3,
            "err_ours": [np.percentile(err_ours, 99), err_ours.max()],
            "err_bp": [np.percentile(err_bp, 99), err_bp.max()], "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="models per band set")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one band set
    args = parser.parse_args()
    model = get_model("embedded")
    theta = model.training_distribution(zrange=(0.01, 6.0)).sample(
        np.random.default_rng(args.seed), args.n)
    sets = (("40 bands", BANDS_40), ("135 bands", BANDS_135))
    if args.one is not None:
        print(json.dumps(bench(sets[args.one][1], theta), default=float))
        return
    rows = []
    for k, (label, _) in enumerate(sets):
        child = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--seed",
                                str(args.seed), "--one", str(k)], capture_output=True,
                               text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(
            f"| {label} | {r['ours_ms']:.2f} | {1e3 / r['ours_ms']:.0f} | {r['bagpipes_ms']:.2f} "
            f"| {r['bagpipes_ms'] / r['ours_ms']:.2f}× | {r['err_ours'][0]:.4f} / "
            f"{r['err_ours'][1]:.4f} | {r['err_bp'][0]:.4f} / {r['err_bp'][1]:.4f} "
            f"| {r['rss_mb']:.0f} | {r['setup_s']:.1f} |")
    from astropy.cosmology import FlatLambdaCDM

    default = FlatLambdaCDM(H0=70.0, Om0=0.3)
    zs = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 3.0, 6.0, 10.0])
    dm = 5 * np.log10(cosmology.luminosity_distance_cm(zs)
                      / default.luminosity_distance(zs).to_value("cm"))
    age = cosmology.age_yr(zs) / default.age(zs).to_value("yr")
    body = (
        f"{args.n} draws from the embedded model's training distribution (0.01 ≤ z ≤ 6), one "
        "process, one thread. 'sedhpc' is `EmbeddedSPS.photometry` (bagpipes spectrum + sedhpc's "
        "filter matrix); 'bagpipes' is `model_galaxy.update()` with its own photometry (which "
        "also computes UVJ). Errors are |Δ arsinh mag| against a 10× finer (R = 20000) "
        "integration of the same spectra, 99th percentile / max over all bands and draws. "
        "Each band set runs in a fresh process; peak RSS is that process's maximum resident "
        "memory after building the SPS and computing the models (before the reference "
        "integrations); set-up includes importing bagpipes.\n\n"
        "| bands | sedhpc ms/model | models/s/core | bagpipes ms/model | speed-up | sedhpc err "
        "p99 / max [mag] | bagpipes err p99 / max [mag] | peak RSS [MB] | set-up [s] |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "WMAP9 (sedhpc) vs bagpipes' default FlatLambdaCDM(70, 0.3): magnitude change "
        "5 log10(D_L ratio) and age-of-universe ratio:\n\n| z | " +
        " | ".join(f"{z:g}" for z in zs) + " |\n" + "|---" * (len(zs) + 1) + "|\n| Δm [mag] | " +
        " | ".join(f"{d:+.3f}" for d in dm) + " |\n| t_univ ratio | " +
        " | ".join(f"{a:.4f}" for a in age) + " |\n")
    write_section("sps", "Embedded SPS: speed, memory, precision (issue 2)", body,
                  "python tools/bench/bench_sps.py", modules=("numpy", "bagpipes"))


if __name__ == "__main__":
    main()
