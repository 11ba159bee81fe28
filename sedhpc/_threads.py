"""BLAS/OpenMP threads when several MPI ranks share a node (imported before numpy).

OpenBLAS, MKL and OpenMP start one thread per core in *every* process. With several ranks on
a node they oversubscribe the cores and the small GEMMs of the emulator kernel slow down by up
to ~10× (measured: two 2-thread processes on 2 cores, 28 vs 2.9 CPU-s per galaxy). Under an MPI
launcher, a thread variable the user has not set gets cores ÷ ranks on this node (≥ 1).
"""

from __future__ import annotations

import contextlib
import os

VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# ranks on this node: MPICH/Hydra, Open MPI, Intel MPI / PMI-2, a Slurm srun step (set only
# inside the step, not in the batch script's shell, so serial commands are left alone)
LOCAL = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_LOCAL_SIZE",
         "SLURM_STEP_TASKS_PER_NODE")
WORLD = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")
#: the thread variables the user set before sedhpc was imported (limit_threads sets the others)
USER_SET = {v: os.environ[v] for v in VARS if v in os.environ}


def _int(name: str) -> int:
    try:
        return int(os.environ.get(name, "").split("(")[0].split(",")[0])  # Slurm "4(x2)"
    except ValueError:
        return 0


def ranks_on_node() -> int:
    """Ranks sharing this node per the launcher's environment (0 if not under MPI); when only
    the world size is known, it is taken as the local count (fewer threads is the safe side)."""
    for name in LOCAL:
        if _int(name) > 0:
            return _int(name)
    return max((_int(n) for n in WORLD), default=0)


def limit_threads() -> int | None:
    """Set the unset thread variables for an MPI rank; returns the count set, or None."""
    n = ranks_on_node()
    if n <= 1:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    per = max(1, cores // n)
    for var in VARS:
        os.environ.setdefault(var, str(per))
    return per


def fit_threads(threads: int | None = None) -> int | None:
    """BLAS threads for fitting: ``threads`` when given; else None (leave them) when the user
    set a thread variable before sedhpc was imported; else 1. The emulator kernel's
    products are small (a few hundred rows per call): a second thread cost 1.54× the
    CPU-seconds for 12 % less wall time on a quiet 2-core machine, and far more when processes
    share the cores."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be ≥ 1; got {threads}")
        return int(threads)
    return None if USER_SET else 1


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Limit BLAS/OpenMP thread pools to ``n`` inside the block (None: no change)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n):
        yield
