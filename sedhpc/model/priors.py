"""One-dimensional priors and training distributions, vectorised over arrays.

Every distribution has a support ``[lo, hi]`` and, for an array ``x`` of shape (n,):
``logpdf(x, cond)`` (−inf outside the support), ``cdf(x, cond)``, ``ppf(u, cond)`` (the inverse CDF,
used by dynesty's unit-cube transform and for sampling) and ``spec()`` (a JSON-able description,
stored with training sets, emulators and fits; ``from_spec`` rebuilds it). ``cond`` is the (n, d)
array of already-known parameters, used only by conditional priors (``given`` names the parameter
they depend on).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from scipy import special


class Prior:
    """Base class: a distribution on ``[lo, hi]``."""

    kind = "prior"
    given: str | None = None  # name of the conditioning parameter, if any

    def __init__(self, lo: float, hi: float):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"prior support must satisfy lo < hi (finite); got [{lo}, {hi}]")
        self.lo, self.hi = float(lo), float(hi)

    def inside(self, x) -> np.ndarray:
        return (x >= self.lo) & (x <= self.hi)

    def sample(self, rng: np.random.Generator, n: int, cond=None) -> np.ndarray:
        return self.ppf(rng.random(n), cond)

    def spec(self) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "type")
        return f"{self.spec()['type']}({args})"


class Uniform(Prior):
    kind = "uniform"

    def logpdf(self, x, cond=None):
        x = np.asarray(x, float)
        return np.where(self.inside(x), -np.log(self.hi - self.lo), -np.inf)

    def cdf(self, x, cond=None):
        return np.clip((np.asarray(x, float) - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def ppf(self, u, cond=None):
        return self.lo + np.asarray(u, float) * (self.hi - self.lo)

    def spec(self):
        return {"type": "uniform", "lo": self.lo, "hi": self.hi}


class _Truncated(Prior):
    """A location-scale distribution truncated to [lo, hi]; loc/scale may be per-row arrays.
    Subclasses give the standard distribution's ``_cdf0``, ``_ppf0`` and ``_logpdf0`` (plain
    scipy.special functions: freezing scipy.stats objects per call costs ~0.5 ms)."""

    def _loc_scale(self, cond):
        return self.mu, self.sigma

    def _bounds(self, loc, scale):
        return self._cdf0((self.lo - loc) / scale), self._cdf0((self.hi - loc) / scale)

    def logpdf(self, x, cond=None):
        x = np.asarray(x, float)
        loc, scale = self._loc_scale(cond)
        clo, chi = self._bounds(loc, scale)
        lp = self._logpdf0((x - loc) / scale) - np.log(scale) - np.log(chi - clo)
        return np.where(self.inside(x), lp, -np.inf)

    def cdf(self, x, cond=None):
        x = np.clip(np.asarray(x, float), self.lo, self.hi)
        loc, scale = self._loc_scale(cond)
        clo, chi = self._bounds(loc, scale)
        return np.clip((self._cdf0((x - loc) / scale) - clo) / (chi - clo), 0.0, 1.0)

    def ppf(self, u, cond=None):
        u = np.asarray(u, float)
        loc, scale = self._loc_scale(cond)
        clo, chi = self._bounds(loc, scale)
        return np.clip(loc + scale * self._ppf0(clo + u * (chi - clo)), self.lo, self.hi)


class _NormalBase(_Truncated):
    _cdf0 = staticmethod(special.ndtr)
    _ppf0 = staticmethod(special.ndtri)

    @staticmethod
    def _logpdf0(z):
        return -0.5 * z * z - 0.5 * np.log(2.0 * np.pi)


class TruncatedNormal(_NormalBase):
    kind = "normal"

    def __init__(self, mu: float, sigma: float, lo: float, hi: float):
        super().__init__(lo, hi)
        if not sigma > 0:
            raise ValueError(f"normal prior needs sigma > 0; got {sigma}")
        self.mu, self.sigma = float(mu), float(sigma)

    def spec(self):
        return {"type": "normal", "mu": self.mu, "sigma": self.sigma, "lo": self.lo, "hi": self.hi}


class TruncatedStudentT(_Truncated):
    kind = "student_t"

    def __init__(self, nu: float, mu: float, scale: float, lo: float, hi: float):
        super().__init__(lo, hi)
        if not (nu > 0 and scale > 0):
            raise ValueError(f"Student-t prior needs nu > 0 and scale > 0; got {nu}, {scale}")
        self.nu, self.mu, self.sigma = float(nu), float(mu), float(scale)
        self._lnorm = (special.gammaln(0.5 * (nu + 1)) - special.gammaln(0.5 * nu)
                       - 0.5 * np.log(nu * np.pi))

    def _cdf0(self, z):
        if self.nu == 2.0:  # closed form (scipy's stdtr/stdtrit iterate)
            return 0.5 + z / (2.0 * np.sqrt(2.0 + z * z))
        return special.stdtr(self.nu, z)

    def _ppf0(self, p):
        if self.nu == 2.0:
            p = np.asarray(p, float)
            return (2.0 * p - 1.0) / np.sqrt(2.0 * p * (1.0 - p))
        return special.stdtrit(self.nu, p)

    def _logpdf0(self, z):
        return self._lnorm - 0.5 * (self.nu + 1) * np.log1p(z * z / self.nu)

    def spec(self):
        return {"type": "student_t", "nu": self.nu, "mu": self.mu, "scale": self.sigma,
                "lo": self.lo, "hi": self.hi}


def load_massmet_table() -> np.ndarray:
    """Gallazzi et al. (2005) mass–metallicity table shipped with sedhpc: (n, 4) columns
    log10 mass, P50, P16, P84 of log10 Z/Zsun (Chabrier IMF)."""
    with resources.files("sedhpc.model").joinpath("data/gallazzi05_massmet.txt").open() as f:
        return np.loadtxt(f)


class MassMetallicity(_NormalBase):
    """logzsol | logmass: normal with μ = P50(logmass), σ = P84 − P16 (linear interpolation of the
    Gallazzi et al. 2005 table, clamped at its ends), truncated to [lo, hi] (Leja et al. 2019)."""

    kind = "massmet"

    def __init__(self, lo: float = -1.98, hi: float = 0.19, given: str = "logmass",
                 given_index: int = 0):
        super().__init__(lo, hi)
        self.given, self.given_index = given, int(given_index)
        table = load_massmet_table()
        self.mass, self.p50 = table[:, 0], table[:, 1]
        self.width = table[:, 3] - table[:, 2]

    def _loc_scale(self, cond):
        if cond is None:
            raise ValueError("the mass–metallicity prior needs logmass (cond) to be evaluated")
        m = np.asarray(cond, float)[..., self.given_index]
        return np.interp(m, self.mass, self.p50), np.interp(m, self.mass, self.width)

    def spec(self):
        return {"type": "massmet", "table": "gallazzi05", "given": self.given,
                "lo": self.lo, "hi": self.hi}


class Mixture(Prior):
    """Training distribution: ``weight`` × prior + (1 − weight) × uniform over the prior's support
    (seed Section 4.2: thick tails so the emulator learns the rare corners)."""

    kind = "mixture"

    def __init__(self, prior: Prior, weight: float = 0.5):
        super().__init__(prior.lo, prior.hi)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"mixture weight must be in [0, 1]; got {weight}")
        self.prior, self.weight = prior, float(weight)
        self.given = prior.given
        self.uniform = Uniform(prior.lo, prior.hi)

    def logpdf(self, x, cond=None):
        with np.errstate(divide="ignore"):
            return np.logaddexp(np.log(self.weight) + self.prior.logpdf(x, cond),
                                np.log1p(-self.weight) + self.uniform.logpdf(x))

    def cdf(self, x, cond=None):
        return self.weight * self.prior.cdf(x, cond) + (1 - self.weight) * self.uniform.cdf(x)

    def ppf(self, u, cond=None):
        """Inverse CDF by vectorised bisection (monotone CDF; 60 halvings → < 1e-15 of range)."""
        u = np.asarray(u, float)
        lo = np.full(u.shape, self.lo)
        hi = np.full(u.shape, self.hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid, cond) < u
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def spec(self):
        return {"type": "mixture", "weight": self.weight, "prior": self.prior.spec(),
                "lo": self.lo, "hi": self.hi}


class Tabulated(Prior):
    """A density given as a table of (x, p) nodes, linear between them and zero outside
    [x[0], x[-1]] (e.g. a photo-z prior p(z)); normalised here. The inverse CDF is exact
    (the CDF is piecewise quadratic)."""
    kind = "table"

    def __init__(self, x, p):
        x, p = np.asarray(x, float), np.asarray(p, float)
        if x.ndim != 1 or x.shape != p.shape or len(x) < 2:
            raise ValueError("a tabulated prior needs x and p of equal length ≥ 2")
        if np.any(~np.isfinite(x)) or np.any(np.diff(x) <= 0):
            raise ValueError("tabulated prior: x must be finite and strictly increasing")
        if np.any(~np.isfinite(p)) or np.any(p < 0) or not np.any(p > 0):
            raise ValueError("tabulated prior: p must be finite, ≥ 0 and not all zero")
        super().__init__(x[0], x[-1])
        seg = 0.5 * (p[1:] + p[:-1]) * np.diff(x)
        norm = seg.sum()
        self.x, self.p = x, p / norm
        self.c = np.concatenate([[0.0], np.cumsum(seg / norm)])
        self.c[-1] = 1.0

    def logpdf(self, x, cond=None):
        x = np.asarray(x, float)
        with np.errstate(divide="ignore"):
            return np.where(self.inside(x), np.log(np.interp(x, self.x, self.p)), -np.inf)

    def cdf(self, x, cond=None):
        x = np.clip(np.asarray(x, float), self.lo, self.hi)
        k = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, len(self.x) - 2)
        t = x - self.x[k]
        slope = (self.p[k + 1] - self.p[k]) / (self.x[k + 1] - self.x[k])
        return np.clip(self.c[k] + self.p[k] * t + 0.5 * slope * t * t, 0.0, 1.0)

    def ppf(self, u, cond=None):
        u = np.clip(np.asarray(u, float), 0.0, 1.0)
        k = np.clip(np.searchsorted(self.c, u, side="right") - 1, 0, len(self.x) - 2)
        dx = self.x[k + 1] - self.x[k]
        p0, slope, r = self.p[k], (self.p[k + 1] - self.p[k]) / dx, u - self.c[k]
        # solve c_k + p0 t + slope t²/2 = u for t in [0, dx]; the stable root form
        disc = np.sqrt(np.maximum(p0 * p0 + 2.0 * slope * r, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p0 + disc > 0, 2.0 * r / (p0 + disc), 0.0)
        return np.clip(self.x[k] + np.clip(t, 0.0, dx), self.lo, self.hi)

    def spec(self):
        return {"type": "table", "x": self.x.tolist(), "p": self.p.tolist(),
                "lo": self.lo, "hi": self.hi}

    @classmethod
    def read(cls, path) -> "Tabulated":
        """Two whitespace-separated columns (x, p); '#' starts a comment."""
        try:
            data = np.loadtxt(path, ndmin=2)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read a prior table from {path}: {exc}") from None
        if data.shape[1] < 2:
            raise ValueError(f"{path}: a prior table needs two columns (x, p)")
        try:
            return cls(data[:, 0], data[:, 1])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def from_spec(spec: dict, names: list[str] | None = None) -> Prior:
    """Rebuild a prior from its ``spec()`` dict (``names``: parameter order, for conditionals)."""
    kind = spec.get("type")
    if kind == "uniform":
        return Uniform(spec["lo"], spec["hi"])
    if kind == "normal":
        return TruncatedNormal(spec["mu"], spec["sigma"], spec["lo"], spec["hi"])
    if kind == "student_t":
        return TruncatedStudentT(spec["nu"], spec["mu"], spec["scale"], spec["lo"], spec["hi"])
    if kind == "massmet":
        given = spec.get("given", "logmass")
        idx = names.index(given) if names else 0
        return MassMetallicity(spec["lo"], spec["hi"], given=given, given_index=idx)
    if kind == "mixture":
        return Mixture(from_spec(spec["prior"], names), spec["weight"])
    if kind == "table":
        return Tabulated(spec["x"], spec["p"])
    raise ValueError(f"unknown prior type {kind!r} in {spec}; expected uniform, normal, "
                     "student_t, massmet, mixture or table")


__all__ = ["Prior", "Uniform", "TruncatedNormal", "TruncatedStudentT", "MassMetallicity",
           "Mixture", "Tabulated", "from_spec", "load_massmet_table"]
