"""MPI helpers: the world communicator (or a single process without MPI) and a dynamic work
queue in which every rank computes.

:class:`WorkQueue` hands out tasks one at a time: rank 0 holds the list and computes too, and
between its own work items calls :meth:`WorkQueue.serve` to answer other ranks' requests
(non-blocking probes, no busy manager rank). A rank asks for a new task when it has finished the
last, so fast ranks take more. Each request carries a small progress report, which rank 0 sums
for the aggregated progress bar.
"""

from __future__ import annotations

import os
import time
from collections import deque

TAG_REQUEST, TAG_TASK = 71, 72


class RankLost(RuntimeError):
    """A rank stopped answering before the work was done."""


def world():
    """(comm, rank, size): MPI.COMM_WORLD when mpi4py is installed and the process was started
    with more than one rank, else (None, 0, 1). ``SEDHPC_NO_MPI=1`` forces a single process."""
    if os.environ.get("SEDHPC_NO_MPI") == "1":
        return None, 0, 1
    if not any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                                         "PMIX_RANK", "SLURM_PROCID", "MPI_LOCALNRANKS",
                                         "HYDRA_CONTROL_FD")):
        return None, 0, 1  # not started by a launcher: don't initialise MPI at all
    try:
        from mpi4py import MPI
    except ImportError:
        return None, 0, 1
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None, 0, 1
    return comm, comm.Get_rank(), comm.Get_size()


class WorkQueue:
    """Dynamic task distribution over ``comm`` (or local when ``comm`` is None).

    ``tasks`` (picklable items) matter only on rank 0. Use::

        q = WorkQueue(comm, tasks)
        while (task := q.next(report)) is not None:
            for item in task:
                ...                     # compute
                q.serve()               # rank 0: answer waiting ranks (cheap no-op elsewhere)
        totals = q.finish()             # rank 0: summed reports of all ranks
    """

    def __init__(self, comm, tasks=(), on_report=None, grain: tuple[int, int] | None = None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.tasks = deque(tasks) if self.rank == 0 else deque()
        self.on_report = on_report  # rank 0: callback(rank, report dict)
        # guided claims: (most, f) → each hand-out is a list of ⌈remaining / (f · ranks)⌉
        # tasks, at least 1 and at most ``most``; None → one task at a time
        self.grain = grain
        self.stopped = set()  # ranks told to stop
        self.totals: dict = {}
        self.last_seen = {r: time.monotonic() for r in range(self.size)}

    def _account(self, rank: int, report: dict | None) -> None:
        self.last_seen[rank] = time.monotonic()
        if report:
            for k, v in report.items():
                self.totals[k] = self.totals.get(k, 0) + v
            if self.on_report:
                self.on_report(rank, report)

    def serve(self) -> int:
        """Rank 0: answer every pending request; returns how many were answered."""
        if self.comm is None or self.rank != 0:
            return 0
        from mpi4py import MPI

        answered = 0
        status = MPI.Status()
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_REQUEST, status=status):
            src = status.Get_source()
            report = self.comm.recv(source=src, tag=TAG_REQUEST)
            self._account(src, report)
            task = self._take()
            if task is None:
                self.stopped.add(src)
            self.comm.send(task, dest=src, tag=TAG_TASK)
            answered += 1
        return answered

    def next(self, report: dict | None = None):
        """The next task for this rank, or None when all are handed out. ``report``: progress
        since the last call (e.g. {'done': 64, 'failed': 1}), summed on rank 0."""
        if self.rank == 0:
            self._account(0, report)
            self.serve()
            return self._take()
        self.comm.send(report, dest=0, tag=TAG_REQUEST)
        return self.comm.recv(source=0, tag=TAG_TASK)

    def _take(self):
        if not self.tasks:
            return None
        if self.grain is None:
            return self.tasks.popleft()
        most, f = self.grain
        k = max(1, min(most, -(-len(self.tasks) // (f * self.size))))
        return [self.tasks.popleft() for _ in range(k)]

    def finish(self, silent_s: float = 3600.0, poll_s: float = 0.01) -> dict:
        """Rank 0: keep answering until every other rank was told to stop; all ranks then meet
        at a barrier. Returns the summed reports (rank 0) or {} (others).

        A rank not heard from for ``silent_s`` seconds is taken for dead (e.g. FSPS's silent
        exit, which some launchers report as success): raises :class:`RankLost` on rank 0; the
        caller aborts the job, and a rerun redoes that rank's unfinished task."""
        if self.comm is None:
            return self.totals
        if self.rank == 0:
            while len(self.stopped) < self.size - 1:
                if not self.serve():
                    now = time.monotonic()
                    lost = [r for r in range(1, self.size) if r not in self.stopped
                            and now - self.last_seen[r] > silent_s]
                    if lost:
                        raise RankLost(f"rank(s) {lost} silent for more than {silent_s:.0f} s "
                                       "(died?); rerun the same command to resume")
                    time.sleep(poll_s)
        self.comm.Barrier()
        return self.totals if self.rank == 0 else {}
