"""Scaling (issue [bench], item 3): galaxies/s of `sedhpc fit` at 1 and 2 ranks here, and a
strong-scaling projection for 1–1000 ranks from a model fitted to measured costs.

    python tools/bench/bench_scaling.py [--ngal 128] [--chunk 8] [--project 1000000]

Measured (bundled example catalog, bundled emulator, ensemble at default settings, one BLAS
thread per rank): wall time at 1 and 2 ranks; per galaxy its likelihood calls (from the store)
and so its cost, t_call × ncall, with t_call = busy time / Σ ncall at 1 rank; each rank's
start-up; the MPI round trip of a claim (mpi4py ping-pong of a claim-sized message).

Model (a discrete-event simulation of the engine's protocol): rank 0 holds the chunk queue and
fits too; a rank asks for work when its claim is done and gets ⌈remaining / (2 P)⌉ chunks (at
most 16, the engine's guided rule); rank 0 answers once per sampler step, so a claim waits
U(0, t_step) + the round trip, and each answer costs rank 0 one round trip of time; galaxy
costs are bootstrap draws of the measured ones; every rank starts after the measured
start-up; the job ends with the last rank. Assumes each rank keeps its sampler slots full
(≥ 64 galaxies per rank) and no shared-filesystem contention (the store writes 10 kB per galaxy
at < 0.1 % of the time). The simulation is checked against the measured 2-rank wall time.
Rewrites the ``scaling`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import heapq
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import fit_example, write_section  # noqa: E402

PINGPONG = r"""
import pickle, time
from mpi4py import MPI
c = MPI.COMM_WORLD
msg = {"done": 16, "failed": 0}
task = list(range(100000, 100016))
n = 2000
c.Barrier()
t = time.perf_counter()
for _ in range(n):
    if c.rank == 1:
        c.send(msg, dest=0, tag=1); c.recv(source=0, tag=2)
    else:
        c.recv(source=1, tag=1); c.send(task, dest=1, tag=2)
if c.rank == 1:
    print((time.perf_counter() - t) / n, len(pickle.dumps(msg)) + len(pickle.dumps(task)))
