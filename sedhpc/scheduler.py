"""``sedhpc fit``: the catalog engine. Every MPI rank fits; work moves in chunks of catalog rows.

- The catalog is cut into fixed chunks of ``chunk`` rows (the unit of storage and of resume).
  ``shard = "i/n"`` (default from ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``) takes
  the i-th of n contiguous runs of chunks, for array jobs; all shards may share one output
  directory.
- Ranks claim chunks from rank 0 through :class:`sedhpc.parallel.WorkQueue` (rank 0 fits too
  and answers requests once per sampler step). Claims are guided: about remaining / (2 × ranks)
  chunks, between 1 and ``max_claim``, so claims shrink towards the end and ranks finish
  together. A rank feeds the galaxies of its claims into one continuous sampler batch: it claims
  again when its sampler asks for a galaxy and it has none left, so slots never drain between
  claims.
- Galaxy g (catalog row) draws its random numbers from ``SeedSequence(seed, spawn_key=(g,))``:
  results do not depend on ranks, shards, claims or restarts.
- A chunk is written to the rank's shard (:mod:`sedhpc.store`) once all its galaxies are done;
  a rerun of the same command redoes exactly the chunks without a valid record. A rerun with
  other settings is refused unless ``new_run`` (the old shards are then moved aside).
- One GPU per rank (local rank modulo the GPUs CuPy sees) when ``device`` allows it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from . import config as cfgmod
from . import store
from ._threads import fit_threads
from .catalog import SKIP, CatalogSpec, Flags, read_catalog
from .ood import OOD, ColourOOD
from .parallel import RankLost, WorkQueue, world
from .provenance import provenance
from .sps import recorded_dl07, resolve_dl07

#: settings that define a run's results; resuming with other values is refused
IDENTITY = ("catalog_sha256", "emulator_sha256", "columns", "sampler", "sampler_options",
            "photoz", "zprior", "prior", "zeropoints_sha256", "seed", "nsamples", "floor",
            "chunk", "nshards")


@dataclasses.dataclass
class FitConfig:
    """Settings of ``sedhpc fit`` (also the ``[fit]`` table of a TOML file; ``columns`` is the
    catalog column map, see :class:`sedhpc.catalog.CatalogSpec`; ``sampler_options`` go to the
    sampler, e.g. ``nslots``, ``max_steps`` or ``nlive``)."""
    catalog: str
    out: str
    columns: dict = dataclasses.field(default_factory=dict)
    emulator: str | None = None
    sps: str | None = None  # "embedded" / "fsps": call the SPS directly instead (slow)
    dl07: str | None = None  # with sps: its DL07 qpah sequence (sedhpc.sps.embedded)
    sampler: str = "ensemble"
    sampler_options: dict = dataclasses.field(default_factory=dict)
    photoz: bool = False
    zprior: str | None = None
    prior: dict = dataclasses.field(default_factory=dict)  # parameter → prior spec override
    zeropoints: str | None = None  # table of `sedhpc calibrate-zp` (per band, per tract)
    seed: int = 0
    nsamples: int = 256
    floor: float = 0.05
    chunk: int = 32
    max_claim: int = 16
    shard: str | None = None
    device: str = "auto"
    threads: int | None = None  # BLAS threads per rank while fitting (fit_batch's ``threads``)
    new_run: bool = False
    progress: bool = True
    colour_ood: bool = True  # flag colours far outside the training set (sedhpc.ood.ColourOOD)

    def validate(self) -> None:
        if self.sampler not in ("ensemble", "dynesty"):
            raise cfgmod.ConfigError(f"sampler must be 'ensemble' or 'dynesty'; got "
                                     f"{self.sampler!r}")
        for name in ("chunk", "nsamples", "max_claim"):
            if getattr(self, name) <= 0:
                raise cfgmod.ConfigError(f"{name} must be positive; got {getattr(self, name)}")
        if self.floor < 0:
            raise cfgmod.ConfigError(f"floor must be ≥ 0; got {self.floor}")
        if self.sps is not None and self.sps not in ("embedded", "fsps"):
            raise cfgmod.ConfigError(f"sps must be 'embedded' or 'fsps'; got {self.sps!r}")
        if self.sps and self.emulator:
            raise cfgmod.ConfigError("give either emulator or sps, not both")
        if self.dl07 and not self.sps:
            raise cfgmod.ConfigError("dl07 chooses the DL07 sequence of a direct SPS (sps = ...);"
                                     " an emulator emulates the one it was trained on")
        if self.sps:
            try:
                self.dl07 = resolve_dl07(self.sps, self.dl07)
            except ValueError as err:
                raise cfgmod.ConfigError(str(err)) from None
        if self.threads is not None and self.threads < 1:
            raise cfgmod.ConfigError(f"threads must be ≥ 1; got {self.threads}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise cfgmod.ConfigError(f"device must be auto, cpu or gpu; got {self.device!r}")
        if not self.columns.get("bands"):
            raise cfgmod.ConfigError("no bands mapped: give [fit.columns.bands] in the config "
                                     "(band = [flux column, error column])")
        self.spec = CatalogSpec.from_dict(self.columns)
        fit_model(self)  # refuse a bad prior override now
        self.shard_index, self.nshards = parse_shard(self.shard)

    def record(self) -> dict:
        d = cfgmod.as_dict(self)
        d.pop("spec", None)
        return d


def parse_shard(shard: str | None, env=os.environ) -> tuple[int, int]:
    """``"i/n"`` → (i, n); None → from SLURM array variables (0-based task id among the
    array's tasks), else (0, 1)."""
    if shard is None:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            tid = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            shard = f"{tid}/{env['SLURM_ARRAY_TASK_COUNT']}"
        else:
            return 0, 1
    try:
        i, n = (int(v) for v in str(shard).split("/"))
    except ValueError:
        raise cfgmod.ConfigError(f"shard must look like 'i/n'; got {shard!r}") from None
    if not (n > 0 and 0 <= i < n):
        raise cfgmod.ConfigError(f"shard {shard!r}: need 0 ≤ i < n")
    return i, n


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def shard_chunks(nrows: int, chunk: int, shard: int, nshards: int) -> range:
    """Chunk ids of array shard ``shard`` of ``nshards`` (contiguous runs of chunks)."""
    nchunks = -(-nrows // chunk)
    return range(shard * nchunks // nshards, (shard + 1) * nchunks // nshards)


def _select_device(cfg: FitConfig, comm):
    """numpy, or cupy with this rank's GPU selected (local rank modulo the device count)."""
    from .emulator.kernel import gpu_available

    if cfg.device == "cpu" or (cfg.device == "auto" and not gpu_available()):
        return "numpy", None
    if not gpu_available():
        raise RuntimeError("device = 'gpu' but CuPy sees no usable GPU")
    import cupy

    local = 0
    if comm is not None:
        from mpi4py import MPI
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    dev = local % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(dev).use()
    return "cupy", dev


def _prepare(cfg: FitConfig, directory: Path, meta: dict) -> tuple[list[int], int]:
    """Rank 0: check or record the settings, scan the shards: (chunks to do, attempt)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fit.json"
    if path.exists():
        stored = json.loads(path.read_text())
        sps = stored["identity"]["emulator_sha256"]
        if sps in ("sps:embedded", "sps:fsps"):  # recorded before dl07 existed
            stored["identity"]["emulator_sha256"] = f"{sps}:{recorded_dl07(sps[4:], None)}"
        diff = cfgmod.differences(stored["identity"], meta["identity"], IDENTITY)
        if diff and not cfg.new_run:
            raise cfgmod.ConfigError(
                f"{directory} holds a fit made with other settings: " + "; ".join(diff)
                + ". Repeat those settings to resume, use another --out, or pass --new-run to "
                "set the old results aside and start again.")
        if diff:
            old = directory / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
            old.mkdir()
            for name in ("shards", "logs", "fit.json"):
                if (directory / name).exists():
                    os.replace(directory / name, old / name)
    if not path.exists():
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=1, default=str))
        tmp.replace(path)
    sc = store.scan(directory)
    for p in sc.problems:
        logging.getLogger("sedhpc.fit").warning(p)
    mine = shard_chunks(meta["nrows"], cfg.chunk, cfg.shard_index, cfg.nshards)
    return [c for c in mine if c not in sc.chunks], sc.attempts + 1


def _metadata(cfg: FitConfig, catalog, emulator_path: str) -> dict:
    identity = dict(cfg.record(), catalog_sha256=sha256(cfg.catalog),
                    emulator_sha256=(f"sps:{cfg.sps}:{cfg.dl07}" if cfg.sps
                                     else sha256(emulator_path)),
                    zeropoints_sha256=sha256(cfg.zeropoints) if cfg.zeropoints else None,
                    nshards=cfg.nshards)
    return {"identity": {k: identity[k] for k in IDENTITY}, "config": cfg.record(),
            "emulator": emulator_path, "nrows": len(catalog.ids), "bands": catalog.bands,
            "format_version": store.FORMAT_VERSION,
            "provenance": provenance("fit", store.FORMAT_VERSION, cfg.record())}


def apply_zeropoints(cat, path) -> None:
    """Correct the catalog's fluxes and errors in place by the table of `sedhpc calibrate-zp`
    (per tract when the catalog has a tract column and the table more than one tract)."""
    from . import zeropoints

    zp = zeropoints.read(path, cat.bands)
    if len(zp) == 1:
        f = np.broadcast_to(next(iter(zp.values())), cat.flux.shape)
    else:
        if cat.tract is None:
            raise cfgmod.ConfigError(f"{path} has zeropoints for tracts {sorted(zp)}: map the "
                                     "catalog's tract column (columns.tract_column)")
        unknown = sorted(set(cat.tract) - set(zp))
        if unknown:
            raise cfgmod.ConfigError(f"{path} has no zeropoints for tract(s) {unknown[:5]}")
        f = np.array([zp[t] for t in cat.tract])
    cat.flux *= f
    cat.err *= f


def fit_model(cfg: FitConfig):
    """The physical model of a fit: the SPS's model with the ``prior`` overrides, e.g.
    ``{"logmass": {"type": "normal", "mu": 10, "sigma": 1, "lo": 7, "hi": 12.5}}``."""
    from .model import get_model
    from .model.priors import from_spec
    from .sps import model_for

    model = get_model(model_for(cfg.sps or "embedded"))
    if not cfg.prior:
        return model
    try:
        priors = {k: from_spec(dict(v), model.names) for k, v in cfg.prior.items()}
        return model.with_fixed(model.fixed, priors)
    except (KeyError, TypeError, ValueError) as err:
        raise cfgmod.ConfigError(f"prior override {cfg.prior}: {err}") from None


def _sps_zrange(sps: str) -> tuple[float, float]:
    from .model import get_model
    from .sps import model_for

    m = get_model(model_for(sps))
    lo, hi = m.bounds[m.index("zred")]
    return float(lo), float(hi)


def fit(cfg: FitConfig, comm="world") -> dict:
    """Fit (or resume) the catalog ``cfg.catalog`` into ``cfg.out``; every rank calls this.
    Returns a summary on rank 0 (galaxies done, failed, seconds, directory), {} elsewhere."""
    if comm == "world":
        comm, rank, size = world()
    else:
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    directory = Path(cfg.out)
    t0 = time.perf_counter()
    from .emulator import default_path

    emu_path = str(cfg.emulator or default_path())
    setup, error, lock = None, None, None
    if rank == 0:  # everything that can refuse the run happens here, before any work
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock = open(directory / f"fit-{cfg.shard_index}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"another `sedhpc fit` is writing shard {cfg.shard_index} "
                                   f"of {directory}") from None
            if cfg.sps:
                known, zr = None, _sps_zrange(cfg.sps)
            else:
                from .emulator import Emulator
                emu = Emulator(emu_path, xp="numpy")
                known, zr = emu.bands, tuple(emu.zrange)
            cat = read_catalog(cfg.catalog, cfg.spec, known_bands=known,
                               zrange=None if cfg.photoz else zr)
            if cat.zred is None and not cfg.photoz:
                raise cfgmod.ConfigError("no redshift column mapped (columns.redshift_column):"
                                         " give one, or fit with photoz = true")
            meta = _metadata(cfg, cat, emu_path)
            setup = ("ok", *_prepare(cfg, directory, meta))
        except Exception as err:  # noqa: BLE001 - sent to every rank, then raised everywhere
            setup, error = ("error", f"{type(err).__name__}: {err}"), err
    if comm is not None:
        setup = comm.bcast(setup, root=0)
    try:
        if setup[0] == "error":
            if error is not None:
                raise error
            raise RuntimeError(f"rank 0 refused to start: {setup[1]}")
        _, todo, attempt = setup
        return _run(cfg, comm, rank, size, directory, todo, attempt, emu_path, t0)
    finally:
        if lock:
            lock.close()


class _Chunks:
    """This rank's claimed chunks: the galaxies still to fit, the results so far; writes a
    chunk to the shard when it is complete."""

    def __init__(self, cfg, cat, model, quantities, writer_factory, log, ood, colour=None):
        self.cfg, self.cat, self.model, self.log, self.ood = cfg, cat, model, log, ood
        self.colour = colour
        self.quantities, self.make_writer, self.writer = quantities, writer_factory, None
        self.open: dict[int, dict] = {}  # chunk → {row: result or None}
        self.started: dict[int, float] = {}
        self.done = self.failed = 0
        self.store_s = 0.0  # wall seconds spent writing chunks (incl. flush + fsync)
        self.progress = lambda n, failed: None  # rank 0: its own galaxies, to the bar

    def rows(self, c: int) -> range:
        return range(c * self.cfg.chunk, min((c + 1) * self.cfg.chunk, len(self.cat.ids)))

    def add(self, c: int) -> list[int]:
        """Open chunk c; returns the rows to fit (flagged rows are settled at once)."""
        rows = self.rows(c)
        skip = (self.cat.flags[rows.start:rows.stop] & SKIP) != 0
        self.open[c] = {r: ({"skipped": True} if s else None) for r, s in zip(rows, skip)}
        self.progress(int(skip.sum()), int(skip.sum()))
        self._maybe_write(c)
        return [r for r, s in zip(rows, skip) if not s]

    def result(self, r, res) -> None:
        c = r // self.cfg.chunk
        self.open[c][r] = {"res": res, "runtime": time.perf_counter() - self.started.pop(r)}
        self.progress(1, int(res.error is not None))
        self._maybe_write(c)

    def _maybe_write(self, c: int) -> None:
        entries = self.open[c]
        if any(v is None for v in entries.values()):
            return
        del self.open[c]
        N, P = self.cfg.nsamples, len(self.quantities)
        n = len(entries)
        out = {"row": np.fromiter(entries, int, n), "samples": np.full((n, N, P), np.nan),
               "percentiles": np.full((n, P, 5), np.nan)}
        out["id"] = self.cat.ids[out["row"]]
        for k in store.SCALARS:
            out[k] = np.full(n, np.nan) if store.SCALARS[k][0] == "f" else np.zeros(n)
        out["flags"] = self.cat.flags[out["row"]].astype(np.int64)
        out["nbands"] = self.cat.mask[out["row"]].sum(axis=1)
        if self.cat.zred is not None:
            out["zred"] = self.cat.zred[out["row"]]
        judged = np.array([not e.get("skipped") for e in entries.values()], bool)
        if self.colour is not None and judged.any():
            r_ = out["row"][judged]
            far = self.colour.flags(self.cat.flux[r_], self.cat.err[r_], self.cat.mask[r_],
                                    None if self.cfg.photoz else self.cat.zred[r_])
            out["flags"][np.flatnonzero(judged)[far]] |= Flags.COLOUR_OOD
        for k, (r, e) in enumerate(entries.items()):
            if e.get("skipped"):
                self.failed += 1
                continue
            res = e["res"]
            out["runtime"][k] = e["runtime"]
            d = res.diagnostics
            out["ncall"][k] = d.get("ncall", 0)
            if res.error:
                out["flags"][k] |= Flags.FIT_FAILED
                self.failed += 1
                self.log.info(f"row {r}: fit failed: {res.error}")
                continue
            x = quantity_samples(self.model, res)
            out["samples"][k] = x
            out["percentiles"][k] = np.percentile(x, store.PERCENTILES, axis=0).T
            out["logz"][k], out["logzerr"][k] = d.get("logz", np.nan), d.get("logzerr", np.nan)
            out["ess"][k], out["chi2"][k] = d.get("ess", np.nan), res.chi2_best
            if not res.converged:
                out["flags"][k] |= Flags.NOT_CONVERGED
            out["flags"][k] |= self.ood.flags(res, int(out["nbands"][k]))
            self.done += 1
        t0 = time.perf_counter()
        if self.writer is None:
            self.writer = self.make_writer()
        self.writer.append(c, out)
        self.store_s += time.perf_counter() - t0
        self.log.info(f"chunk {c}: rows {min(entries)}-{max(entries)} written")


def quantity_samples(model, res) -> np.ndarray:
    """(N, P) samples of the stored quantities: free parameters, log10 M*, log10 SFR100, MWA."""
    der = res.derived
    return np.column_stack([res.samples[:, model.free_index], der["logmstar"],
                            np.log10(np.maximum(der["sfr100"], 1e-30)), der["mwa_gyr"]])


def _run(cfg, comm, rank, size, directory, todo, attempt, emu_path, t0) -> dict:
    from .emulator import Emulator
    from .samplers import fit_batch, photoz_model

    log = logging.getLogger(f"sedhpc.fit.r{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    (directory / "logs").mkdir(exist_ok=True)
    tag = f"a{attempt:03d}-s{cfg.shard_index:04d}-r{rank:04d}"
    h = logging.FileHandler(directory / "logs" / f"{tag}.log")
    h.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.handlers = [h]
    xp, dev = _select_device(cfg, comm)
    cat = read_catalog(cfg.catalog, cfg.spec, zrange=None)
    if cfg.sps:
        from .sps.direct import DirectSPS
        emu = DirectSPS(cfg.sps, cat.bands, cfg.dl07)
    else:
        emu = Emulator(emu_path, bands=cat.bands, xp=xp)
    if cfg.zeropoints:
        apply_zeropoints(cat, cfg.zeropoints)
    if not cfg.photoz:  # the emulator's range (rank 0 flagged these already; re-derive)
        lo, hi = emu.zrange
        out_of = np.isfinite(cat.zred) & ((cat.zred < lo) | (cat.zred > hi))
        cat.flags[out_of] |= np.uint32(Flags.Z_OUT_OF_RANGE)
    model = fit_model(cfg)
    if cfg.photoz:
        model = photoz_model(model, emu, cfg.zprior)
    quantities = [model.names[i] for i in model.free_index] + list(store.DERIVED)
    attrs = {**provenance("fit-shard", store.FORMAT_VERSION, cfg.record()), "rank": rank,
             "attempt": attempt, "shard": cfg.shard_index, "model": model.name,
             "fixed": json.dumps(list(model.fixed)),
             "prior": json.dumps(model.prior.spec(), default=float)}

    def writer():
        return store.ShardWriter(directory / "shards" / f"{tag}.h5", cfg.nsamples, quantities,
                                 attrs)
    colour = None
    if cfg.colour_ood and not cfg.sps:  # (a direct SPS would cost ~1000 calls per galaxy)
        t1 = time.perf_counter()
        colour = ColourOOD(model, emu, zfree=cfg.photoz)
        log.info(f"colour OOD threshold {colour.threshold:.3g} (χ²_k/ν, quantile "
                 f"{colour.quantile} of {colour.ncal} held-out training draws) in "
                 f"{time.perf_counter() - t1:.1f} s")
    chunks = _Chunks(cfg, cat, model, quantities, writer, log, OOD(model, emu), colour)
    log.info(f"rank {rank}/{size} pid {os.getpid()} ready after {time.perf_counter() - t0:.1f} s "
             f"(array module {xp}, GPU {dev}); {len(todo)} chunks to do")

    total = sum(len(chunks.rows(c)) for c in todo)
    bar = None
    if rank == 0 and cfg.progress and total:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="gal", desc="fit", smoothing=0.05)

    failed = [0]

    def on_report(r, rep):  # other ranks' progress, sent with their claims
        if bar and r != 0:
            bar.update(rep.get("done", 0) + rep.get("failed", 0))
            failed[0] += rep.get("failed", 0)
            bar.set_postfix(failed=failed[0], refresh=False)

    def own(n, nfail):
        bar.update(n)
        if nfail:
            failed[0] += nfail
            bar.set_postfix(failed=failed[0], refresh=False)

    if bar:
        chunks.progress = own

    queue = WorkQueue(comm, todo, on_report, grain=(cfg.max_claim, 2))
    reported = {"done": 0, "failed": 0}

    def report():
        rep = {"done": chunks.done - reported["done"], "failed": chunks.failed - reported["failed"]}
        reported.update(done=chunks.done, failed=chunks.failed)
        return rep

    def feed():
        while True:
            claim = queue.next(report())
            if claim is None:
                return
            for c in claim:
                for r in chunks.add(c):
                    chunks.started[r] = time.perf_counter()
                    yield r

    # a rank fills every free slot at once: with fewer galaxies than ranks × slots, the first
    # rank would take them all, so slots are capped at this rank's share of the work
    opts = dict(cfg.sampler_options)
    share = max(1, -(-total // size))
    if cfg.sampler == "ensemble" and "nslots" not in opts:
        # (with a direct SPS, one chunk's galaxies at a time: no batch gain, and all galaxies
        # in flight finish late)
        opts["nslots"] = min(cfg.chunk if cfg.sps else 2048 if xp == "cupy" else 64, share)
    if cfg.sampler == "dynesty" and "nconcurrent" not in opts:
        # a direct SPS computes one row at a time (no batch gain): concurrent galaxies would
        # only share the GIL and all finish late, so a killed run would redo them all
        opts["nconcurrent"] = 1 if cfg.sps else min(64, share)
    log.info(f"sampler {cfg.sampler}, options {opts}, BLAS threads "
             f"{fit_threads(cfg.threads) or 'as set by the user'}")
    try:
        fit_batch(model, emu, cat.flux, cat.err, zred=cat.zred, mask=cat.mask, floor=cfg.floor,
                  sampler=cfg.sampler, seed=cfg.seed, nsamples=cfg.nsamples,
                  callback=lambda res: chunks.result(res.galaxy, res), sigma_emu=None,
                  galaxies=feed(), tick=queue.serve, threads=cfg.threads, **opts)
        queue.finish(silent_s=3600.0)
        if bar:  # the other ranks' last galaxies finished after their last report
            bar.update(max(0, total - bar.n))
    except RankLost:
        log.error("lost a rank; aborting")
        if comm is not None:
            comm.Abort(3)
        raise
    finally:
        if chunks.writer:
            chunks.writer.close()
        if bar:
            bar.close()
    if chunks.open:
        raise RuntimeError(f"rank {rank}: chunks {sorted(chunks.open)} left unfinished")
    busy = time.perf_counter() - t0
    log.info(f"rank {rank} finished: {chunks.done} fitted, {chunks.failed} not fitted in "
             f"{busy:.1f} s, {chunks.store_s:.2f} s of it writing the store")
    counts = np.array([chunks.done, chunks.failed, chunks.store_s, busy])
    if comm is not None:
        counts = comm.reduce(counts, root=0)
    if rank != 0:
        return {}
    return {"done": int(counts[0]), "failed": int(counts[1]), "store_s": float(counts[2]),
            "busy_s": float(counts[3]), "ranks": size,
            "chunks": len(todo), "wall_s": time.perf_counter() - t0, "out": str(directory)}
