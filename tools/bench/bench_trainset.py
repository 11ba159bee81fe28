"""Training-set generation throughput: draws/s with 1 and 2 ranks (same settings, one run after
the other), parallel efficiency, peak memory per rank, and the cost per draw split into SPS and
overhead (parameter draws, HDF5 writes, queue).

    python tools/bench/bench_trainset.py [--n 3000] [--bands 40] [--chunk 64]

The steady-state rate is measured from the per-rank logs (first chunk start to last chunk end),
so the start-up (importing bagpipes, building the SPS: reported separately) is not in it.
Rewrites the ``trainset`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
BANDS_135 = HERE.joinpath("filters_135.txt").read_text().split()


def parse_logs(out: Path) -> dict:
    stamp = re.compile(r"^(\S+ \S+) (.*)$")
    first, last, rss, ready = None, None, [], []
    sps = busy = 0.0
    draws = 0
    for log in sorted((out / "logs").glob("*.log")):
        for line in log.read_text().splitlines():
            m = stamp.match(line)
            if not m:
                continue
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            msg = m.group(2)
            if msg.startswith("chunk "):
                c = re.search(r"draws (\d+)-(\d+): \d+ failed, sps ([\d.]+) s, total ([\d.]+) s",
                              msg)
                n = int(c.group(2)) - int(c.group(1)) + 1
                draws += n
                sps += float(c.group(3))
                busy += float(c.group(4))
                first = min(first, t - float(c.group(4))) if first else t - float(c.group(4))
                last = max(last, t) if last else t
            elif "peak RSS" in msg:
                rss.append(float(re.search(r"([\d.]+) MB", msg).group(1)))
            elif "ready after" in msg:
                ready.append(float(re.search(r"after ([\d.]+) s", msg).group(1)))
    return {"draws": draws, "steady_s": last - first, "sps_s": sps, "busy_s": busy,
            "rss_mb": rss, "ready_s": ready}


def run(ranks: int, args, bands) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench-gen-{ranks}-"))
    cmd = [sys.executable, "-m", "sedhpc", "generate", "--bands", ",".join(bands), "-n",
           str(args.n), "--zrange", "0.01", "3", "--seed", "1", "--chunk", str(args.chunk),
           "--out", str(out), "--no-progress"]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
        cmd = [mpiexec or "mpiexec", "-n", str(ranks), *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    res = parse_logs(out)
    res["wall_s"] = wall
    shutil.rmtree(out)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--bands", type=int, default=40, help="number of bands (from the 135)")
    parser.add_argument("--chunk", type=int, default=64)
    args = parser.parse_args()
    bands = BANDS_135[::max(1, len(BANDS_135) // args.bands)][:args.bands]
    r1, r2 = run(1, args, bands), run(2, args, bands)
    rate1 = r1["draws"] / r1["steady_s"]
    rate2 = r2["draws"] / r2["steady_s"]
    rows = []
    for k, r, rate in ((1, r1, rate1), (2, r2, rate2)):
        per = r["busy_s"] / r["draws"] * 1e3
        sps = r["sps_s"] / r["draws"] * 1e3
        rows.append(f"| {k} | {rate:.0f} | {rate / k:.0f} | {r['draws'] / r['wall_s']:.0f} | "
                    f"{per:.2f} | {sps:.2f} | {per - sps:.2f} ({(per - sps) / per:.0%}) | "
                    f"{max(r['rss_mb']):.0f} | {max(r['ready_s']):.1f} |")
    body = (
        f"{args.n} draws of the embedded model's training distribution (0.01 ≤ z ≤ 3), "
        f"{len(bands)} bands, chunks of {args.chunk}; `sedhpc generate` with 1 rank, then "
        "`mpiexec -n 2` (PyPI mpich), one thread per rank. Steady rate: draws / (first chunk "
        "start → last chunk end) from the rank logs; end-to-end includes start-up and the "
        "final merge. Per-draw costs are per rank (busy time = draw parameters + SPS + HDF5 "
        "append/flush/fsync).\n\n"
        "| ranks | steady draws/s | per rank | end-to-end draws/s | ms/draw busy | ms/draw SPS "
        "| ms/draw overhead | peak RSS/rank [MB] | start-up [s] |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Parallel efficiency at 2 ranks (steady): **{rate2 / (2 * rate1):.0%}** "
        "(target ≥ 85 %).\n")
    write_section("trainset", "Training-set generation: ranks, efficiency, memory (issue 3)",
                  body, "python tools/bench/bench_trainset.py", modules=("numpy", "h5py",
                                                                         "mpi4py", "bagpipes"))
    print(json.dumps({"rate1": rate1, "rate2": rate2}))


if __name__ == "__main__":
    main()
