"""End to end (issue [bench], item 4): one command that generates a training set with the
embedded SPS, trains a small emulator, validates it on an independent test set, makes a mock
catalog with the SPS itself, fits it with the new emulator and reports recovery — each stage's
wall time, CPU time and cost per unit, plus the quality each stage reached.

    python tools/bench/bench_e2e.py [--ntrain 20000] [--ntest 1000] [--ngal 64] [--ranks 2]
                                    [--epochs 300] [--width 128] [--keep DIR]

LSST ugrizy, 0.05 ≤ z ≤ 1.5, every stage through the `sedhpc` command line (generation and the
mock's SPS under ``mpiexec -n RANKS`` when mpi4py is installed; training on RANKS threads).
Small on purpose: the point is the per-stage cost and that the chain works from nothing; the
production numbers are in the stage sections above. Rewrites the ``e2e`` section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

BANDS = ",".join(f"lsst_baseline_{b}" for b in "ugrizy")
ZR = ("0.05", "1.5")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ntrain", type=int, default=20000)
    ap.add_argument("--ntest", type=int, default=1000)
    ap.add_argument("--ngal", type=int, default=64)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    a = ap.parse_args(argv)

    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = None
    par = [mpiexec, "-n", str(a.ranks)] if mpiexec and a.ranks > 1 else []
    py = [sys.executable, "-m", "sedhpc"]
    stages = []

    def stage(name, cmd, unit, nunits, parallel=False):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run((par if parallel else []) + py + cmd, capture_output=True,
                             text=True, env=env)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode:
            raise RuntimeError(f"{name} failed:\n{res.stderr[-3000:]}")
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        stages.append({"stage": name, "wall_s": wall, "cpu_s": cpu, "unit": unit,
                       "n": nunits, "procs": a.ranks if parallel and par else 1,
                       "command": "sedhpc " + " ".join(map(str, cmd))})
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} CPU-s", flush=True)
        return res

    stage("generate training set", ["generate", "--model", "embedded", "--bands", BANDS, "-n",
                                    str(a.ntrain), "--zrange", *ZR, "--seed", "1", "--out",
                                    str(tmp / "train"), "--no-progress"],
          "draw", a.ntrain, parallel=True)
    stage("generate test set", ["generate", "--model", "embedded", "--bands", BANDS, "-n",
                                str(a.ntest), "--zrange", *ZR, "--seed", "2", "--out",
                                str(tmp / "test"), "--no-progress"],
          "draw", a.ntest, parallel=True)
    env_train = dict(env, OMP_NUM_THREADS=str(a.ranks))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(py + ["train", str(tmp / "train"), "--out", str(tmp / "emu.h5"),
                               "--width", str(a.width), "--depth", "4", "--max-epochs",
                               str(a.epochs), "--patience", "20", "--lr", "1e-3,1e-4",
                               "--batch", "256,2048", "--threads", str(a.ranks),
                               "--no-progress"], capture_output=True, text=True, env=env_train)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stages.append({"stage": "train emulator", "wall_s": time.perf_counter() - t0,
                   "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                   "unit": "training draw", "n": a.ntrain, "procs": a.ranks,
                   "command": f"sedhpc train … --width {a.width} --depth 4 "
                              f"--max-epochs {a.epochs} (2 steps)"})
    print(f"train: {stages[-1]['wall_s']:.1f} s", flush=True)
    stage("validate emulator", ["validate-emulator", str(tmp / "emu.h5"), "--testset",
                                str(tmp / "test"), "--out", str(tmp / "val")], "draw", a.ntest)
    stage("mock catalog (SPS)", ["mock", "-n", str(a.ngal), "--bands", BANDS, "--zrange", *ZR,
                                 "--seed", "3", "--depth", "26.0", "--floor", "0.02", "--out",
                                 str(tmp / "mock.ecsv"), "--no-progress"],
          "galaxy", a.ngal, parallel=True)
    stage("fit (ensemble)", ["fit", str(tmp / "mock.ecsv"), "--config",
                             str(tmp / "mock_fit.toml"), "--emulator", str(tmp / "emu.h5"),
                             "--out", str(tmp / "fit"), "--no-progress"],
          "galaxy", a.ngal, parallel=True)
    stage("report", ["report", str(tmp / "fit"), "--truth", str(tmp / "mock_truth.ecsv"),
                     "--out", str(tmp / "report")], "galaxy", a.ngal)

    quality = _quality(tmp)
    _write(a, stages, quality)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


def _quality(tmp: Path) -> dict:
    return {k: json.loads(p.read_text()) for k, p in (
        ("validation", tmp / "val" / "summary.json"),
        ("report", tmp / "report" / "summary.json")) if p.exists()}


def _write(a, stages, quality) -> None:
    total_wall = sum(s["wall_s"] for s in stages)
    total_cpu = sum(s["cpu_s"] for s in stages)
    lines = [
        f"LSST ugrizy, {ZR[0]} ≤ z ≤ {ZR[1]}: {a.ntrain} training + {a.ntest} test draws of the "
        f"embedded SPS, an emulator of width {a.width} × 4 layers (≤ {a.epochs} epochs per "
        f"step, 2 steps), {a.ngal} mock galaxies made with the SPS itself (5σ depth 26, 2 % "
        "floor) fitted with the new emulator (ensemble sampler, default settings). Parallel "
        f"stages on {a.ranks} MPI ranks; CPU time is the children's user + system time, start-up "
        "included (≈ 5 CPU-s per process to import and load the SSP grids, which dominates the "
        "small test set's cost per draw).", "",
        "| stage | wall s | CPU-s | per unit | processes |",
        "|---|---|---|---|---|"]
    for s in stages:
        per = s["cpu_s"] / max(s["n"], 1)
        per_txt = (f"{per * 1e3:.1f} CPU-ms / {s['unit']}" if per < 1
                   else f"{per:.2f} CPU-s / {s['unit']}")
        lines.append(f"| {s['stage']} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | {per_txt} | "
                     f"{s['procs']} |")
    lines.append(f"| **total** | **{total_wall:.1f}** | **{total_cpu:.1f}** | | |")
    lines.append("")
    sig = quality.get("validation", {}).get("sigma_median")
    if sig is not None:
        lines.append(f"- emulator: median over bands of the test-set residual σ = "
                     f"**{sig:.3f} mag** (a small, short-trained network; the bundled one's "
                     "figures are in sedhpc/emulator/data/README.md)")
    rec = quality.get("report", {}).get("recovery") or {}
    if rec:
        parts = [f"{name} {c['in68']:.2f}/{c['in95']:.2f}" for name, c in rec.items()
                 if name in ("logmass", "logzsol", "dust2", "logmstar", "sfr100")]
        if parts:
            lines.append("- fit vs truth, fraction of truths inside the 68/95 % intervals: "
                         + ", ".join(parts) + f" ({a.ngal} galaxies: ±{1 / a.ngal ** 0.5:.2f} "
                         "binomial noise; emulator error enters through its test-set σ)")
    section = "\n".join(lines)
    write_section("e2e", "End to end: generate → train → validate → mock → fit → report",
                  section,
                  f"python tools/bench/bench_e2e.py --ntrain {a.ntrain} --ntest {a.ntest} "
                  f"--ngal {a.ngal} --ranks {a.ranks} --epochs {a.epochs} --width {a.width}",
                  modules=("numpy", "torch", "mpi4py"))


if __name__ == "__main__":
    main()
