"""Fit a batch of galaxies with the emulator likelihood and the ensemble sampler: arrays in,
per-galaxy equal-weight posterior samples, derived quantities and diagnostics out. No files, no
MPI: the catalog engine drives this."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..likelihood import Likelihood, Observations
from ..model import Model, Uniform, sfh
from .ensemble import EnsembleSampler


@dataclass
class FitResult:
    """One galaxy: ``samples`` (N, d) full parameter vectors (fixed ones included), their
    ``log_prob``, ``derived`` {name: (N,)} (logmstar, sfr100 [Msun/yr], mwa_gyr), the best
    sample's χ², and the sampler's diagnostics."""
    galaxy: int
    samples: np.ndarray
    log_prob: np.ndarray
    derived: dict
    chi2_best: float
    diagnostics: dict = field(default_factory=dict)
    converged: bool = True


def derived_quantities(model: Model, theta: np.ndarray, log_mfrac: np.ndarray) -> dict:
    """Stellar mass (mass formed × mfrac), SFR over the last 100 Myr, mass-weighted age."""
    i = model.index
    z = theta[:, i("zred")]
    masses = sfh.bin_masses(theta[:, i("logmass")],
                            theta[:, [i(f"logsfr_ratios_{k}") for k in range(1, 7)]], z)
    return {"logmstar": theta[:, i("logmass")] + log_mfrac, "sfr100": sfh.sfr_over(masses, z),
            "mwa_gyr": sfh.mass_weighted_age(masses, z)}


def photoz_model(model: Model, emulator) -> Model:
    """``model`` with redshift free, uniform over the emulator's redshift range."""
    zlo, zhi = emulator.zrange
    b = model.bounds[model.index("zred")]
    return model.with_fixed((), {"zred": Uniform(max(zlo, b[0]), min(zhi, b[1]))})


def fit_ensemble(model: Model, emulator, flux, err, zred=None, mask=None, floor: float = 0.05,
                 zeropoints=None, seed: int = 0, callback=None, **sampler_options) -> list:
    """Fit G galaxies: ``flux``, ``err`` (G, nbands) maggies in the emulator's bands;
    ``zred`` (G,) for models with redshift fixed (ignored when it is free); ``mask`` (G, nbands)
    True where a band is used. Returns a FitResult per galaxy (in input order)."""
    if list(emulator.param_names) != list(model.names):
        raise ValueError(f"emulator parameters {emulator.param_names} differ from model "
                         f"{model.name!r}'s {model.names}")
    obs = Observations.build(flux, err, mask)
    lik = Likelihood(emulator, obs, floor=floor, zeropoints=zeropoints)
    G, d = obs.ngal, model.ndim
    fixed = np.zeros((G, len(model.fixed)))
    if model.fixed:
        if zred is None or model.fixed != ("zred",):
            raise ValueError(f"model {model.name!r} holds {list(model.fixed)} fixed: give zred "
                             "per galaxy (or fit with redshift free)")
        fixed[:, 0] = np.asarray(zred, float)
    free = model.free_index

    def full(x, gal):
        theta = np.empty((len(x), d))
        theta[:, free] = x
        theta[:, model.fixed_index] = fixed[gal]
        return theta

    def log_prob(x, gal):
        theta = full(x, gal)
        lp = model.log_prob(theta)
        ok = np.isfinite(lp)
        if ok.any():
            lp[ok] += lik(theta[ok], gal[ok])
        return lp

    def init(rng, g, n):
        return model.unit_transform(rng.random((n, len(free))), fixed[g])[:, free]

    sampler = EnsembleSampler(log_prob, init, len(free), seed=seed, **sampler_options)
    out = [None] * G

    def finish(r):
        theta = full(r.samples, np.full(len(r.samples), r.galaxy))
        pred = emulator.predict(theta)
        best = int(np.argmax(r.log_prob))
        chi2 = float(lik.chi2(theta[best:best + 1], np.array([r.galaxy]))[0])
        out[r.galaxy] = FitResult(
            r.galaxy, theta, r.log_prob, derived_quantities(model, theta,
                                                            np.asarray(pred.log_mfrac, float)),
            chi2, {"tau": r.tau, "rhat": r.rhat, "ess": r.ess, "nsteps": r.nsteps,
                   "ncall": r.ncall, "acceptance": r.acceptance,
                   "nbands": int(obs.nbands_used[r.galaxy]),
                   "bad_error": bool(obs.bad_error[r.galaxy])}, r.converged)
        if callback:
            callback(out[r.galaxy])
    sampler.run(range(G), callback=finish)
    return out
