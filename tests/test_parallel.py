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
