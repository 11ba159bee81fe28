"""Parameter sets: names in emulator-input order, bounds, priors, training distributions.

A :class:`Distribution` is an ordered list of 1-D priors (some conditional on earlier
parameters) over all ``d`` parameters; a :class:`Model` holds the parameter definitions, its prior
distribution and which parameters are fixed per object (``zred`` in normal fits, free in photo-z).
All array methods take and return (n, d) float arrays in the model's parameter order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .priors import Mixture, Prior, Uniform, from_spec


@dataclass(frozen=True)
class Parameter:
    name: str
    prior: Prior
    unit: str
    doc: str

    @property
    def bounds(self) -> tuple[float, float]:
        return self.prior.lo, self.prior.hi


class Distribution:
    """Joint distribution ∏_k p_k(θ_k | θ_<k) over ordered parameters."""

    def __init__(self, names: list[str], priors: list[Prior]):
        if len(names) != len(priors):
            raise ValueError("names and priors differ in length")
        self.names, self.priors = list(names), list(priors)

    @property
    def ndim(self) -> int:
        return len(self.names)

    def log_prob(self, theta, columns=None) -> np.ndarray:
        """Σ_k log p_k(θ_k | θ): (n,) for ``theta`` (n, d); −inf outside the support.
        ``columns`` restricts the sum (e.g. to free parameters)."""
        theta = np.atleast_2d(np.asarray(theta, float))
        cols = range(self.ndim) if columns is None else columns
        lp = np.zeros(theta.shape[0])
        for k in cols:
            lp += self.priors[k].logpdf(theta[:, k], theta)
        return lp

    def transform(self, u, columns=None, theta=None) -> np.ndarray:
        """Map unit-cube ``u`` (n, len(columns)) to parameters, in order, through each inverse
        CDF; conditional priors see the columns already filled. ``theta`` (n, d) supplies the
        other columns (fixed values); the result is a new (n, d) array."""
        u = np.atleast_2d(np.asarray(u, float))
        cols = list(range(self.ndim)) if columns is None else list(columns)
        if u.shape[1] != len(cols):
            raise ValueError(f"unit cube has {u.shape[1]} columns, expected {len(cols)}")
        out = np.zeros((u.shape[0], self.ndim)) if theta is None else np.array(theta, float)
        for j, k in enumerate(cols):
            out[:, k] = self.priors[k].ppf(u[:, j], out)
        return out

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n independent draws: (n, d). One uniform per parameter per draw, so draw i depends
        only on the generator's stream."""
        return self.transform(rng.random((n, self.ndim)))

    def spec(self) -> dict:
        return {"names": self.names, "priors": [p.spec() for p in self.priors]}

    @classmethod
    def from_spec(cls, spec: dict) -> "Distribution":
        names = list(spec["names"])
        return cls(names, [from_spec(p, names) for p in spec["priors"]])


