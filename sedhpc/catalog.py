"""Catalog input: a photometric catalog file → fluxes and errors in maggies, usable-band masks,
redshifts and per-galaxy :class:`Flags` for the fitting engine.

Files are read with ``astropy.table.Table.read``; the format follows the extension (``.fits``,
``.fit``, ``.fts`` [+ ``.gz``], ``.h5``/``.hdf5``, ``.parquet``, ``.csv``, ``.ecsv``; any other
*text* file is read as ``"ascii"``) unless :attr:`CatalogSpec.format` names an astropy format.
HDF5: the first compound (table) dataset, else the first group of equal-length 1-D datasets
(one dataset per column, as plain h5py writers store them).

Problems with the file or the spec raise one :class:`CatalogError` (a missing file
``FileNotFoundError``) before any galaxy is processed. Problems with single galaxies never raise:
they set :class:`Flags` bits, and galaxies with a :data:`SKIP` bit are not fitted.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from .config import ConfigError
from .photometry import _UNIT_ALIASES, FLUX_UNITS, to_maggies


class CatalogError(ConfigError):
    """The catalog file or its :class:`CatalogSpec` is unusable (wrong column, unit, format…)."""


class Flags(enum.IntFlag):
    """Per-galaxy bit flags (stored in output files: the values are fixed)."""

    BAD_ERROR = 1  # ≥ 1 band with a flux but a non-finite or ≤ 0 error (band masked)
    MISSING_BANDS = 2  # ≥ 1 band missing (NaN/inf/masked flux, sentinel): information only
    NO_BANDS = 4  # no usable band: not fitted
    NO_REDSHIFT = 8  # redshift column given, value missing/non-finite/sentinel: not fitted
    Z_OUT_OF_RANGE = 16  # redshift < 0 or outside the emulator's range: not fitted
    DUPLICATE_ID = 32  # second and later rows of a repeated ID: not fitted
    BAD_ID = 64  # empty or masked ID: not fitted
    NOT_CONVERGED = 256  # set by the engine: sampler did not converge
    FIT_FAILED = 512  # set by the engine: the fit raised
    OUT_OF_RANGE = 1024  # set by the engine: posterior piles up at an emulator bound
    LOW_ESS = 2048  # set by `sedhpc reweight`: re-weighting ESS below its threshold
    BAD_CHI2 = 4096  # set by the engine: best-fit χ² improbably large for the bands used
    COLOUR_OOD = 8192  # set by the engine: colours far from the emulator's training set


SKIP = Flags.NO_BANDS | Flags.NO_REDSHIFT | Flags.Z_OUT_OF_RANGE | Flags.DUPLICATE_ID | Flags.BAD_ID

_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".h5": "hdf5", ".hdf5": "hdf5",
            ".parquet": "parquet", ".csv": "csv", ".ecsv": "ascii.ecsv"}
_COMPRESSION = (".gz", ".bz2", ".xz")
_INSTALL = {"parquet": "pyarrow", "hdf5": "h5py"}
_UNIT_HELP = (f"use one of {', '.join(FLUX_UNITS)} (also 'µJy'/'microJy'), or 'zp:<ZP>' for "
              "fluxes at AB zero point ZP (e.g. 'zp:23.9' for µJy)")
MAG_SENTINEL = 50.0  # ABmag: magnitudes above this (or ±99) are non-detections
_MAG_SENTINELS = [-99.0, 99.0]


def _close(name: str, names) -> str:
    """' (did you mean …?)' for names close to ``name`` (case-insensitive), or ''."""
    lower = {str(n).lower(): str(n) for n in names}
    hits = [lower[m] for m in difflib.get_close_matches(name.lower(), lower, n=3)
            if lower[m] != name]
    return f" (did you mean {', '.join(map(repr, hits))}?)" if hits else ""


def parse_unit(text: str, where: str = "units") -> tuple[str, float | None]:
    """Unit string of a :class:`CatalogSpec` → ``(unit, zeropoint)``: ``("zp", ZP)`` for
    ``"zp:<ZP>"``, else ``(canonical unit of FLUX_UNITS, None)``."""
    if not isinstance(text, str):
        raise CatalogError(f"{where} = {text!r} must be a string: {_UNIT_HELP}")
    if text.startswith("zp:"):
        try:
            zp = float(text[3:])
        except ValueError:
            zp = np.nan
        if not np.isfinite(zp):
            raise CatalogError(f"{where} = {text!r}: the zero point after 'zp:' must be a finite "
                               "number, e.g. 'zp:23.9'")
        return "zp", zp
    unit = _UNIT_ALIASES.get(text, text)
    if unit not in FLUX_UNITS:
        raise CatalogError(f"{where} = {text!r} is not a known flux unit{_close(text, FLUX_UNITS)}:"
                           f" {_UNIT_HELP}")
    return unit, None


@dataclass
class CatalogSpec:
    """Which columns of a catalog hold what.

    ``bands``: emulator band name → ``[flux_column, error_column]``. ``units``: unit of all fluxes
    and errors (see :func:`parse_unit`; for ``"ABmag"`` the flux column is an AB magnitude and the
    error a magnitude error); ``band_units``: per-band override. ``id_column``: None → IDs are row
    numbers. ``sentinels``: flux or error values meaning "missing". ``format``: astropy format
    name overriding the one implied by the file extension. Validated on construction.
    """

    bands: dict[str, list[str]]
    units: str = "maggies"
    band_units: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None
    redshift_column: str | None = None
    tract_column: str | None = None
    sentinels: list[float] = field(default_factory=lambda: [-99.0, 99.0, -999.0, 999.0])
    format: str | None = None

    def __post_init__(self):
        if not isinstance(self.bands, dict) or not self.bands:
            raise CatalogError(f"catalog bands = {self.bands!r}: give at least one band as "
                               "{band = [flux_column, error_column]}")
        for band, cols in self.bands.items():
            if (not isinstance(cols, (list, tuple)) or len(cols) != 2
                    or not all(isinstance(c, str) and c for c in cols)):
                raise CatalogError(f"catalog band {band!r} = {cols!r}: expected "
                                   "[flux_column, error_column] (two column names)")
        self.bands = {b: list(c) for b, c in self.bands.items()}
        fluxes = [c[0] for c in self.bands.values()]
        for band, (fcol, ecol) in self.bands.items():
            if fluxes.count(fcol) > 1:
                users = [b for b, c in self.bands.items() if c[0] == fcol]
                raise CatalogError(f"flux column {fcol!r} is used by bands {users}: each band "
                                   "needs its own flux column")
            if ecol in fluxes:
                raise CatalogError(f"band {band!r}: error column {ecol!r} is also a flux column; "
                                   "check the [flux_column, error_column] order")
        parse_unit(self.units)
        if not isinstance(self.band_units, dict):
            raise CatalogError(f"band_units = {self.band_units!r} must be a table band → unit")
        for band, unit in self.band_units.items():
            if band not in self.bands:
                raise CatalogError(f"band_units names band {band!r}, which is not in bands"
                                   f"{_close(band, self.bands)}; bands: {list(self.bands)}")
            parse_unit(unit, f"band_units.{band}")
        for key in ("id_column", "redshift_column", "tract_column", "format"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value):
                raise CatalogError(f"{key} = {value!r} must be a non-empty string (or omitted)")
        try:
            self.sentinels = [float(s) for s in self.sentinels]
        except (TypeError, ValueError):
            raise CatalogError(f"sentinels = {self.sentinels!r} must be a list of "
                               "numbers") from None

    @classmethod
    def from_dict(cls, d) -> CatalogSpec:
        """Spec from a TOML table. ``bands`` may also be a list of ``[band, flux, error]``
        triples (file order); unknown keys and repeated bands raise :class:`CatalogError`."""
        if not isinstance(d, dict):
            raise CatalogError(f"catalog spec must be a table, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise CatalogError(f"unknown catalog setting {unknown[0]!r}{_close(unknown[0], known)};"
                               f" known: {known}")
        if "bands" not in d:
            raise CatalogError("catalog spec needs 'bands' = {band = [flux_column, error_column]}")
        kw = dict(d)
        if isinstance(d["bands"], list):
            kw["bands"] = {}
            for item in d["bands"]:
                if not isinstance(item, (list, tuple)) or len(item) != 3:
                    raise CatalogError(f"catalog bands entry {item!r}: expected "
                                       "[band, flux_column, error_column]")
                if item[0] in kw["bands"]:
                    raise CatalogError(f"band {item[0]!r} is mapped twice in catalog bands: "
                                       "give each band once")
                kw["bands"][item[0]] = list(item[1:])
        return cls(**kw)

    def unit_of(self, band: str) -> tuple[str, float | None]:
        """``(unit, zeropoint)`` of ``band`` (see :func:`parse_unit`)."""
        return parse_unit(self.band_units.get(band, self.units))


@dataclass
class Catalog:
    """Galaxies ready for fitting. G galaxies, nb bands (in :attr:`bands` order).

    ``ids`` (G,) str; ``rows`` (G,) int64 row index in the file; ``flux``/``err`` (G, nb) float64
    maggies: ``flux`` NaN where the band is missing, ``err`` NaN where it is not usable; ``mask``
    (G, nb) bool, True where usable; ``zred`` (G,) float64 (NaN where missing) or None without a
    redshift column; ``flags`` (G,) uint32 :class:`Flags` bits.
    """

    ids: np.ndarray
    rows: np.ndarray
    bands: list[str]
    flux: np.ndarray
    err: np.ndarray
    mask: np.ndarray
    zred: np.ndarray | None
    flags: np.ndarray
    path: str
    tract: np.ndarray | None = None  # (G,) str labels when the spec names a tract column

    def fit_rows(self) -> np.ndarray:
        """Indices (into this catalog, not file rows) of galaxies without a :data:`SKIP` bit."""
        return np.flatnonzero((self.flags & np.uint32(SKIP)) == 0)

    def flag_counts(self) -> dict[str, int]:
        """Flag name → number of galaxies with that bit set (every flag, zeros included)."""
        return {f.name: int(np.count_nonzero(self.flags & np.uint32(f))) for f in Flags}

    def describe(self) -> str:
        """One paragraph: galaxies, bands, how many are fitted, and counts per flag."""
        n, nfit = self.ids.size, self.fit_rows().size
        text = (f"{self.path}: {n} galaxies in {len(self.bands)} bands ({', '.join(self.bands)});"
                f" {nfit} to fit, {n - nfit} skipped.")
        counts = [f"{k} {v}" for k, v in self.flag_counts().items() if v]
        text += f" Flags: {', '.join(counts)}." if counts else " No flags set."
        if nfit == 0:
            text += " No galaxy can be fitted: check the columns, units and redshift range."
        return text


# ------------------------------------------------------------------------------------ reading
def _format_of(path: str, override: str | None) -> str:
    """Astropy format for ``path``: ``override``, the extension's, or "ascii" for other text."""
    if override is not None:
        from astropy.io import registry
        known = sorted(set(map(str, registry.get_formats(Table, "Read")["Format"])))
        if override not in known:
            raise CatalogError(f"format = {override!r} is not an astropy table format"
                               f"{_close(override, known)}; known: {', '.join(known)}")
        return override
    stem = path.lower()
    for suffix in _COMPRESSION:
        stem = stem.removesuffix(suffix)
    ext = os.path.splitext(stem)[1]
    if ext in _FORMATS:
        return _FORMATS[ext]
    from astropy.utils.data import get_readable_fileobj
    with get_readable_fileobj(path, encoding="binary") as fh:
        head = fh.read(65536)
    if b"\0" in head:
        raise CatalogError(f"catalog {path!r}: unknown extension {ext or '(none)'!r} and not a "
                           f"text file; use one of {', '.join(_FORMATS)} or set format = "
                           "'<astropy format>' in the catalog spec")
    return "ascii"