"""


def simulate(costs, P, N, chunk, rng, t_start, t_step, t_rt, most=16, f=2):
    """Wall time of fitting N galaxies on P ranks (see the module docstring)."""
    nchunks = -(-N // chunk)
    remaining = nchunks
    # each rank: (time it next needs work, rank)
    ready = [(t_start, r) for r in range(P)]
    heapq.heapify(ready)
    busy0 = 0.0  # rank 0's time lost answering
    per_chunk = lambda k: costs[rng.integers(0, costs.size, k * chunk)].sum()  # noqa: E731
    while remaining > 0:
        t, r = heapq.heappop(ready)
        k = max(1, min(most, -(-remaining // (f * P))))
        k = min(k, remaining)
        remaining -= k
        wait = 0.0 if r == 0 or P == 1 else rng.uniform(0, t_step) + t_rt
        if r != 0:
            busy0 += t_rt
        work = per_chunk(k)
        done = t + wait + work
        heapq.heappush(ready, (done, r))
    finish = {r: t for t, r in ready}
    finish[0] += busy0  # answering claims delays rank 0's own work
    return max(finish.values())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ngal", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--project", type=int, default=1_000_000, help="catalog size projected")
    a = ap.parse_args(argv)
    from sedhpc import store

    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
    res = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", PINGPONG], env=env,
                         capture_output=True, text=True, check=True)
    t_rt, msg_bytes = (float(v) for v in res.stdout.split())

    meas = {}
    for ranks in (1, 2):
        wall, out, logs = fit_example(tmp, a.ngal, ranks, "--chunk", str(a.chunk))
        ready = [float(x) for x in re.findall(r"ready after ([\d.]+) s", logs)]
        busy = [float(x) for x in re.findall(r"not fitted in ([\d.]+) s", logs)]
        d = store.read(out)
        meas[ranks] = {"wall": wall, "ready": max(ready), "busy": busy,
                       "ncall": np.asarray(d["ncall"], float)}
    m1 = meas[1]
    ncall = m1["ncall"][m1["ncall"] > 0]
    t_call = m1["busy"][0] / ncall.sum()
    costs = ncall * t_call
    overhead = m1["wall"] - m1["busy"][0]  # process start, imports, catalog, emulator
    nslots, walkers = 64, 34
    t_step = nslots * walkers * t_call

    b2 = meas[2]["busy"]
    slow = m1["busy"][0] / sum(b2)          # per-galaxy speed at 2 ranks relative to 1
    proto = sum(b2) / (2 * (meas[2]["wall"] - overhead))  # busy share of the fitting wall time
    rng = np.random.default_rng(0)
    sim2 = np.median([simulate(costs, 2, a.ngal, a.chunk, rng, overhead, t_step, t_rt)
                      for _ in range(20)])
    sim1 = np.median([simulate(costs, 1, a.ngal, a.chunk, rng, overhead, t_step, t_rt)
                      for _ in range(20)])
    rows = []
    for N in (a.project, 10_000):
        T1 = simulate(costs, 1, N, 32, rng, overhead, t_step, t_rt)
        for P in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000):
            if N / P < 64 and P > 1:
                rows.append((N, P, None, None, None))
                continue
            T = np.median([simulate(costs, P, N, 32, rng, overhead, t_step, t_rt)
                           for _ in range(3)])
            rows.append((N, P, T, N / T, T1 / (P * T)))

    body = [
        f"Measured on the first {a.ngal} galaxies of the bundled example (LSST ugrizy, fixed "
        f"redshift; chunks of {a.chunk}), bundled emulator, ensemble at default settings:", "",
        "| ranks | wall s (measured) | galaxies/s | wall s (model) |", "|---|---|---|---|",
        f"| 1 | {m1['wall']:.1f} | {a.ngal / m1['wall']:.3f} | {sim1:.1f} |",
        f"| 2 | {meas[2]['wall']:.1f} | {a.ngal / meas[2]['wall']:.3f} | {sim2:.1f} |", "",
        f"At 2 ranks the ranks spent {', '.join(f'{b:.0f}' for b in meas[2]['busy'])} s "
        f"fitting (against {m1['busy'][0]:.0f} s for all {a.ngal} galaxies on one rank): each "
        f"rank ran at {slow:.2f}× the speed of a lone rank, as two processes share this VM's "
        f"resources (caches, memory bandwidth, or vCPUs on one physical core — the VM does not "
        f"say); the protocol itself (claims, waits, tail) cost "
        f"{1 - proto:.1%} of the wall time. The model below assumes a rank per physical core "
        "(per-rank speed as measured alone) and models only the protocol.", "",
        f"Model inputs: t_call = {t_call * 1e6:.1f} µs per likelihood call at full batch "
        f"(median {np.median(ncall):.0f} calls, {np.median(costs):.2f} s per galaxy; "
        f"90th percentile {np.percentile(costs, 90):.2f} s); start-up and catalog "
        f"{overhead:.1f} s; claim round trip {t_rt * 1e6:.0f} µs for {msg_bytes:.0f} bytes "
        f"(mpi4py, shared memory here; a fabric adds ≈ 2–5 µs); rank 0 answers once per "
        f"sampler step of {t_step * 1e3:.0f} ms.", "",
        "Projection (chunks of 32, the default; '—' where a rank would get < 64 galaxies, "
        "outside the model's range):", "",
        "| galaxies | ranks | wall s | galaxies/s | parallel efficiency |",
        "|---|---|---|---|---|"]
    for N, P, T, rate, eff in rows:
        if T is None:
            body.append(f"| {N:,} | {P} | — | — | — |")
        else:
            body.append(f"| {N:,} | {P} | {T:,.0f} | {rate:,.1f} | {eff:.3f} |")
    body += ["", "What limits it: with guided claims the end of a run is one claim of ≥ 1 chunk "
             "per rank, so the tail is ≈ one chunk's work (32 galaxies × the slowest galaxies' "
             "cost) — negligible for 10⁶ galaxies and up to 1000 ranks, where each rank fits "
             "1000 galaxies; rank 0 answers ≈ 2 claims per rank in total, microseconds each. "
             "For small catalogs per rank the start-up (imports, emulator, colour-OOD "
             "calibration) and the tail dominate: keep ≥ a few hundred galaxies per rank. Not "
             "modelled: launcher start-up at scale, shared-filesystem metadata load (one shard "
             "file per rank, one append per chunk), GPU ranks."]
    write_section("scaling", "Scaling: measured at 1–2 ranks, projected to 1000",
                  "\n".join(body),
                  f"python tools/bench/bench_scaling.py --ngal {a.ngal} --chunk {a.chunk} "
                  f"--project {a.project}", ("numpy", "mpi4py"))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
