"""Training-set storage: per-rank HDF5 shards that survive kill -9, and the finalized set.

Shards: each rank of each attempt (run) writes its own file ``shards/a<attempt>-r<rank>.h5``
with serial h5py (no MPI-IO needed). Files are opened in SWMR mode (HDF5 orders its metadata
writes so the file stays readable after a crash), rows of a chunk are appended, and only then is
the chunk's record ``(chunk, first draw, rows, first row, crc32)`` appended to ``chunks`` and the
file flushed and fsync'ed: a chunk is done exactly when its record is readable and its checksum
matches. A new attempt never reopens old shards for writing.

The finalized set ``trainset.h5`` holds, in draw order: ``theta`` (n, d) float64, ``phot``
(n, nbands) float32 arsinh magnitudes, ``log_mfrac`` (n,) float32, ``ok`` (n,) uint8 and
``reason`` (n,) bytes (why a draw failed), the filter curves, and attributes with parameter and
band names, model, training distribution, seed, config, version, git hash and format version.
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..provenance import provenance

FORMAT_VERSION = 1
REASON_LEN = 160
FINAL_NAME = "trainset.h5"


def _crc(*arrays) -> int:
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


def append_chunk(f, arrays: dict, record) -> int:
    """Append ``arrays`` (dataset → rows) to the open shard ``f``, flush, then append
    ``record(first row)`` to ``f["chunks"]``, flush and fsync: the chunk is on disk before its
    record exists. Returns the first row."""
    row0 = f[next(iter(arrays))].shape[0]
    for name, arr in arrays.items():
        ds = f[name]
        ds.resize(row0 + len(arr), axis=0)
        ds[row0:] = arr
    f.flush()
    rec = f["chunks"]
    k = rec.shape[0]
    rec.resize(k + 1, axis=0)
    rec[k] = record(row0)
    f.flush()
    os.fsync(f.id.get_vfd_handle())
    return row0


class ShardWriter:
    """Append-only, crash-consistent shard of one rank (one attempt)."""

    def __init__(self, path: Path, ndim: int, nbands: int, attrs: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.path, "w", libver="latest")
        rows = 1024
        f.create_dataset("index", (0,), "i8", maxshape=(None,), chunks=(rows,))
        f.create_dataset("theta", (0, ndim), "f8", maxshape=(None, ndim), chunks=(rows, ndim))
        f.create_dataset("phot", (0, nbands), "f4", maxshape=(None, nbands),
                         chunks=(rows, nbands))
        f.create_dataset("log_mfrac", (0,), "f4", maxshape=(None,), chunks=(rows,))
        f.create_dataset("ok", (0,), "u1", maxshape=(None,), chunks=(rows,))
        f.create_dataset("reason", (0,), f"S{REASON_LEN}", maxshape=(None,), chunks=(rows,))
        f.create_dataset("chunks", (0, 5), "i8", maxshape=(None, 5), chunks=(256, 5))
        for k, v in attrs.items():
            f.attrs[k] = v
        f.swmr_mode = True
        self.file = f

    def append(self, chunk: int, start: int, theta, phot, log_mfrac, ok, reason) -> None:
        """Write one finished chunk of draws ``start … start + len(theta) − 1``, then its record;
        flush and fsync so the record is on disk before the chunk counts as done."""
        n = len(theta)
        arrays = {"index": np.arange(start, start + n, dtype="i8"),
                  "theta": np.asarray(theta, "f8"), "phot": np.asarray(phot, "f4"),
                  "log_mfrac": np.asarray(log_mfrac, "f4"), "ok": np.asarray(ok, "u1"),
                  "reason": np.array([r.encode()[:REASON_LEN] for r in reason],
                                     dtype=f"S{REASON_LEN}")}
        append_chunk(self.file, arrays, lambda row0: (chunk, start, n, row0,
                                                      _crc(*arrays.values())))

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


@dataclass
class Chunk:
    chunk: int
    start: int
    count: int
    shard: Path
    row0: int


@dataclass
class Scan:
    """What the shards of a directory hold: valid chunks (first copy of each) and problems."""
    chunks: dict[int, Chunk] = field(default_factory=dict)
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    attempts: int = 0


def _open_shard(path: Path):
    try:  # a shard whose writer was killed is readable in SWMR mode
        return h5py.File(path, "r", swmr=True)
    except OSError:
        return h5py.File(path, "r")


def scan(directory: Path, expected: dict[int, int] | None = None) -> Scan:
    """Read every shard's chunk records and verify their checksums. ``expected`` (chunk →
    draws): records of other chunks or sizes are ignored (e.g. the short last chunk of a set
    that was since extended)."""
    out = Scan()
    shards = sorted(Path(directory, "shards").glob("a*-r*.h5"))
    for path in shards:
        try:
            out.attempts = max(out.attempts, int(path.name[1:].split("-")[0]))
        except ValueError:
            continue
        try:
            f = _open_shard(path)
        except OSError as err:
            out.problems.append(f"{path.name}: unreadable ({err}); its chunks will be redone")
            continue
        with f:
            recs = f["chunks"][()]
            for chunk, start, count, row0, crc in recs:
                sl = slice(int(row0), int(row0 + count))
                try:
                    arrays = [f[k][sl] for k in ("index", "theta", "phot", "log_mfrac", "ok",
                                                 "reason")]
                except (OSError, ValueError) as err:
                    out.problems.append(f"{path.name}: chunk {chunk} unreadable ({err})")
                    continue
                if len(arrays[0]) != count or _crc(*arrays) != crc:
                    out.problems.append(f"{path.name}: chunk {chunk} fails its checksum; redone")
                    continue
                if expected is not None and expected.get(int(chunk)) != int(count):
                    continue
                if int(chunk) in out.chunks:
                    out.duplicates += 1
                    continue
                out.chunks[int(chunk)] = Chunk(int(chunk), int(start), int(count), path,
                                               int(row0))
    return out


def finalize(directory: Path, expected: dict[int, int], n: int, attrs: dict, filters) -> Path:
    """Merge the shards of ``directory`` into ``trainset.h5`` (written to a temporary name, then
    renamed). ``expected``: chunk → draws. Raises RuntimeError naming the missing chunks if the
    set is incomplete."""
    directory = Path(directory)
    sc = scan(directory, expected)
    nchunks = len(expected)
    missing = sorted(set(expected) - set(sc.chunks))
    if missing:
        raise RuntimeError(f"training set in {directory} is incomplete: {len(missing)} of "
                           f"{nchunks} chunks missing (first: {missing[:10]}); rerun the same "
                           "generate command to resume")
    ndim = len(json.loads(attrs["param_names"]))
    nbands = len(json.loads(attrs["band_names"]))
    final = directory / FINAL_NAME
    tmp = directory / (FINAL_NAME + ".tmp")
    with h5py.File(tmp, "w") as out:
        ds = {"theta": out.create_dataset("theta", (n, ndim), "f8", chunks=(min(n, 4096), ndim)),
              "phot": out.create_dataset("phot", (n, nbands), "f4",
                                         chunks=(min(n, 4096), nbands)),
              "log_mfrac": out.create_dataset("log_mfrac", (n,), "f4"),
              "ok": out.create_dataset("ok", (n,), "u1"),
              "reason": out.create_dataset("reason", (n,), f"S{REASON_LEN}")}
        by_shard: dict[Path, list[Chunk]] = {}
        for c in sc.chunks.values():
            by_shard.setdefault(c.shard, []).append(c)
        for path, chunks in by_shard.items():
            with _open_shard(path) as f:
                for c in chunks:
                    sl = slice(c.row0, c.row0 + c.count)
                    idx = f["index"][sl]
                    if not np.array_equal(idx, np.arange(c.start, c.start + c.count)):
                        raise RuntimeError(f"{path.name}: chunk {c.chunk} holds draws {idx[:3]}…"
                                           f", expected {c.start}…")
                    for name, d in ds.items():
                        d[c.start:c.start + c.count] = f[name][sl]
        grp = out.create_group("filters")
        for flt in filters:
            g = grp.create_group(flt.name)
            g["wave"], g["trans"] = flt.wave, flt.trans
        ok = ds["ok"][()]
        reasons = ds["reason"][()][ok == 0]
        counts: dict[str, int] = {}
        for r in reasons:
            key = r.decode(errors="replace").split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        for k, v in attrs.items():
            out.attrs[k] = v
        out.attrs["n_failed"] = int((ok == 0).sum())
        out.attrs["failures_json"] = json.dumps(counts)
    os.replace(tmp, final)
    return final


def file_attrs(kind: str, config: dict, **extra) -> dict:
    """Provenance plus ``extra`` (JSON-encoded if not a scalar or string)."""
    attrs = provenance(kind, FORMAT_VERSION, config)
    for k, v in extra.items():
        attrs[k] = v if isinstance(v, (int, float, str, np.integer, np.floating)) \
            else json.dumps(v)
    return attrs


@dataclass
class TrainingSet:
    """A finalized training set in memory: arrays in draw order and the file's metadata."""
    theta: np.ndarray
    phot: np.ndarray
    log_mfrac: np.ndarray
    ok: np.ndarray
    param_names: list[str]
    band_names: list[str]
    attrs: dict

    @property
    def distribution(self) -> dict:
        return json.loads(self.attrs["distribution"])

    @property
    def dl07(self) -> str:
        """The DL07 qpah sequence of the SPS that made the set (sedhpc.sps.embedded)."""
        from ..sps import recorded_dl07

        return recorded_dl07(str(self.attrs.get("sps", "embedded")),
                             json.loads(self.attrs.get("config_json", "{}")).get("dl07"))


def load(path) -> TrainingSet:
    """Read a finalized ``trainset.h5`` (a directory is read as its ``trainset.h5``)."""
    path = Path(path)
    if path.is_dir():
        path = path / FINAL_NAME
    if not path.exists():
        if (path.parent / "generate.json").exists():
            raise FileNotFoundError(f"no finalized training set at {path}; finish it with "
                                    f"`sedhpc generate --finalize {path.parent}`")
        raise FileNotFoundError(f"no training set at {path} (make one with `sedhpc generate`)")
    with h5py.File(path, "r") as f:
        if int(f.attrs.get("sedhpc_format_version", -1)) != FORMAT_VERSION:
            warnings.warn(f"{path}: training-set format {f.attrs.get('sedhpc_format_version')} "
                          f"(this sedhpc reads {FORMAT_VERSION})")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        return TrainingSet(f["theta"][()], f["phot"][()], f["log_mfrac"][()], f["ok"][()],
                           json.loads(attrs["param_names"]), json.loads(attrs["band_names"]),
                           attrs)