def _hdf5_columns(path: str) -> Table:
    """First group (root first, then by name) of an HDF5 file whose datasets include ≥ 1 1-D
    dataset, all such of one length → Table with one column per dataset."""
    import h5py
    with h5py.File(path, "r") as f:
        groups = [f]
        f.visititems(lambda _, obj: groups.append(obj) if isinstance(obj, h5py.Group) else None)
        for g in groups:
            cols = {k: v for k, v in g.items() if isinstance(v, h5py.Dataset) and v.ndim == 1}
            if cols and len({v.shape[0] for v in cols.values()}) == 1:
                return Table({k: v[()] for k, v in cols.items()})
    raise ValueError("no table dataset and no group of equal-length 1-D datasets in the file")


def _read_table(path: str, fmt: str) -> Table:
    try:
        if fmt != "hdf5":
            return Table.read(path, format=fmt)
        try:
            return Table.read(path, format="hdf5", character_as_bytes=False)
        except ValueError as exc:
            if "no table found" not in str(exc):
                raise
            return _hdf5_columns(path)
    except ImportError as exc:
        raise CatalogError(f"cannot read catalog {path!r} as {fmt}: {exc}; install it "
                           f"(pip install {_INSTALL.get(fmt, 'the missing package')})") from exc
    except Exception as exc:
        raise CatalogError(f"cannot read catalog {path!r} as {fmt}: {exc}; is the file complete "
                           "and in that format?") from exc


