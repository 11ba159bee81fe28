"""The dynamic work queue under MPI: every task exactly once, fast ranks take more, rank 0
computes too."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sedhpc.parallel import WorkQueue, world
from test_trainset import MPIEXEC, env, needs_mpi


def test_local_queue_without_mpi():
    q = WorkQueue(None, range(5))
    got, report = [], None
    while (t := q.next(report)) is not None:
        got.append(t)
        report = {"n": 1}
    assert got == list(range(5)) and q.finish() == {"n": 5}
    assert world()[0] is None  # pytest itself is not an MPI launch


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_dynamic_claiming(ranks):
    script = Path(__file__).with_name("mpi_queue.py")
    res = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(script)],
                         capture_output=True, text=True, timeout=300, env=env())
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    per_rank = out["per_rank"]
    done = sorted(t for r in per_rank for t in r)
    assert done == list(range(90))  # every task exactly once
    assert out["totals"] == {"items": 90}
    assert all(len(r) > 0 for r in per_rank)  # rank 0 computes too
    assert len(per_rank[0]) > len(per_rank[-1])  # the fastest rank takes the most


def test_blas_threads_are_limited_per_rank_under_mpi():
    """Under an MPI launcher, unset BLAS/OpenMP thread counts become cores ÷ ranks on the node
    (≥ 1); a value the user set is kept; outside MPI nothing is touched."""
    import os
    import subprocess
    import sys
    code = ("import os, sedhpc; print(os.environ.get('OPENBLAS_NUM_THREADS'), "
            "os.environ.get('OMP_NUM_THREADS'))")
    base = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and not
            k.startswith(("PMI", "MPI_LOCAL", "OMPI_", "PMIX", "SLURM"))}
    cores = len(os.sched_getaffinity(0))

    def run(**env):
        out = subprocess.run([sys.executable, "-c", code], env={**base, **env},
                             capture_output=True, text=True, check=True)
        return out.stdout.split()
    assert run() == ["None", "None"]
    per = str(max(1, cores // 4))
    assert run(MPI_LOCALNRANKS="4", PMI_SIZE="8") == [per, per]
    assert run(OMPI_COMM_WORLD_LOCAL_SIZE="4") == [per, per]
    assert run(PMI_SIZE="1") == ["None", "None"]
    assert run(SLURM_STEP_TASKS_PER_NODE="4(x2)") == [per, per]
    assert run(SLURM_NTASKS="16") == ["None", "None"]  # a batch shell, not an srun step
    assert run(MPI_LOCALNRANKS="4", OPENBLAS_NUM_THREADS="3") == ["3", per]
