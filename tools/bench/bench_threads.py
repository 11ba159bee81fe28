"""BLAS threads per fitting process: CPU-seconds and wall time of the same fit with 1 and 2
threads, side by side (alternating repeats, medians).

    python tools/bench/bench_threads.py [--ngal 32] [--steps 1000] [--repeats 2]

Each run is `sedhpc fit --threads N` on the first NGAL galaxies of the bundled example catalog
(one process, ensemble sampler, every galaxy run for exactly STEPS steps, so both runs do the
same arithmetic); CPU is the child's user + system time, start-up included. Run it on an
otherwise idle machine: with other processes on the cores, extra threads cost far more.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "sedhpc" / "data"


def run(cat: Path, out: Path, threads: int, steps: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "sedhpc", "fit", str(cat), "--config",
           str(DATA / "dc2_example.toml"), "--threads", str(threads), "--option",
           f"max_steps={steps}", "--option", f"min_steps={steps}", "--out", str(out),
           "--no-progress"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ngal", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    import numpy as np
    from astropy.table import Table

    got: dict[int, list] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cat = tmp / "cat.ecsv"
        Table.read(DATA / "dc2_example.ecsv")[:a.ngal].write(cat)
        for i in range(a.repeats):
            for n in (1, 2):
                got[n].append(run(cat, tmp / f"t{n}_{i}", n, a.steps))
                print(n, got[n][-1], flush=True)
    med = {n: np.median(np.array(v), axis=0) for n, v in got.items()}
    rows = "\n".join(f"| {n} | {med[n][0]:.1f} | {med[n][1]:.1f} | {med[n][1] / med[1][1]:.2f}× | "
                     f"{med[n][0] / med[1][0]:.2f}× |" for n in (1, 2))
    body = (f"`sedhpc fit --threads N` on the first {a.ngal} galaxies of the bundled example "
            f"catalog, one process, ensemble sampler, every galaxy run for exactly {a.steps} "
            f"steps (same arithmetic in both runs); medians of {a.repeats} alternating repeats; "
            "CPU = the child's user + system seconds, start-up included.\n\n"
            "| BLAS threads | wall s | CPU s | CPU vs 1 thread | wall vs 1 thread |\n"
            "|---|---|---|---|---|\n" + rows + "\n\n"
            "The kernel's products (a few hundred rows per call: the hidden layers over all galaxies "
            "of a redshift window, the output layer per galaxy) are too small to share well: a "
            "second thread costs more CPU time than it saves wall time. Hence the default of one BLAS thread per fitting "
            "process (`--threads`, or your own OMP/OPENBLAS_NUM_THREADS, override it), and MPI "
            "ranks, one per core, to use a node's cores.")
    cmd = "python tools/bench/bench_threads.py" + (" " + " ".join(argv) if argv else "")
    write_section("threads", "BLAS threads per fitting process", body, cmd,
                  modules=("numpy", "threadpoolctl"))


if __name__ == "__main__":
    main(sys.argv[1:] if len(sys.argv) > 1 else None)