def read_table(path, format: str | None = None) -> Table:
    """The catalog file ``path`` as an astropy Table, read the way ``sedhpc fit`` reads it
    (format from the extension unless given; an HDF5 group of 1-D datasets is a table)."""
    return _read_table(str(path), _format_of(str(path), format))


def _check_columns(table: Table, spec: CatalogSpec, path: str) -> None:
    """Every mapped column exists; flux, error and redshift columns are numeric and 1-D."""
    numeric = [c for cols in spec.bands.values() for c in cols]
    numeric += [spec.redshift_column] if spec.redshift_column else []
    wanted = numeric + [c for c in (spec.id_column, spec.tract_column) if c]
    missing = [c for c in dict.fromkeys(wanted) if c not in table.colnames]
    if missing:
        named = ", ".join(f"{c!r}{_close(c, table.colnames)}" for c in missing)
        shown = ", ".join(table.colnames[:40]) + (" …" if len(table.colnames) > 40 else "")
        raise CatalogError(f"catalog {path!r} lacks column(s) {named}: fix the names in the "
                           f"catalog spec. Its columns: {shown}")
    for name in numeric:
        col = table[name]
        if col.ndim != 1:
            raise CatalogError(f"column {name!r} of {path!r} has shape {col.shape[1:]} per row; "
                               "flux, error and redshift columns must hold one number per row")
        if col.dtype.kind not in "iuf":
            raise CatalogError(f"column {name!r} of {path!r} is not numeric (dtype {col.dtype}, "
                               f"first value {str(col[0])!r}); map a column of numbers")


