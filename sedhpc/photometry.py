"""Photometry space: flux units, arsinh magnitudes, filter curves and the filter projection matrix.

Fluxes are carried internally in *maggies* (f_ν / 3631 Jy). Emulators predict arsinh magnitudes
(Lupton et al. 1999), ``u = U0 − A·asinh(x / 2B)`` with ``U0 = 35``, ``A = 2.5·log10(e)`` and
``B = 10^(−0.4·U0) = 1e−14`` maggies; for ``x ≫ B`` this equals the AB magnitude.

Filters are loaded from sedpy names, sedpy-format ``.par`` / two-column text files, or EAZY
``FILTER.RES`` files (``"eazy:PATH:N"``). :class:`FilterSet` resamples all filters once onto one
log-spaced wavelength grid, so photometry of a spectrum is one interpolation and one matrix product.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

import numpy as np

U0 = 35.0
A = 2.5 * np.log10(np.e)
B = 10 ** (-0.4 * U0)
C_AA = 2.99792458e18  # speed of light [Å s⁻¹]
F_AB = 3631e-23  # AB zero point [erg s⁻¹ cm⁻² Hz⁻¹]

FLUX_UNITS = ("maggies", "nJy", "uJy", "mJy", "Jy", "ABmag")
_UNIT_ALIASES = {"maggy": "maggies", "µJy": "uJy", "μJy": "uJy", "microJy": "uJy", "AB": "ABmag"}
_MAGGIES_PER_UNIT = {"maggies": 1.0, "nJy": 1e-9 / 3631, "uJy": 1e-6 / 3631, "mJy": 1e-3 / 3631,
                     "Jy": 1.0 / 3631}
_FILTER_HELP = ("Specify bands as sedpy filter names (see sedpy.observate.list_available_filters(), "
                "e.g. 'sdss_r0'), paths to sedpy .par or two-column text files (wavelength [Å], "
                "throughput; '#' comments), or 'eazy:PATH:N' for filter N (1-based) of an EAZY "
                "FILTER.RES file.")


# --------------------------------------------------------------------------------- magnitudes
def arsinh_mag(maggies) -> np.ndarray:
    """Arsinh magnitude ``u = U0 − A·asinh(x / 2B)`` of ``maggies`` (any shape, any sign)."""
    return U0 - A * np.arcsinh(np.asarray(maggies, dtype=float) / (2.0 * B))


def arsinh_to_maggies(u) -> np.ndarray:
    """Inverse of :func:`arsinh_mag`: arsinh magnitudes (any shape) → maggies ``2B·sinh((U0−u)/A)``."""
    return 2.0 * B * np.sinh((U0 - np.asarray(u, dtype=float)) / A)


def ab_mag(maggies) -> np.ndarray:
    """AB magnitude ``−2.5·log10(x)`` of ``maggies`` (any shape); NaN where ``x ≤ 0``."""
    x = np.asarray(maggies, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, -2.5 * np.log10(np.where(x > 0, x, 1.0)), np.nan)


def ab_to_maggies(mag) -> np.ndarray:
    """AB magnitudes (any shape) → maggies ``10^(−0.4·m)``."""
    return 10.0 ** (-0.4 * np.asarray(mag, dtype=float))


# ---------------------------------------------------------------------------------- flux units
def _canonical_unit(unit: str) -> str:
    unit = _UNIT_ALIASES.get(unit, unit)
    if unit not in FLUX_UNITS:
        raise ValueError(f"unknown flux unit {unit!r}: use one of {FLUX_UNITS} (or 'µJy'/'microJy'),"
                         " or give an AB zeropoint (e.g. zeropoint=23.9 for µJy)")
    return unit


def to_maggies(flux, err=None, unit: str = "maggies", zeropoint: float | None = None):
    """Catalog fluxes → maggies.

    ``flux``, ``err``: arrays of one shape in ``unit`` (one of :data:`FLUX_UNITS`; for ``"ABmag"``
    ``flux`` is an AB magnitude and ``err`` a magnitude error, ``σx = 0.4·ln10·x·σm``). With
    ``zeropoint=ZP`` (AB zero point of arbitrary flux units, 23.9 for µJy, 31.4 for nJy) the flux is
    ``x = f·10^(−0.4·ZP)`` and ``unit`` is ignored. Returns ``(maggies, err_maggies or None)``.
    """
    flux = np.asarray(flux, dtype=float)
    err = None if err is None else np.asarray(err, dtype=float)
    if zeropoint is not None:
        zp = float(zeropoint)
        if not np.isfinite(zp):
            raise ValueError(f"zeropoint must be a finite AB zero point, got {zeropoint!r}")
        f = 10.0 ** (-0.4 * zp)
        return flux * f, None if err is None else err * f
    unit = _canonical_unit(unit)
    if unit == "ABmag":
        x = ab_to_maggies(flux)
        return x, None if err is None else 0.4 * np.log(10.0) * x * err
    f = _MAGGIES_PER_UNIT[unit]
    return flux * f, None if err is None else err * f


def from_maggies(x, err=None, unit: str = "maggies", zeropoint: float | None = None):
    """Inverse of :func:`to_maggies`: maggies (and errors) → ``unit`` (or zero-point units).
    For ``"ABmag"`` returns (AB magnitude, magnitude error); NaN where ``x ≤ 0``."""
    x = np.asarray(x, dtype=float)
    err = None if err is None else np.asarray(err, dtype=float)
    if zeropoint is not None:
        f = 10.0 ** (0.4 * float(zeropoint))
        return x * f, None if err is None else err * f
    unit = _canonical_unit(unit)
    if unit == "ABmag":
        if err is None:
            return ab_mag(x), None
        with np.errstate(divide="ignore", invalid="ignore"):
            sig = np.where(x > 0, err / (0.4 * np.log(10.0) * np.where(x > 0, x, 1.0)), np.nan)
        return ab_mag(x), sig
    f = 1.0 / _MAGGIES_PER_UNIT[unit]
    return x * f, None if err is None else err * f


# ------------------------------------------------------------------------------------- filters
@dataclass(frozen=True, eq=False)
class Filter:
    """One bandpass: ``wave`` (m,) [Å] strictly increasing, ``trans`` (m,) ≥ 0 (detector signal
    per photon, arbitrary normalisation). Validated on construction."""

    name: str
    wave: np.ndarray
    trans: np.ndarray

    def __post_init__(self):
        w = np.asarray(self.wave, dtype=float)
        t = np.asarray(self.trans, dtype=float)
        n = self.name
        if w.ndim != 1 or w.shape != t.shape or w.size < 2:
            raise ValueError(f"filter {n!r}: wave and trans must be 1-D of one length ≥ 2, got "
                             f"shapes {w.shape} and {t.shape}")
        for label, a in (("wavelength", w), ("transmission", t)):
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise ValueError(f"filter {n!r}: non-finite {label} {a[bad[0]]} at row {bad[0]}")
        if w[0] <= 0:
            raise ValueError(f"filter {n!r}: wavelengths must be > 0 Å, got {w[0]}")
        bad = np.flatnonzero(np.diff(w) <= 0)
        if bad.size:
            i = bad[0]
            raise ValueError(f"filter {n!r}: wavelengths not strictly increasing at row {i + 1} "
                             f"({w[i]} then {w[i + 1]} Å)")
        if t.min() < 0:
            i = int(np.argmin(t))
            raise ValueError(f"filter {n!r}: negative transmission {t[i]} at {w[i]} Å "
                             "(set negative throughputs to 0 in the filter file)")
        if not t.max() > 0:
            raise ValueError(f"filter {n!r}: transmission is zero everywhere")
        object.__setattr__(self, "wave", w)
        object.__setattr__(self, "trans", t)

    @property
    def pivot(self) -> float:
        """Pivot wavelength [Å]: ``sqrt(∫T·λ dλ / ∫T/λ dλ)`` (trapezoid on the filter's points)."""
        return float(np.sqrt(np.trapezoid(self.trans * self.wave, self.wave)
                             / np.trapezoid(self.trans / self.wave, self.wave)))

    @property
    def support(self) -> tuple[float, float]:
        """(lo, hi) [Å]: the interval outside which the (linearly interpolated) transmission is 0."""
        nz = np.flatnonzero(self.trans > 0)
        return float(self.wave[max(nz[0] - 1, 0)]), float(self.wave[min(nz[-1] + 1, self.wave.size - 1)])

    def __repr__(self):
        return f"Filter({self.name!r}, {self.wave.size} points, pivot {self.pivot:.1f} Å)"


def _read_columns(path: str) -> Filter:
    """Two-column text (or sedpy ``.par``) file → Filter named for the file stem."""
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        data = np.genfromtxt(path, comments="#", usecols=(0, 1), dtype=float, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"filter file {path!r}: cannot read two numeric columns "
                         f"(wavelength [Å], throughput): {exc}") from None
    if data.size == 0:
        raise ValueError(f"filter file {path!r} holds no data rows")
    return Filter(name, data[:, 0], data[:, 1])


_EAZY_CACHE: dict = {}


def _read_eazy(res_path: str) -> list[tuple[str, np.ndarray]]:
    """Parse an EAZY FILTER.RES file → list of (name, (npts, 2) array [Å, throughput]). Cached
    on (path, mtime, size)."""
    if not os.path.isfile(res_path):
        raise ValueError(f"EAZY filter file {res_path!r} not found. {_FILTER_HELP}")
    st = os.stat(res_path)
    key = (os.path.abspath(res_path), st.st_mtime_ns, st.st_size)
    if key in _EAZY_CACHE:
        return _EAZY_CACHE[key]
    with open(res_path) as fh:
        lines = [ln for ln in fh if ln.strip()]
    out, i = [], 0
    while i < len(lines):
        head = lines[i].split()
        try:
            npts = int(head[0])
        except ValueError:
            raise ValueError(f"{res_path}: line {i + 1} should be a filter header 'NPTS name ...',"
                             f" got {lines[i].strip()[:60]!r}") from None
        rows = lines[i + 1:i + 1 + npts]
        if len(rows) < npts:
            raise ValueError(f"{res_path}: filter {len(out) + 1} ({head[1:2]}) declares {npts} "
                             f"rows but the file ends after {len(rows)}")
        try:
            arr = np.array([r.split()[1:3] for r in rows], dtype=float)
        except ValueError:
            raise ValueError(f"{res_path}: filter {len(out) + 1} has a malformed row "
                             "(expected 'i wave trans')") from None
        token = head[1] if len(head) > 1 else f"filter{len(out) + 1}"
        out.append((os.path.splitext(os.path.basename(token))[0], arr.reshape(npts, 2)))
        i += 1 + npts
    _EAZY_CACHE[key] = out
    return out


def load_eazy_filters(res_path: str, indices) -> list[Filter]:
    """Filters number ``indices`` (1-based ints, in the order of the ``.info`` index file) of an
    EAZY ``FILTER.RES`` file. Names are the stem of each header's file name (e.g. ``wfc_f435w_t77``)."""
    table = _read_eazy(res_path)
    out = []
    for n in np.atleast_1d(indices):
        if int(n) != n or not 1 <= n <= len(table):
            raise ValueError(f"EAZY filter number {n} out of range: {res_path!r} holds filters "
                             f"1..{len(table)}")
        name, arr = table[int(n) - 1]
        out.append(Filter(name, arr[:, 0], arr[:, 1]))
    return out


def _sedpy_names() -> list[str]:
    from sedpy.observate import list_available_filters
    return list(list_available_filters())


def load_filter(spec: str) -> Filter:
    """One filter from ``spec``: a sedpy name (``"sdss_r0"``), a path to a sedpy ``.par`` or a
    two-column text file (Å, throughput), or ``"eazy:PATH:N"``. Raises ValueError naming ``spec``."""
    spec = str(spec).strip()
    if spec.startswith("eazy:"):
        path, _, num = spec[5:].rpartition(":")
        try:
            n = int(num)
        except ValueError:
            raise ValueError(f"bad EAZY band {spec!r}: expected 'eazy:PATH:N' with integer N") from None
        return load_eazy_filters(path, [n])[0]
    if os.path.isfile(spec):
        return _read_columns(spec)
    names = _sedpy_names()
    if spec in names:
        from sedpy.observate import Filter as SedpyFilter
        f = SedpyFilter(spec)
        return Filter(spec, np.array(f.wavelength), np.array(f.transmission))
    if os.sep in spec or spec.endswith((".par", ".dat", ".txt", ".res", ".RES")):
        raise ValueError(f"filter file {spec!r} not found. {_FILTER_HELP}")
    close = difflib.get_close_matches(spec, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown band {spec!r}: not a sedpy filter name or an existing file.{hint} "
                     f"{_FILTER_HELP}")


def load_filters(specs: str | list[str]) -> list[Filter]:
    """Filters from a comma-separated string or a list of specs (see :func:`load_filter`)."""
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    specs = list(specs)
    if not specs:
        raise ValueError(f"no bands given. {_FILTER_HELP}")
    return [s if isinstance(s, Filter) else load_filter(s) for s in specs]


# ------------------------------------------------------------------------------------ FilterSet
class FilterSet:
    """Filters resampled once onto a common observed-frame grid; photometry = one matrix product.

    ``grid`` (ngrid,) [Å]: the points of a log-spaced grid with ``λ/Δλ = resolution`` from
    ``wave_min`` to ``wave_max`` at which at least one filter transmits (points where no filter
    transmits are dropped, which leaves the products unchanged). ``matrix`` (nbands, ngrid): with
    f_λ [erg s⁻¹ cm⁻² Å⁻¹] sampled on ``grid``, ``maggies = flambda_on_grid @ matrix.T`` — the
    photon-counting AB definition ``x = ∫f_λ T λ dλ / ∫(c·3631 Jy/λ²) T λ dλ`` with the same
    trapezoid weights in numerator and denominator (a flat-f_ν spectrum gives exactly its f_ν).
    ``names`` (nbands,), ``pivot`` (nbands,) [Å], ``wave_min``/``wave_max`` [Å]: the range where any
    filter transmits; spectra must cover it.
    """

    def __init__(self, filters, resolution: float = 2000.0, min_points: int = 5):
        filters = load_filters(filters)
        resolution = float(resolution)
        if not (np.isfinite(resolution) and resolution > 0):
            raise ValueError(f"resolution must be a positive λ/Δλ, got {resolution!r}")
        self.filters = filters
        self.names = [f.name for f in filters]
        self.resolution = resolution
        self.pivot = np.array([f.pivot for f in filters])
        support = np.array([f.support for f in filters])
        self._lo, self._hi = support[:, 0], support[:, 1]
        self.wave_min, self.wave_max = float(self._lo.min()), float(self._hi.max())

        n = int(np.ceil(np.log(self.wave_max / self.wave_min) * resolution)) + 1
        grid = self.wave_min * np.exp(np.arange(n) / resolution)
        dw = np.empty(n)  # trapezoid weights [Å]
        dw[1:-1] = 0.5 * (grid[2:] - grid[:-2])
        dw[0], dw[-1] = 0.5 * (grid[1] - grid[0]), 0.5 * (grid[-1] - grid[-2])
        trans = np.array([np.interp(grid, f.wave, f.trans, left=0.0, right=0.0) for f in filters])
        npts = (trans > 0).sum(axis=1)
        few = [f"{nm} ({k})" for nm, k in zip(self.names, npts) if k < min_points]
        if few:
            raise ValueError(f"bands {', '.join(few)} have fewer than {min_points} grid points at "
                             f"resolution {resolution:g}: raise the FilterSet resolution")
        num = trans * (grid * dw)  # (nbands, n): T λ dλ
        denom = num @ (C_AA * F_AB / grid**2)  # (nbands,)
        keep = trans.max(axis=0) > 0
        self.grid = grid[keep]
        self.matrix = np.ascontiguousarray(num[:, keep] / denom[:, None])
        self._matrix_t = np.ascontiguousarray(self.matrix.T)

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return (f"FilterSet({len(self)} bands, {self.grid.size} grid points, "
                f"{self.wave_min:.0f}–{self.wave_max:.0f} Å)")

    def maggies_from_flambda(self, wave_obs, flambda) -> np.ndarray:
        """Photometry of spectra.

        ``wave_obs``: (nλ,) observed-frame wavelengths [Å], strictly increasing, covering every
        band; ``flambda``: (nλ,) or (n, nλ) f_λ [erg s⁻¹ cm⁻² Å⁻¹], linearly interpolated onto
        ``grid``. Returns maggies (nbands,) or (n, nbands). NaNs in ``flambda`` propagate.
        """
        wave_obs = np.asarray(wave_obs, dtype=float)
        flambda = np.asarray(flambda, dtype=float)
        if wave_obs.ndim != 1 or flambda.ndim not in (1, 2) or flambda.shape[-1] != wave_obs.size:
            raise ValueError(f"wave_obs must be (nλ,) and flambda (nλ,) or (n, nλ), got shapes "
                             f"{wave_obs.shape} and {flambda.shape}")
        if not np.all(wave_obs[1:] > wave_obs[:-1]):
            i = int(np.flatnonzero(wave_obs[1:] <= wave_obs[:-1])[0])
            raise ValueError(f"wave_obs must be strictly increasing: {wave_obs[i]} then "
                             f"{wave_obs[i + 1]} Å at index {i + 1}")
        if wave_obs.size < 2 or not (wave_obs[0] <= self.wave_min and wave_obs[-1] >= self.wave_max):
            lo = wave_obs[0] if wave_obs.size else np.nan
            hi = wave_obs[-1] if wave_obs.size else np.nan
            out = [nm for nm, a, b in zip(self.names, self._lo, self._hi) if not (lo <= a and hi >= b)]
            raise ValueError(f"spectrum covers {lo:.6g}–{hi:.6g} Å but bands {', '.join(out)} "
                             f"need {self.wave_min:.6g}–{self.wave_max:.6g} Å")
        if flambda.ndim == 1:
            return np.interp(self.grid, wave_obs, flambda, left=0.0, right=0.0) @ self._matrix_t
        j = np.clip(np.searchsorted(wave_obs, self.grid, side="right"), 1, wave_obs.size - 1)
        t = (self.grid - wave_obs[j - 1]) / (wave_obs[j] - wave_obs[j - 1])
        on_grid = np.take(flambda, j - 1, axis=1)
        step = np.take(flambda, j, axis=1)
        step -= on_grid
        step *= t
        on_grid += step
        return on_grid @ self._matrix_t
