"""Shared helpers for benchmarks: machine facts and writing a section of docs/BENCHMARKS.md.

Each benchmark owns one section delimited by ``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->``
and rewrites only that section, so results from different commands live side by side.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"


def pin_threads(default: str = "1") -> str:
    """Set the BLAS/OpenMP thread count from ``--threads N`` on the command line (else
    ``default``); call before numpy is imported. Returns the count."""
    import sys
    n = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else default
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    return n


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def versions(*modules) -> str:
    from importlib import metadata

    import sedhpc
    from sedhpc.provenance import git_hash

    out = [f"sedhpc {sedhpc.__version__} ({git_hash()[:12]})", f"python {platform.python_version()}"]
    for name in modules:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def write_section(name: str, title: str, body: str, command: str, modules=("numpy",)) -> None:
    """Replace (or append) the section ``name`` of docs/BENCHMARKS.md."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"<!-- bench:{name} -->\n## {title}\n\n"
            f"- command: `{command}`\n- date: {stamp}\n- machine: {machine()}\n"
            f"- versions: {versions(*modules)}\n\n{body.strip()}\n<!-- /bench:{name} -->\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nEvery section is written by " \
        "its command under `tools/bench/`; rerun the command to refresh it.\n\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n",
                         re.S)
    doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc + "\n" + text
    DOC.write_text(doc)
    print(text)


def fit_example(tmp: Path, ngal: int, ranks: int, *args: str) -> tuple[float, Path, str]:
    """Run `sedhpc fit` on the first ``ngal`` galaxies of the bundled example catalog with
    its config (extra ``args``), on ``ranks`` MPI ranks with one BLAS thread each, into
    ``tmp``/r<ranks>. Returns (wall seconds, fit directory, the ranks' logs)."""
    import shutil
    import subprocess
    import sys
    import time

    from astropy.table import Table

    data = Path(__file__).resolve().parents[2] / "sedhpc" / "data"
    cat = tmp / f"cat{ngal}.ecsv"
    if not cat.exists():
        Table.read(data / "dc2_example.ecsv")[:ngal].write(cat)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = tmp / f"r{ranks}"
    cmd = [sys.executable, "-m", "sedhpc", "fit", str(cat), "--config",
           str(data / "dc2_example.toml"), *args, "--out", str(out), "--no-progress"]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    wall = time.perf_counter() - t0
    return wall, out, "".join(p.read_text() for p in (out / "logs").glob("*.log"))