def _floats(col) -> np.ndarray:
    """Column → new float64 array, NaN where masked."""
    out = np.array(np.ma.getdata(col), dtype=np.float64)
    out[np.ma.getmaskarray(col)] = np.nan
    return out


def _check_unit(band: str, fcol: str, unit: str, f: np.ndarray, e: np.ndarray,
                sentinels: list[float]) -> None:
    """The unit checks of :func:`read_catalog` on the fluxes ``f`` and errors ``e`` (n,) of one
    band, using the finite values that are not sentinels (in ABmag not ±99 either)."""
    ok = np.isfinite(f) & ~np.isin(f, sentinels + (_MAG_SENTINELS if unit == "ABmag" else []))
    f, e = f[ok], e[ok]
    if f.size == 0:
        return
    where = f"band {band!r} (column {fcol!r})"
    if unit == "ABmag":
        med, neg = float(np.median(f)), float(np.mean(f < 0))
        if not 5 <= med <= 40 or neg > 0.1:
            raise CatalogError(f"{where} is declared in ABmag but does not look like magnitudes "
                               f"(median {med:.4g}, {neg:.0%} negative); give its flux unit "
                               "instead, e.g. units = 'nJy'")
        return
    maglike = float(np.mean((f >= 10) & (f <= 35) & (e < 1)))
    if f.size >= 5 and f.min() >= 0 and maglike >= 0.9:
        raise CatalogError(f"{where} is declared in {unit} but looks like AB magnitudes "
                           f"({maglike:.0%} of {f.size} values in [10, 35] with errors < 1, none "
                           "negative); set units = 'ABmag' (or band_units for this band)")
    med = float(np.median(np.abs(f)))
    if unit == "maggies" and med > 1e-3:
        raise CatalogError(f"{where} is declared in maggies but its median |flux| is {med:.3g} "
                           "(galaxies are ~1e-12…1e-6 maggies); the column is probably in nJy or "
                           "uJy: set units = 'nJy' or 'uJy'")