class Model:
    """A named physical model: its parameters (emulator input order) and priors.

    ``fixed``: names of parameters held fixed per object (their values come with each galaxy;
    they are excluded from :meth:`log_prob` and from the unit cube of :meth:`unit_transform`).
    """

    def __init__(self, name: str, params: list[Parameter], fixed=("zred",), sps: str = ""):
        self.name, self.params, self.sps = name, list(params), sps
        self.names = [p.name for p in self.params]
        unknown = [f for f in fixed if f not in self.names]
        if unknown:
            raise ValueError(f"fixed parameter(s) {unknown} not in model {name!r}")
        self.fixed = tuple(fixed)
        self.fixed_index = [self.names.index(f) for f in self.fixed]
        self.free_index = [i for i in range(len(self.names)) if i not in self.fixed_index]
        self.free_names = [self.names[i] for i in self.free_index]
        self.prior = Distribution(self.names, [p.prior for p in self.params])

    @property
    def ndim(self) -> int:
        return len(self.names)

    @property
    def bounds(self) -> np.ndarray:
        """(d, 2) lower and upper limits of every parameter."""
        return np.array([p.bounds for p in self.params])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown parameter {name!r} for model {self.name!r}; "
                           f"parameters are {self.names}") from None

    def with_fixed(self, fixed=(), priors: dict | None = None) -> "Model":
        """A copy with another set of fixed parameters and optionally replaced priors,
        e.g. ``model.with_fixed((), {"zred": Uniform(0.001, 10)})`` for photo-z fits."""
        priors = priors or {}
        for k in priors:
            self.index(k)
        params = [Parameter(p.name, priors.get(p.name, p.prior), p.unit, p.doc)
                  for p in self.params]
        return Model(self.name, params, fixed, self.sps)

    # -- validation -------------------------------------------------------------------------
    def validate(self, theta, what: str = "theta") -> np.ndarray:
        """Return ``theta`` as an (n, d) float array, or raise ValueError naming the offending
        parameter, row and value (wrong shape, NaN/inf, outside the model's bounds)."""
        arr = np.asarray(theta, dtype=float)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.ndim:
            raise ValueError(f"{what} must have shape (n, {self.ndim}) with columns {self.names}"
                             f" for model {self.name!r}; got shape {np.shape(theta)}")
        for k, p in enumerate(self.params):
            col = arr[:, k]
            bad = ~np.isfinite(col) | (col < p.prior.lo) | (col > p.prior.hi)
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                why = ("is not finite" if not np.isfinite(col[i]) else
                       f"is outside model {self.name!r}'s range [{p.prior.lo}, {p.prior.hi}]")
                raise ValueError(f"{what}: parameter {p.name!r} = {float(col[i])!r} (row {i}) "
                                 f"{why}; {int(bad.sum())} row(s) affected")
        return arr

    def from_columns(self, columns: dict, what: str = "table") -> np.ndarray:
        """Assemble (n, d) θ from a mapping name → (n,) values (e.g. an astropy Table);
        raises naming missing or unknown columns."""
        keys = set(getattr(columns, "colnames", None) or columns.keys())
        missing = [n for n in self.names if n not in keys]
        if missing:
            unused = sorted(k for k in keys if k not in self.names)
            raise ValueError(f"{what} lacks parameter column(s) {missing} of model "
                             f"{self.name!r} (needs {self.names}; columns not used: {unused})")
        return self.validate(np.column_stack([np.asarray(columns[n], float)
                                              for n in self.names]), what)

    # -- prior --------------------------------------------------------------------------------
    def log_prob(self, theta) -> np.ndarray:
        """log prior density of the free parameters given the fixed ones: (n,). −inf where any
        parameter (fixed ones included) is outside its bounds."""
        theta = np.atleast_2d(np.asarray(theta, float))
        lp = self.prior.log_prob(theta, self.free_index)
        b = self.bounds
        inside = np.all((theta >= b[:, 0]) & (theta <= b[:, 1]), axis=1)
        return np.where(inside, lp, -np.inf)

    def unit_transform(self, u, fixed_values=None) -> np.ndarray:
        """dynesty prior transform: ``u`` (n, n_free) in [0, 1) → θ (n, d).
        ``fixed_values``: (n, n_fixed) or (n_fixed,) values of ``self.fixed`` (in that order)."""
        u = np.atleast_2d(np.asarray(u, float))
        theta = np.zeros((u.shape[0], self.ndim))
        if self.fixed:
            if fixed_values is None:
                raise ValueError(f"model {self.name!r} needs values for fixed parameter(s) "
                                 f"{list(self.fixed)}")
            theta[:, self.fixed_index] = np.broadcast_to(
                np.asarray(fixed_values, float), (u.shape[0], len(self.fixed)))
        return self.prior.transform(u, self.free_index, theta)

    def sample(self, rng: np.random.Generator, n: int, fixed_values=None) -> np.ndarray:
        """n draws from the prior: (n, d). Fixed parameters take ``fixed_values`` or, if None,
        are drawn from their own (bounds-wide) prior."""
        if fixed_values is None:
            return self.prior.sample(rng, n)
        return self.unit_transform(rng.random((n, len(self.free_index))), fixed_values)

    def training_distribution(self, mix: float = 0.5, zrange=None) -> Distribution:
        """Training distribution (MODEL.md, seed Section 4.2): ``mix`` × prior + (1 − mix) ×
        uniform for every non-uniform prior; conditional (mass–metallicity) priors become uniform
        over their support; redshift uniform over ``zrange`` (default: the model's bounds).
        ``mix = 1`` is the prior itself, conditional priors included (mocks drawn from the
        prior, emulators trained on it)."""
        priors = []
        for p in self.params:
            pr = p.prior
            if p.name == "zred":
                lo, hi = (float(v) for v in zrange) if zrange is not None else (pr.lo, pr.hi)
                if not (pr.lo <= lo < hi <= pr.hi):
                    raise ValueError(f"zrange [{lo}, {hi}] must lie inside the model's redshift "
                                     f"range [{pr.lo}, {pr.hi}]")
                priors.append(Uniform(lo, hi))
            elif isinstance(pr, Uniform):
                priors.append(pr)
            elif pr.given is not None:
                priors.append(pr if mix == 1.0 else Uniform(pr.lo, pr.hi))
            else:
                priors.append(Mixture(pr, mix))
        return Distribution(self.names, priors)

    def describe(self) -> str:
        """Human-readable table of parameters, priors and ranges."""
        lines = [f"model {self.name!r} (SPS: {self.sps}; {self.ndim} parameters; fixed per "
                 f"object: {', '.join(self.fixed) or 'none'})"]
        for i, p in enumerate(self.params, 1):
            lines.append(f"  {i:2d} {p.name:<18s} [{p.prior.lo:g}, {p.prior.hi:g}]  "
                         f"{p.prior!r}  {p.unit}  {p.doc}")
        return "\n".join(lines)
