"""Posterior store of ``sedhpc fit``: per-rank HDF5 shards of compressed posteriors that survive
kill -9, and the readers behind ``sedhpc status / check / merge``.

Layout of a fit directory::

    fit.json                      settings, their hash, catalog and emulator, provenance
    shards/a<attempt>-r<rank>.h5  one file per rank and attempt (serial h5py, SWMR)
    logs/a<attempt>-r<rank>.log

A shard holds, per galaxy (one row each, appended a chunk of catalog rows at a time): ``row``
(catalog row), ``id``, ``flags`` (:class:`sedhpc.catalog.Flags`), ``samples`` (N, P) uint16 —
N equal-weight posterior samples of P quantities (the free parameters, then log10 stellar
mass, log10 SFR over 100 Myr, mass-weighted age in Gyr), quantised per galaxy and quantity
affinely between the sample minimum ``qlo`` and maximum (step ``qstep``), stored with shuffle +
gzip — ``percentiles`` (P, 5) at 2.5/16/50/84/97.5 % of the unquantised samples, ``logz``,
``logzerr`` (dynesty), ``zred`` (the catalog's redshift, NaN if none), ``ess``, ``ncall``,
``chi2`` (best sample), ``nbands``, ``runtime`` (s).
After a chunk's rows are written and flushed, its record ``(chunk, rows, first row, crc32)`` is
appended to ``chunks`` and the file fsync'ed: a chunk is done exactly when its record is
readable and its checksum matches; rows of a chunk without a valid record are ignored and the
chunk is redone on resume. A new attempt never reopens old shards for writing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .trainset.store import _crc, _open_shard, append_chunk

FORMAT_VERSION = 1
PERCENTILES = (2.5, 16.0, 50.0, 84.0, 97.5)
QMAX = 65535
DERIVED = ("logmstar", "log_sfr100", "mwa_gyr")
SCALARS = {"flags": "u4", "zred": "f8", "logz": "f8", "logzerr": "f8", "ess": "f4", "ncall": "i8",
           "chi2": "f4", "nbands": "i2", "runtime": "f4"}


def read_meta(directory) -> dict:
    """``fit.json`` of a fit directory (settings, identity, catalog size); a clear error when
    the directory is not a fit directory or the file is damaged."""
    path = Path(directory) / "fit.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a fit directory (no fit.json)")
    try:
        meta = json.loads(path.read_text())
        meta["config"]["chunk"], meta["nrows"], meta["identity"]["nshards"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged or not written by sedhpc fit ({err!r})") from None
    return meta


def quantise(x: np.ndarray):
    """Samples (n, N, P) → (uint16 codes, lo (n, P), step (n, P)); x ≈ lo + code·step, error
    ≤ step/2 = (max − min)/131070 per galaxy and quantity."""
    x = np.asarray(x, float)
    lo, hi = x.min(axis=1), x.max(axis=1)
    step = (hi - lo) / QMAX
    safe = np.where(step > 0, step, 1.0)
    code = np.rint((x - lo[:, None]) / safe[:, None])
    return np.clip(code, 0, QMAX).astype(np.uint16), lo, step


def dequantise(code, lo, step) -> np.ndarray:
    return lo[..., None, :] + np.asarray(code, float) * step[..., None, :]


class ShardWriter:
    """Append-only, crash-consistent shard of one rank (one attempt): ``append`` one chunk's
    galaxies, then its record, flush, fsync."""

    def __init__(self, path: Path, nsamples: int, names: list[str], attrs: dict,
                 compression: str = "gzip"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        P = len(names)
        f = h5py.File(self.path, "w", libver="latest")
        rows = 64
        comp = dict(compression=compression, shuffle=True) if compression else {}
        f.create_dataset("row", (0,), "i8", maxshape=(None,), chunks=(rows,))
        f.create_dataset("id", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(rows,))
        f.create_dataset("samples", (0, nsamples, P), "u2", maxshape=(None, nsamples, P),
                         chunks=(16, nsamples, P), **comp)
        for name in ("qlo", "qstep"):
            f.create_dataset(name, (0, P), "f8", maxshape=(None, P), chunks=(rows, P), **comp)
        f.create_dataset("percentiles", (0, P, 5), "f4", maxshape=(None, P, 5),
                         chunks=(rows, P, 5), **comp)
        for name, dt in SCALARS.items():
            f.create_dataset(name, (0,), dt, maxshape=(None,), chunks=(rows,))
        f.create_dataset("chunks", (0, 4), "i8", maxshape=(None, 4), chunks=(256, 4))
        attrs = dict(attrs, quantities=json.dumps(names), nsamples=nsamples,
                     percentiles=json.dumps(PERCENTILES))
        for k, v in attrs.items():
            f.attrs[k] = v
        f.swmr_mode = True
        self.file, self.nsamples, self.P = f, nsamples, P

    def append(self, chunk: int, rows: dict) -> None:
        """Write one finished chunk: ``rows`` maps dataset name → array over its galaxies
        (``samples`` as float (n, N, P); NaN-filled for galaxies that were not fitted)."""
        f = self.file
        x = np.asarray(rows.pop("samples"), float)
        n = len(x)
        code, lo, step = quantise(np.nan_to_num(x))
        data = {"row": np.asarray(rows["row"], "i8"),
                "id": np.array([str(v) for v in rows["id"]], dtype=object),
                "samples": code, "qlo": lo, "qstep": step,
                "percentiles": np.asarray(rows["percentiles"], "f4")}
        data.update({k: np.asarray(rows[k], dt) for k, dt in SCALARS.items()})
        append_chunk(f, data, lambda row0: (chunk, n, row0, _checksum(data)))

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


def _checksum(data: dict) -> int:
    ids = "\x00".join(str(v.decode() if isinstance(v, bytes) else v) for v in data["id"])
    return _crc(*(data[k] for k in ("row", "samples", "qlo", "qstep", "percentiles")),
                *(np.asarray(data[k], dt) for k, dt in SCALARS.items()),
                np.frombuffer(ids.encode(), np.uint8))


@dataclass
class Scan:
    """Valid chunks of a fit directory (first copy of each: chunk → (shard, first row, rows)),
    counts of duplicate copies and problems found."""
    chunks: dict[int, tuple[Path, int, int]] = field(default_factory=dict)
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    attempts: int = 0
    shards: list[Path] = field(default_factory=list)


def scan(directory, verify: bool = True) -> Scan:
    """Read every shard's chunk records (checksums verified with ``verify``)."""
    out = Scan()
    for path in sorted(Path(directory, "shards").glob("a*-r*.h5")):
        try:
            out.attempts = max(out.attempts, int(path.name[1:].split("-")[0]))
        except ValueError:
            continue
        out.shards.append(path)
        try:
            f = _open_shard(path)
        except OSError as err:
            out.problems.append(f"{path.name}: unreadable ({err}); its chunks will be redone")
            continue
        with f:
            for chunk, n, row0, crc in f["chunks"][()]:
                chunk, n, row0 = int(chunk), int(n), int(row0)
                if verify:
                    try:
                        data = read_rows(f, slice(row0, row0 + n), decode=False)
                    except (OSError, ValueError, KeyError) as err:
                        out.problems.append(f"{path.name}: chunk {chunk} unreadable ({err})")
                        continue
                    if len(data["row"]) != n or _checksum(data) != int(crc):
                        out.problems.append(f"{path.name}: chunk {chunk} fails its checksum")
                        continue
                if chunk in out.chunks:
                    out.duplicates += 1
                    continue
                out.chunks[chunk] = (path, row0, n)
    return out