def _photometry(table: Table, spec: CatalogSpec):
    """All rows → (flux, err, mask, flags) per the row-level rules of :func:`read_catalog`."""
    n, nb = len(table), len(spec.bands)
    flux, err = np.full((n, nb), np.nan), np.full((n, nb), np.nan)
    mask = np.zeros((n, nb), bool)
    flags = np.zeros(n, np.uint32)
    for j, (band, (fcol, ecol)) in enumerate(spec.bands.items()):
        unit, zp = spec.unit_of(band)
        f, e = _floats(table[fcol]), _floats(table[ecol])
        _check_unit(band, fcol, unit, f, e, spec.sentinels)
        missing = ~np.isfinite(f) | np.isin(f, spec.sentinels) | np.isin(e, spec.sentinels)
        if unit == "ABmag":
            missing |= (f > MAG_SENTINEL) | np.isin(f, _MAG_SENTINELS)
        usable = ~missing & np.isfinite(e) & (e > 0)
        with np.errstate(over="ignore", invalid="ignore"):
            x, sx = to_maggies(f, e, unit, zp)  # zp given: the unit ("zp") is ignored
        flux[~missing, j] = x[~missing]
        err[usable, j] = sx[usable]
        mask[:, j] = usable
        flags[missing] |= int(Flags.MISSING_BANDS)
        flags[~missing & ~usable] |= int(Flags.BAD_ERROR)
    flags[~mask.any(axis=1)] |= int(Flags.NO_BANDS)
    return flux, err, mask, flags


def _ids(col) -> tuple[np.ndarray, np.ndarray]:
    """ID column → ((n,) str IDs, (n,) bool bad: masked, empty or non-finite)."""
    data, bad = np.ma.getdata(col), np.ma.getmaskarray(col).copy()
    if data.dtype.kind == "f":
        bad |= ~np.isfinite(data)
        whole = np.isfinite(data) & (data == np.round(data)) & (np.abs(data) < 2.0**53)
        ids = np.where(whole, np.where(whole, data, 0).astype(np.int64).astype(str),
                       data.astype(str))
    elif data.dtype.kind in "SO":
        ids = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in data], dtype=str)
    else:
        ids = data.astype(str)
    ids = np.char.strip(ids)
    return ids, bad | (ids == "")


