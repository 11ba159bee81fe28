"""Fit a batch of galaxies with the emulator likelihood: arrays in, per-galaxy equal-weight
posterior samples, derived quantities and diagnostics out. No files, no MPI: the catalog engine
drives :func:`fit_batch`.

Two samplers share one problem definition (:class:`Problem`):

- ``"ensemble"`` (default): the batched ensemble MCMC of :mod:`.ensemble`, run in the prior's
  *probit space*: v = Φ⁻¹(u) with u the unit-cube coordinate of the prior transform, so the
  prior is a standard normal in v and the target is log L(θ(Φ(v))) + Σ log φ(v). Prior-dominated
  directions become unit Gaussians (where affine-invariant moves work best) instead of a box or
  the Student-t tails of the SFH priors. With a mass-normalised emulator the mass coordinate is
  moreover *sheared* onto the best-fitting flux scale (``coords``, :func:`fit_batch`), which
  straightens the mass–SFH–dust ridge of well-measured galaxies;
- ``"dynesty"``: dynesty per galaxy (:mod:`.nested`), batched across galaxies, on the unit cube
  of the same mass shear by posterior repartitioning (``coords``), else of the prior itself.

Redshift is fixed per galaxy (``zred`` given) or free: ``photoz_model`` frees it with a uniform
prior over the emulator's range or a user p(z) table, and results then carry a p(z) summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .._threads import blas_threads, fit_threads
from ..likelihood import Likelihood, Observations
from ..model import Model, Prior, Tabulated, Uniform, sfh
from .ensemble import EnsembleSampler, _host
from .nested import run_nested

LOG_SQRT2PI = 0.5 * float(np.log(2 * np.pi))
SHEAR_SCALE = 1.0  # dex of logmass per unit of the shear coordinate


@dataclass
class FitResult:
    """One galaxy: ``samples`` (N, d) full parameter vectors (fixed ones included, model
    order), their ``log_like``, ``derived`` {name: (N,)} (logmstar, sfr100 [Msun/yr], mwa_gyr),
    the best sample's χ², a p(z) summary when redshift was free, and the sampler's
    diagnostics (ncall, ess, …; nested: logz, logzerr). ``converged`` False: the step or call
    cap was hit first (samples are still returned)."""
    galaxy: int
    samples: np.ndarray
    log_like: np.ndarray
    derived: dict
    chi2_best: float
    diagnostics: dict = field(default_factory=dict)
    converged: bool = True
    pz: dict | None = None
    error: str | None = None  # the galaxy could not be fitted (samples empty)


def derived_quantities(model: Model, theta: np.ndarray, log_mfrac: np.ndarray) -> dict:
    """Stellar mass (mass formed × mfrac), SFR over the last 100 Myr, mass-weighted age."""
    i = model.index
    z = theta[:, i("zred")]
    masses = sfh.bin_masses(theta[:, i("logmass")],
                            theta[:, [i(f"logsfr_ratios_{k}") for k in range(1, 7)]], z)
    return {"logmstar": theta[:, i("logmass")] + log_mfrac, "sfr100": sfh.sfr_over(masses, z),
            "mwa_gyr": sfh.mass_weighted_age(masses, z)}


def photoz_model(model: Model, emulator, zprior=None) -> Model:
    """``model`` with redshift free. ``zprior``: None (uniform over the emulator's redshift
    range ∩ the model's), a :class:`~sedhpc.model.Prior`, a path to a two-column (z, p) table,
    or an (z, p) pair of arrays."""
    zlo, zhi = emulator.zrange
    b = model.bounds[model.index("zred")]
    lo, hi = max(zlo, b[0]), min(zhi, b[1])
    if zprior is None:
        prior = Uniform(lo, hi)
    elif isinstance(zprior, Prior):
        prior = zprior
    elif isinstance(zprior, (str, bytes)) or hasattr(zprior, "__fspath__"):
        prior = Tabulated.read(zprior)
    else:
        prior = Tabulated(*zprior)
    if prior.lo < lo - 1e-12 or prior.hi > hi + 1e-12:
        raise ValueError(f"the redshift prior covers [{prior.lo}, {prior.hi}] but the emulator "
                         f"(and model) cover [{lo}, {hi}]: cut the table to that range")
    return model.with_fixed((), {"zred": prior})


def pz_summary(z: np.ndarray, zrange, nbins: int = 60) -> dict:
    """p(z) summary from posterior samples: median, 68 / 95 % intervals, the mode (peak of a
    histogram), and that histogram (``nbins`` bins uniform in log(1 + z) over ``zrange``)."""
    z = np.asarray(z, float)
    edges = np.expm1(np.linspace(np.log1p(zrange[0]), np.log1p(zrange[1]), nbins + 1))
    hist, _ = np.histogram(z, edges)
    k = int(np.argmax(hist))
    q = np.percentile(z, [2.5, 16, 50, 84, 97.5])
    return {"z_median": float(q[2]), "z16": float(q[1]), "z84": float(q[3]),
            "z2p5": float(q[0]), "z97p5": float(q[4]),
            "z_mode": float(np.sqrt((1 + edges[k]) * (1 + edges[k + 1])) - 1),
            "edges": edges, "pdf": hist / max(len(z), 1) / np.diff(edges)}


class Problem:
    """The posterior of G galaxies: ``model`` priors, the emulator likelihood, per-galaxy
    values of the model's fixed parameters. Maps unit-cube or probit coordinates of the free
    parameters to full θ, in batches mixing any galaxies."""

    def __init__(self, model: Model, emulator, obs: Observations, fixed: np.ndarray,
                 floor: float = 0.05, zeropoints=None, sigma_emu=None):
        if list(emulator.param_names) != list(model.names):
            raise ValueError(f"emulator parameters {emulator.param_names} differ from model "
                             f"{model.name!r}'s {model.names}")
        self.model, self.emulator, self.obs = model, emulator, obs
        self.lik = Likelihood(emulator, obs, floor=floor, zeropoints=zeropoints,
                              sigma_emu=sigma_emu)
        self.fixed = np.asarray(fixed, float).reshape(obs.ngal, len(model.fixed))
        self.nfree = len(model.free_index)
        self.xp = emulator.xp
        self.shear_ok = self._setup_shear()

    # -- mass-shear coordinates ---------------------------------------------------------------
    def _setup_shear(self) -> bool:
        """Whether the mass-shear coordinates apply: logmass free with an unconditional prior,
        and an emulator whose fluxes scale exactly with mass (:attr:`Emulator.mass_ref`)."""
        m = self.model
        ref = getattr(self.emulator, "mass_ref", None)
        if ref is None or "logmass" not in m.names:
            return False
        free = list(m.free_index)
        im = m.index("logmass")
        if im not in free or m.params[im].prior.given is not None:
            return False
        self.im, self.km = im, free.index(im)
        # the reference-mass fluxes are evaluated at the middle of the emulator's logmass range
        # (inside its training ranges; the networks ignore logmass, the kernel scales exactly)
        self.mass_eval = 0.5 * float(_host(self.emulator.lo)[im] + _host(self.emulator.hi)[im])
        # parameters whose prior is conditional on logmass (the mass–metallicity relation):
        # sampled on their bounds' box, their density added explicitly
        self.kcond = [k for k, i in enumerate(free) if m.params[i].prior.given == "logmass"]
        self.kprobit = [k for k in range(self.nfree) if k != self.km and k not in self.kcond]
        return True

    def _shear_rest(self, y: np.ndarray, galaxy: np.ndarray) -> np.ndarray:
        """θ (n, d) on the host from shear coordinates ``y`` with logmass at the reference."""
        return self._shear_rest_unit(special.ndtr(y), galaxy)

    def _shear_rest_unit(self, u: np.ndarray, galaxy: np.ndarray) -> np.ndarray:
        """As :meth:`_shear_rest`, from the unit-cube coordinates u = Φ(y)."""
        u = np.array(u, float)
        u[:, self.km] = 0.5
        theta = self.theta_from_unit(u, galaxy)
        free = self.model.free_index
        for k in self.kcond:
            pr = self.model.params[free[k]].prior
            theta[:, free[k]] = pr.lo + (pr.hi - pr.lo) * u[:, k]
        theta[:, self.im] = self.mass_eval
        return theta

    def _shear_eval(self, theta0, galaxy, group, y_m):
        """Shared step: the reference-mass fluxes at ``theta0`` (logmass = the reference) →
        logmass = m* + SHEAR_SCALE·``y_m`` with m* = reference + best log amplitude (clipped to
        the logmass prior's range), θ (host), log L (device)."""
        xp, lik = self.xp, self.lik
        x0, inside, _ = lik.model_maggies(theta0, group, sigma=False)
        pm = self.model.params[self.im].prior
        best = np.clip(self.mass_eval + _host(lik.log_amplitude(x0, galaxy)).astype(float),
                       pm.lo, pm.hi)  # faint or negative photometry: inside the prior
        logmass = best + SHEAR_SCALE * y_m
        theta = theta0.copy()
        theta[:, self.im] = logmass
        x = x0 * xp.asarray(10.0 ** (logmass - self.mass_eval))[:, None]
        return theta, lik.loglike_from(x, inside, lik.emulator_sigma(theta, group), galaxy)

    def logpost_shear(self, y, galaxy, group: int | None = None):
        """Target density in the mass-shear coordinates (see :func:`fit_batch`), in the
        emulator's array module; one network pass per row."""
        xp = self.xp
        yh, gh = _host(y).astype(float), _host(galaxy).astype(int)
        theta, ll = self._shear_eval(self._shear_rest(yh, gh), gh, group, yh[:, self.km])
        free, m = self.model.free_index, self.model
        lp = -0.5 * np.sum(yh[:, self.kprobit] ** 2, axis=1)
        lp += m.params[self.im].prior.logpdf(theta[:, self.im])
        for k in self.kcond:
            lp += m.params[free[k]].prior.logpdf(theta[:, free[k]], theta)
            lp -= 0.5 * yh[:, k] ** 2
        ok = np.isfinite(lp)
        return xp.where(xp.asarray(ok), ll + xp.asarray(np.where(ok, lp, 0.0)), -xp.inf)

    def theta_from_shear(self, y, galaxy) -> tuple[np.ndarray, np.ndarray]:
        """θ (n, d) and log L (n,) on the host at shear coordinates ``y``."""
        yh, gh = np.asarray(y, float), np.asarray(galaxy, int)
        theta, ll = self._shear_eval(self._shear_rest(yh, gh), gh, None, yh[:, self.km])
        return theta, _host(ll).astype(float)

    # -- the same shear for nested sampling (posterior repartitioning) ------------------------
    def _nested_mass(self, u: np.ndarray) -> np.ndarray:
        """y_m from the unit coordinate: logmass − m* uniform on ±(the logmass prior's width)."""
        pm = self.model.params[self.im].prior
        return (2.0 * u[:, self.km] - 1.0) * (pm.hi - pm.lo) / SHEAR_SCALE

    def _nested_log_ratio(self, theta: np.ndarray) -> np.ndarray:
        """log π(θ) − log π'(θ) for the nested sampler's shear prior π' (logmass − m* uniform
        on ±W, W the logmass prior's width; mass-conditional parameters uniform on their
        bounds; the rest their own priors, identical in both): −inf outside the model's prior."""
        m, free = self.model, self.model.free_index
        pm = m.params[self.im].prior
        lr = pm.logpdf(theta[:, self.im]) + np.log(2.0 * (pm.hi - pm.lo))
        for k in self.kcond:
            pr = m.params[free[k]].prior
            lr = lr + pr.logpdf(theta[:, free[k]], theta) + np.log(pr.hi - pr.lo)
        return np.where(np.isfinite(lr), lr, -np.inf)

    def loglike_shear_unit(self, u, galaxy):
        """Nested sampling in the mass-shear coordinates by *posterior repartitioning*: the
        sampler draws from a prior π' that is uniform in the unit cube ``u`` (n, nfree) of the
        shear coordinates (:meth:`_nested_mass`, :meth:`_nested_log_ratio`) and weighs by
        L' = L π/π', so π'L' = πL: the same posterior and the same evidence, sampled along the
        straightened mass ridge. Returns log L' (n,) on the host (−inf outside the prior)."""
        theta, ll = self.theta_from_shear_unit(u, galaxy)
        return ll + self._nested_log_ratio(theta)

    def theta_from_shear_unit(self, u, galaxy) -> tuple[np.ndarray, np.ndarray]:
        """θ (n, d) and log L (n,) (the likelihood itself, not L') at the nested sampler's
        shear unit-cube points ``u``."""
        uh, gh = np.asarray(u, float), np.asarray(galaxy, int)
        theta, ll = self._shear_eval(self._shear_rest_unit(uh, gh), gh, None,
                                     self._nested_mass(uh))
        return theta, _host(ll).astype(float)

    def theta_from_unit(self, u, galaxy) -> np.ndarray:
        return self.model.unit_transform(np.clip(u, 0.0, 1.0), self.fixed[galaxy])

    def loglike_unit(self, u, galaxy):
        """log L (n,) at unit-cube points ``u`` (n, nfree) of galaxies ``galaxy`` (n,)."""
        galaxy = np.asarray(galaxy, int)
        return _host(self.lik(self.theta_from_unit(np.asarray(u, float), galaxy), galaxy))

    def logpost_probit(self, v, galaxy, group: int | None = None):
        """log L + log N(v; 0, 1) at probit points ``v`` (n, nfree), in the emulator's array
        module (the prior transform itself runs on the host). ``group``: see
        :class:`~sedhpc.likelihood.Likelihood`."""
        xp = self.xp
        vh, gh = _host(v).astype(float), _host(galaxy).astype(int)
        theta = self.theta_from_unit(special.ndtr(vh), gh)
        ll = self.lik(theta, gh, group)
        return ll + xp.asarray(-0.5 * np.sum(vh * vh, axis=1) - self.nfree * LOG_SQRT2PI)

    def finish(self, g: int, theta: np.ndarray, log_like: np.ndarray, diagnostics: dict,
               converged: bool) -> FitResult:
        pred = self.emulator.predict(theta)
        best = int(np.argmax(log_like))
        chi2 = float(_host(self.lik.chi2(theta[best:best + 1], np.array([g])))[0])
        diagnostics.update(nbands=int(self.obs.nbands_used[g]),
                           bad_error=bool(self.obs.bad_error[g]))
        pz = None
        if "zred" not in self.model.fixed:
            zp = self.model.params[self.model.index("zred")].prior
            pz = pz_summary(theta[:, self.model.index("zred")], (zp.lo, zp.hi))
        return FitResult(int(g), theta, np.asarray(log_like, float),
                         derived_quantities(self.model, theta,
                                            _host(pred.log_mfrac).astype(float)),
                         chi2, diagnostics, bool(converged), pz)


def fit_batch(model: Model, emulator, flux, err, zred=None, mask=None, floor: float = 0.05,
              zeropoints=None, sampler: str = "ensemble", seed: int = 0, nsamples: int = 256,
              callback=None, sigma_emu=None, galaxies=None, keys=None, tick=None,
              coords: str = "auto", threads: int | None = None, **options) -> list:
    """Fit G galaxies: ``flux``, ``err`` (G, nbands) maggies in the emulator's bands, in order;
    ``zred`` (G,) when the model holds redshift fixed (ignored when it is free, see
    :func:`photoz_model`); ``mask`` (G, nbands) True where a band is used (non-finite fluxes and
    non-positive errors are masked and flagged); ``floor``, ``zeropoints``, ``sigma_emu``: see
    :class:`~sedhpc.likelihood.Likelihood` (``sigma_emu=0`` switches the emulator-error term
    off, e.g. for mocks made with the emulator itself). ``sampler``: "ensemble" (options go to
    :class:`EnsembleSampler`) or "dynesty" (options go to :func:`run_nested`: nlive, dynamic,
    dlogz, sample, maxcall, nconcurrent, batched). Galaxy g draws its random numbers from
    ``SeedSequence(seed, spawn_key=(g,))``. Returns a :class:`FitResult` per galaxy, in input
    order; ``callback(result)`` is called as each one finishes.

    ``coords`` (ensemble only): the sampler's coordinates. "probit": v = Φ⁻¹(u) for every free
    parameter (module docstring). "shear": the same, except logmass = m*(rest) + y_m dex with
    m* the log flux scale that best fits the galaxy's photometry given the other parameters
    (:meth:`~sedhpc.likelihood.Likelihood.log_amplitude`) and parameters whose prior is
    conditional on logmass (logzsol) uniform on their bounds with that prior's density added —
    a shear with unit Jacobian, so the target is the same posterior, but the curved ridge along
    which mass trades against the SFH, dust and metallicity is straightened: on 64 benchmark
    mocks, with stretch and DE moves alone, 48 % instead of 25 % converge within the step cap,
    at 0.48× the CPU-s per converged galaxy (docs/BENCHMARKS.md, "Ensemble moves"; its
    simulation-based calibration: docs/inference). It needs an emulator whose fluxes scale
    exactly with mass (format 2, :attr:`~sedhpc.emulator.Emulator.mass_ref`), whose
    reference-mass fluxes it scales in float64; "auto" (default) takes "shear" when it applies, else "probit".

    dynesty takes the same ``coords`` ("probit" there means the prior's own unit cube). Its
    "shear" is *posterior repartitioning* (:meth:`Problem.loglike_shear_unit`): it samples a
    prior π' uniform in the cube of the shear coordinates (logmass − m* uniform on ± the
    logmass prior's width, logzsol on its bounds, the rest their own priors) and weighs by
    L' = L π/π' — the same posterior and evidence. On the prior's unit cube, dynesty's rslice
    posteriors came out 5–9 % narrower than the ensemble's (logmass 95 % coverage 0.915 on
    200 mocks); in the shear all eight coverages of the simulation-based calibration are
    inside their targets (logmass 0.675 / 0.930), at 0.90× the CPU-s (docs/inference).

    ``threads``: BLAS threads while fitting (restored afterwards). Default: the user's own
    OMP/OPENBLAS/MKL_NUM_THREADS if any was set before sedhpc was imported, else 1 — the
    kernel's products are small (a few hundred rows per call), and a second thread cost 1.54×
    the CPU-seconds for 12 % less wall time on a quiet 2-core machine (and ~10× the time when
    the cores are shared): parallelism belongs to MPI ranks, one per core.

    For the catalog engine: ``galaxies`` (an iterable of row indices, read lazily as sampler
    slots free up; rows must have valid redshifts — the caller screens them) fits only those
    rows, ``keys(g)`` gives row g's seed key (default g), ``tick()`` is called every sampler
    step; then results go only to ``callback`` (the returned list is empty). A galaxy that
    cannot be sampled gives a result with ``error`` set and no samples."""
    obs = Observations.build(flux, err, mask)
    G = obs.ngal
    if model.fixed:
        if model.fixed != ("zred",):
            raise ValueError(f"model {model.name!r} holds {list(model.fixed)} fixed; only "
                             "zred can be given per galaxy")
        if zred is None:
            raise ValueError(f"model {model.name!r} holds zred fixed: give zred per galaxy "
                             "(or free it with photoz_model)")
        fixed = np.asarray(zred, float).reshape(G, 1)
        zp = model.params[model.index("zred")].prior
        bad = ~np.isfinite(fixed[:, 0]) | (fixed[:, 0] < max(zp.lo, emulator.zrange[0])) | (
            fixed[:, 0] > min(zp.hi, emulator.zrange[1]))
        if galaxies is not None:  # screened by the caller; keep the prior transform finite
            fixed[bad, 0] = 0.5 * (max(zp.lo, emulator.zrange[0]) + min(zp.hi,
                                                                          emulator.zrange[1]))
        elif bad.any():
            raise ValueError(f"zred of galaxy {int(np.flatnonzero(bad)[0])} "
                             f"({fixed[bad][0, 0]}) is outside the emulator's range "
                             f"{emulator.zrange}")
    else:
        fixed = np.zeros((G, 0))
    prob = Problem(model, emulator, obs, fixed, floor, zeropoints, sigma_emu)
    keep = galaxies is None
    out: list = [None] * G if keep else []
    stream = dict(keys=keys, tick=tick, keep=False)

    def done(r):
        if keep:
            out[r.galaxy] = r
        if callback:
            callback(r)

    if coords not in ("auto", "probit", "shear"):
        raise ValueError(f"coords must be 'auto', 'probit' or 'shear'; got {coords!r}")
    if coords == "shear" and not prob.shear_ok:
        raise ValueError("coords='shear' needs logmass free with an unconditional prior and an "
                         "emulator that scales fluxes with mass (format 2, mass_ref); this one "
                         "does not: use coords='probit'")
    with blas_threads(fit_threads(threads)):
        shear = coords != "probit" and prob.shear_ok
        if sampler == "ensemble":
            xp = emulator.xp

            def init(rng, g, n):
                return rng.standard_normal((n, prob.nfree))

            if xp is not np:  # a GPU: fill it, and keep every 5th step of the chains on device
                options.setdefault("nslots", 2048)
                options.setdefault("store_every", 5)
            # on the CPU, each galaxy's proposals as a group (results depending on its rows
            # alone): bit-identical chains whatever shares the batch (1 or K ranks, resumed
            # runs); on a GPU one flat product (not yet measured grouped on a GPU)
            options.setdefault("grouped", xp is np)
            s = EnsembleSampler(prob.logpost_shear if shear else prob.logpost_probit, init,
                                prob.nfree, seed=seed, nsamples=nsamples, xp=xp, keys=keys,
                                tick=tick, **options)

            def finish(r):
                if r.error:
                    return done(FitResult(r.galaxy, np.zeros((0, len(model.names))),
                                          np.zeros(0), {}, np.nan,
                                          {"sampler": "ensemble", "ncall": r.ncall},
                                          False, None, r.error))
                gal = np.full(len(r.samples), r.galaxy)
                if shear:
                    theta, ll = prob.theta_from_shear(r.samples, gal)
                else:
                    theta = prob.theta_from_unit(special.ndtr(r.samples), gal)
                    ll = (r.log_prob + 0.5 * np.sum(r.samples ** 2, axis=1)
                          + prob.nfree * LOG_SQRT2PI)
                done(prob.finish(r.galaxy, theta, ll, {
                    "sampler": "ensemble", "coords": "shear" if shear else "probit", "tau": r.tau,
                    "rhat": r.rhat, "ess": r.ess, "nsteps": r.nsteps, "ncall": r.ncall,
                    "acceptance": r.acceptance, "resets": r.resets}, r.converged))
            s.run(range(G) if keep else galaxies, callback=finish, keep=False)
        elif sampler == "dynesty":
            def finish(r):
                gal = np.full(len(r.samples), r.galaxy)
                if shear:
                    theta, ll = prob.theta_from_shear_unit(r.samples, gal)
                else:
                    theta, ll = prob.theta_from_unit(r.samples, gal), r.log_like
                done(prob.finish(r.galaxy, theta, ll, {
                    "sampler": "dynesty", "coords": "shear" if shear else "unit",
                    "logz": r.logz, "logzerr": r.logzerr, "ncall": r.ncall,
                    "niter": r.niter, "ess": r.ess}, r.converged))
            run_nested(prob.loglike_shear_unit if shear else prob.loglike_unit, prob.nfree,
                       range(G) if keep else galaxies, seed=seed,
                       nsamples=nsamples, callback=finish, **stream, **options)
        else:
            raise ValueError(f"unknown sampler {sampler!r}: use 'ensemble' or 'dynesty'")
    return out


def fit_ensemble(model: Model, emulator, flux, err, zred=None, mask=None, floor: float = 0.05,
                 zeropoints=None, seed: int = 0, callback=None, **sampler_options) -> list:
    """:func:`fit_batch` with the ensemble sampler."""
    return fit_batch(model, emulator, flux, err, zred, mask, floor, zeropoints, "ensemble",
                     seed, callback=callback, **sampler_options)


def fit_dynesty(model: Model, emulator, flux, err, zred=None, mask=None, floor: float = 0.05,
                zeropoints=None, seed: int = 0, callback=None, **options) -> list:
    """:func:`fit_batch` with dynesty per galaxy."""
    return fit_batch(model, emulator, flux, err, zred, mask, floor, zeropoints, "dynesty",
                     seed, callback=callback, **options)