def read_rows(f, sl: slice, decode: bool = True) -> dict:
    """Datasets of shard ``f`` over rows ``sl``; with ``decode`` the samples are dequantised
    (float (n, N, P)) and ids are str."""
    data = {k: f[k][sl] for k in ("row", "id", "samples", "qlo", "qstep", "percentiles",
                                  *SCALARS)}
    if decode:
        data["samples"] = dequantise(data.pop("samples"), data["qlo"], data["qstep"])
        data["id"] = np.array([v.decode() if isinstance(v, bytes) else str(v)
                               for v in data["id"]])
    return data


def read(directory, sc: Scan | None = None, samples: bool = False) -> dict:
    """All stored galaxies of a fit directory, sorted by catalog row: dict of arrays (as
    :func:`read_rows`; ``samples`` decoded only when asked, else dropped) plus ``quantities``."""
    sc = sc or scan(directory)
    parts, names = [], None
    by_shard: dict[Path, list] = {}
    for path, row0, n in sc.chunks.values():
        by_shard.setdefault(path, []).append((row0, n))
    for path, spans in by_shard.items():
        with _open_shard(path) as f:
            names = json.loads(f.attrs["quantities"])
            for row0, n in spans:
                d = read_rows(f, slice(row0, row0 + n), decode=samples)
                if not samples:
                    d.pop("samples")
                    d["id"] = np.array([v.decode() if isinstance(v, bytes) else str(v)
                                        for v in d["id"]])
                parts.append(d)
    if not parts:
        return {"row": np.zeros(0, int), "quantities": names or []}
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["row"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    out["quantities"] = names
    return out


def summary_table(data: dict, meta: dict | None = None):
    """astropy Table, one row per galaxy: id, row, flags, ``<q>_p2.5 … <q>_p97.5`` for every
    quantity, logz, logzerr, ess, ncall, chi2, nbands, runtime; ``meta`` goes to the header."""
    from astropy.table import Table

    t = Table()
    t["id"], t["row"] = data["id"], data["row"]
    for k in SCALARS:
        t[k] = data[k]
    for j, q in enumerate(data["quantities"]):
        for m, p in enumerate(PERCENTILES):
            t[f"{q}_p{p:g}"] = data["percentiles"][:, j, m]
    if meta:
        t.meta.update(meta)
    return t