def read_catalog(path, spec: CatalogSpec, known_bands=None, zrange=None,
                 rows: slice | None = None) -> Catalog:
    """Read the catalog file ``path`` as described by ``spec``.

    ``known_bands``: the emulator's band names (every spec band must be one); ``zrange``:
    ``(lo, hi)`` valid redshifts, inclusive, checked only with a redshift column; ``rows``: slice
    of the file's rows to keep (``--shard``), applied after all checks so that shards agree on
    duplicates and units; kept galaxies keep their file row number.

    Row-level rules (flags, never errors): NaN/inf/masked flux or a sentinel flux or error →
    band missing (MISSING_BANDS); a present flux with a non-finite, masked or ≤ 0 error → band
    masked (BAD_ERROR); negative fluxes are valid; in ABmag, magnitudes ±99 or > 50 are
    non-detections (missing); no usable band → NO_BANDS; missing/non-finite/sentinel redshift →
    NO_REDSHIFT; z < 0 or outside ``zrange`` → Z_OUT_OF_RANGE; an ID seen before → DUPLICATE_ID
    (the first is fitted); empty or masked ID → BAD_ID.

    File-level problems raise :class:`CatalogError`, among them these unit checks per band, on
    its finite non-sentinel values: a flux unit is declared but the values look like AB
    magnitudes (≥ 5 values, none negative, ≥ 90 % in [10, 35] with errors < 1); ``"ABmag"`` is
    declared but the median is outside [5, 40] or > 10 % are negative; ``"maggies"`` is declared
    but the median |flux| > 1e-3 (galaxies are ~1e-12…1e-6 maggies: that is nJy or µJy).
    """
    path = os.fspath(path)
    known = None if known_bands is None else list(known_bands)
    unknown = [b for b in spec.bands if known is not None and b not in known]
    if unknown:
        named = ", ".join(f"{b!r}{_close(b, known)}" for b in unknown)
        raise CatalogError(f"band(s) {named} of the catalog spec are not provided by the "
                           f"emulator; its bands: {', '.join(known)}")
    if zrange is not None:
        lo, hi = (float(v) for v in zrange)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise CatalogError(f"zrange = {zrange!r} must be (lo, hi) with finite lo < hi")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"catalog file {path!r} not found")
    fmt = _format_of(path, spec.format)
    table = _read_table(path, fmt)
    if len(table) == 0:
        raise CatalogError(f"catalog {path!r} has no rows (columns: {', '.join(table.colnames)})")
    _check_columns(table, spec, path)

    flux, err, mask, flags = _photometry(table, spec)
    n = len(table)
    if spec.id_column:
        ids, bad = _ids(table[spec.id_column])
        flags[bad] |= int(Flags.BAD_ID)
        good = np.flatnonzero(~bad)
        first = good[np.unique(ids[good], return_index=True)[1]]
        dup = np.zeros(n, bool)
        dup[good] = True
        dup[first] = False
        flags[dup] |= int(Flags.DUPLICATE_ID)
    else:
        ids = np.arange(n).astype(str)
    zred = None
    if spec.redshift_column:
        zred = _floats(table[spec.redshift_column])
        nz = ~np.isfinite(zred) | np.isin(zred, spec.sentinels)
        zred[nz] = np.nan
        flags[nz] |= int(Flags.NO_REDSHIFT)
        out = (zred < 0) | ((zred < lo) | (zred > hi) if zrange is not None else False)
        flags[out] |= int(Flags.Z_OUT_OF_RANGE)

    tract = None
    if spec.tract_column:
        tract = np.array([str(v) for v in np.asarray(table[spec.tract_column])])
    sel = np.arange(n) if rows is None else np.arange(n)[rows]
    return Catalog(tract=None if tract is None else tract[sel],
                   ids=ids[sel], rows=sel, bands=list(spec.bands), flux=flux[sel], err=err[sel],
                   mask=mask[sel], zred=None if zred is None else zred[sel], flags=flags[sel],
                   path=path)
