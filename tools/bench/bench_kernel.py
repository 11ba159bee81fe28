"""Emulator kernel roofline: time per evaluation and GFLOP/s against this machine's measured
fp32 GEMM peak (same run, same thread count), widths 128/256/512, batch 1 … 65536;
single-call latency; speed-up over the embedded SPS per model. CuPy too when a GPU is usable.

    python tools/bench/bench_kernel.py [--threads 1] [--bands 141]

Rewrites the ``kernel`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import pin_threads, write_section  # noqa: E402

pin_threads()

import numpy as np  # noqa: E402

from sedhpc.emulator import Emulator, gpu_available, io  # noqa: E402
from sedhpc.model import get_model  # noqa: E402

BATCHES = (1, 64, 4096, 65536)
WIDTHS = (128, 256, 512)


def gemm_peak(xp, repeats: int = 7) -> float:
    """Best fp32 GEMM rate [GFLOP/s] over square-ish products of kernel-like shapes."""
    best = 0.0
    for m, k, n in ((4096, 1024, 1024), (2048, 512, 512), (2048, 256, 256)):
        a = xp.asarray(np.random.default_rng(0).random((m, k), np.float32))
        b = xp.asarray(np.random.default_rng(1).random((k, n), np.float32))
        c = xp.empty((m, n), np.float32)
        xp.matmul(a, b, out=c)
        for _ in range(repeats):
            _sync(xp)
            t0 = time.perf_counter()
            xp.matmul(a, b, out=c)
            _sync(xp)
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def _sync(xp):
    if xp.__name__ == "cupy":
        xp.cuda.Stream.null.synchronize()


def flops(d: int, width: int, depth: int, nout: int) -> int:
    return 2 * (d * width + (depth - 1) * width * width + width * nout)


def make_emulator(width: int, nbands: int, xp) -> Emulator:
    model = get_model("embedded")
    rng = np.random.default_rng(width)
    sizes = [model.ndim] + [width] * 5 + [nbands + 1]
    ws = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.1, b) for b in sizes[1:]]
    lo, hi = model.bounds.T
    net = io.Network(ws, bs, (lo + hi) / 2, (hi - lo) / 3, np.full(nbands + 1, 25.0), lo, hi,
                     (lo[12], hi[12]))
    return Emulator(io.EmulatorFile([net], model.names, [f"b{i}" for i in range(nbands)], {}),
                    xp=xp)


def time_kernel(emu: Emulator, batch: int, xp) -> float:
    theta = get_model("embedded").training_distribution().sample(
        np.random.default_rng(0), min(batch, 4096))
    theta = xp.asarray(np.resize(theta, (batch, theta.shape[1])))
    emu.predict(theta)
    reps = max(3, min(200, int(2e5 / batch)))
    times = []
    for _ in range(5):
        _sync(xp)
        t0 = time.perf_counter()
        for _ in range(reps):
            emu.predict(theta)
        _sync(xp)
        times.append((time.perf_counter() - t0) / reps)
    return float(np.median(times)) / batch


def table(xp, nbands: int, sps_ms: float | None) -> tuple[str, float]:
    peak = gemm_peak(xp)
    rows = []
    for w in WIDTHS:
        emu = make_emulator(w, nbands, xp)
        f = flops(emu.ndim, w, 5, nbands + 1)
        cells = []
        for b in BATCHES:
            t = time_kernel(emu, b, xp)
            rate = f / t / 1e9
            cells.append(f"{t * 1e6:.2f} µs, {rate:.0f} GF/s ({rate / peak:.0%})")
        single = time_kernel(emu, 1, xp) * 1e6
        speed = f"{sps_ms * 1e3 / (time_kernel(emu, 4096, xp) * 1e6):,.0f}×" if sps_ms else "–"
        rows.append(f"| {w} | {f / 1e6:.2f} | " + " | ".join(cells) + f" | {single:.0f} µs "
                    f"| {speed} |")
    head = ("| width | MFLOP/eval | " + " | ".join(f"batch {b}" for b in BATCHES)
            + " | single-call latency | speed-up vs embedded SPS (batch 4096) |\n"
            + "|---" * (len(BATCHES) + 4) + "|\n")
    return head + "\n".join(rows), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1", help="BLAS threads (default 1: per core)")
    parser.add_argument("--bands", type=int, default=141, help="output bands (default 141)")
    parser.add_argument("--sps-ms", type=float, default=5.1,
                        help="embedded SPS ms/model for the speed-up column (BENCHMARKS 'sps' "
                             "section, 135 bands)")
    args = parser.parse_args()
    body = (f"{get_model('embedded').ndim} inputs → 5 × width GELU → {args.bands} bands + "
            f"log mfrac, float32, {args.threads} BLAS thread(s). Each cell: time per "
            "evaluation, achieved GFLOP/s and its fraction of the fp32 GEMM peak measured in "
            "the same run. Single-call latency: one θ per call (Python overhead of ~60 "
            "array operations dominates: batch across proposals and galaxies). Speed-up: the "
            f"embedded SPS's {args.sps_ms} ms per model over the kernel's time per evaluation "
            "at batch 4096.\n\n")
    tab, peak = table(np, args.bands, args.sps_ms)
    body += f"**numpy** (fp32 GEMM peak measured: {peak:.0f} GFLOP/s)\n\n" + tab + "\n"
    if gpu_available():
        import cupy

        tab, peak = table(cupy, args.bands, args.sps_ms)
        body += (f"\n**CuPy** on {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()} "
                 f"(fp32 GEMM peak measured: {peak:.0f} GFLOP/s)\n\n" + tab + "\n")
    else:
        body += "\nCuPy: no GPU was usable for this run.\n"
    write_section("kernel", "Emulator kernel: roofline and latency (issue 4)", body,
                  f"python tools/bench/bench_kernel.py --threads {args.threads}",
                  modules=("numpy",))


if __name__ == "__main__":
    main()
