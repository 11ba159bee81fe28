"""Run under mpiexec: every rank works through a WorkQueue; rank r takes (r + 1) × 4 ms per
item. Prints (rank 0) a JSON summary of which rank did which task."""

import json
import time

from sedhpc.parallel import WorkQueue, world

comm, rank, size = world()
queue = WorkQueue(comm, [(t, t + 1) for t in range(0, 90)])
mine, report = [], None
while (task := queue.next(report)) is not None:
    for _ in range(3):
        time.sleep(0.004 * (rank + 1) / 3)
        queue.serve()
    mine.append(task[0])
    report = {"items": 1}
totals = queue.finish()
everyone = comm.gather(mine, root=0)
if rank == 0:
    print(json.dumps({"per_rank": everyone, "totals": totals}))
