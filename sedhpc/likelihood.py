"""Photometric likelihood for batches of (galaxy, proposal) pairs, one kernel call per batch.

Gaussian in maggies (seed eq. 9, MODEL.md): per band
    σ² = σ_obs² + (f_floor · x_obs)² + σ_emu²,
    σ_emu = (2b/a) σ_u sqrt(1 + x²/(4b²))
with σ_u the emulator's σ in arsinh magnitudes (its parameter-dependent model at θ, or the
test-set residual σ per band) propagated to flux at the model flux x, the error floor f_floor
(default 0.05, Leja et al. 2019), and optional multiplicative per-band zeropoint corrections
applied to the observed fluxes and errors. Bands masked for a
galaxy contribute nothing. The emulator runs in float32; residuals and sums are float64.
Everything runs in the emulator's array module (numpy, or CuPy on a GPU: the observations are
copied to the device once, and θ, galaxy indices and log L stay there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .photometry import A, B, U0

LN2PI = float(np.log(2 * np.pi))


@dataclass
class Observations:
    """Photometry of G galaxies in the emulator's bands, validated.

    ``flux``, ``err``: (G, nbands) maggies; ``mask``: (G, nbands) True where the band is used.
    Bands with non-finite flux, or non-finite or non-positive errors, are masked; ``bad_error``
    flags the galaxies where an error was non-positive or non-finite (the flux being present).
    Negative fluxes are valid measurements."""
    flux: np.ndarray
    err: np.ndarray
    mask: np.ndarray
    bad_error: np.ndarray

    @classmethod
    def build(cls, flux, err, mask=None) -> "Observations":
        flux = np.atleast_2d(np.asarray(flux, float))
        err = np.atleast_2d(np.asarray(err, float))
        if flux.shape != err.shape:
            raise ValueError(f"flux {flux.shape} and err {err.shape} must have the same shape "
                             "(galaxies, bands)")
        use = np.ones(flux.shape, bool) if mask is None else np.asarray(mask, bool).copy()
        if use.shape != flux.shape:
            raise ValueError(f"mask {use.shape} must match flux {flux.shape}")
        finite = np.isfinite(flux)
        good_err = np.isfinite(err) & (err > 0)
        bad_error = np.any(use & finite & ~good_err, axis=1)
        use &= finite & good_err
        return cls(np.where(use, flux, 0.0), np.where(use, err, 1.0), use, bad_error)

    @property
    def ngal(self) -> int:
        return self.flux.shape[0]

    @property
    def nbands_used(self) -> np.ndarray:
        return self.mask.sum(axis=1)


class Likelihood:
    """log L for rows of θ belonging to galaxies of an :class:`Observations` batch.

    ``emulator``: a :class:`sedhpc.emulator.Emulator` whose bands are the observed bands, in
    order; ``floor``: fractional error floor; ``zeropoints``: (nbands,) multiplicative
    corrections to the observed fluxes (default 1); ``sigma_emu``: (nbands,) emulator σ in arsinh
    mag (default: the emulator's own — its parameter-dependent σ model at each row's θ when the
    file has one (:mod:`sedhpc.emulator.errors`), else the test-set σ of the window(s) at each
    row's redshift, blended like the predictions; 0 to switch the term off)."""

    def __init__(self, emulator, obs: Observations, floor: float = 0.05, zeropoints=None,
                 sigma_emu=None):
        nb = len(emulator.bands)
        if obs.flux.shape[1] != nb:
            raise ValueError(f"observations have {obs.flux.shape[1]} bands, the emulator "
                             f"{nb} ({emulator.bands})")
        if not 0 <= floor < 1:
            raise ValueError(f"error floor must be a fraction in [0, 1); got {floor}")
        self.emulator, self.obs, self.floor = emulator, obs, float(floor)
        zp = np.ones(nb) if zeropoints is None else np.asarray(zeropoints, float)
        if zp.shape != (nb,) or np.any(~np.isfinite(zp) | (zp <= 0)):
            raise ValueError(f"zeropoints must be {nb} positive factors; got {zeropoints}")
        self.sigma_u = None if sigma_emu is None else np.broadcast_to(
            np.asarray(sigma_emu, float), (nb,)).copy()
        xp = self.xp = emulator.xp
        x_obs = obs.flux * zp
        self.x_obs = xp.asarray(x_obs)
        self.var_obs = xp.asarray((obs.err * zp) ** 2 + (self.floor * x_obs) ** 2)
        self.mask = xp.asarray(obs.mask)
        if self.sigma_u is not None:
            self.sigma_u = xp.asarray(self.sigma_u)
        self.ncalls = 0

    def model_maggies(self, theta, group: int | None = None, sigma: bool = True):
        """Emulated fluxes (n, nbands) float64, the 'inside training ranges' flags (n,) and
        the emulator σ per row and band [mag] (n, nbands; None with ``sigma`` False).
        ``group``: see :meth:`sedhpc.emulator.Emulator.predict`."""
        xp = self.xp
        theta = xp.asarray(theta)
        pred = self.emulator.predict(theta, group)
        u = pred.mags.astype(xp.float64)
        return 2.0 * B * xp.sinh((U0 - u) / A), pred.inside, (
            self.emulator_sigma(theta, group) if sigma else None)

    def emulator_sigma(self, theta, group: int | None = None):
        """The emulator σ [mag] (n, nbands) at ``theta``: its own, or the ``sigma_emu`` given."""
        xp = self.xp
        if self.sigma_u is None:
            return self.emulator.sigma_for(xp.asarray(theta), group)
        return xp.broadcast_to(self.sigma_u, (theta.shape[0], len(self.sigma_u)))

    def log_amplitude(self, x, galaxy):
        """log10 of the flux scale a (n,) that best fits rows of model fluxes ``x`` (n, nbands)
        to their galaxies' observed fluxes, weighted by the observational variances (least
        squares, a = Σ x_obs x / σ² ÷ Σ x² / σ² over the used bands), clipped to [10⁻³⁰, 10³⁰].
        A deterministic function of ``x`` and the data: the mass-shear coordinates of the
        ensemble sampler (:class:`sedhpc.samplers.fit.Problem`) are centred on it."""
        xp = self.xp
        galaxy = xp.asarray(galaxy, dtype=xp.int64)
        w = xp.where(self.mask[galaxy], 1.0 / self.var_obs[galaxy], 0.0) * x
        a = xp.sum(w * self.x_obs[galaxy], axis=1) / xp.maximum(xp.sum(w * x, axis=1), 1e-300)
        return xp.log10(xp.clip(xp.where(xp.isfinite(a), a, 1.0), 1e-30, 1e30))

    def loglike_from(self, x, inside, sigma_u, galaxy):
        """log L (n,) of model fluxes ``x`` (n, nbands) with emulator σ ``sigma_u`` [mag] for
        rows of ``galaxy``; −inf where ``inside`` is False."""
        xp = self.xp
        galaxy = xp.asarray(galaxy, dtype=xp.int64)
        var = self.variance(x, galaxy, sigma_u)
        r = (self.x_obs[galaxy] - x) ** 2 / var + xp.log(var) + LN2PI
        ll = -0.5 * xp.sum(xp.where(self.mask[galaxy], r, 0.0), axis=1)
        return xp.where(inside, ll, -xp.inf)

    def variance(self, x, galaxy, sigma_u) -> np.ndarray:
        """σ² (n, nbands) [maggies²] at model fluxes ``x`` for rows of ``galaxy``, with the
        emulator σ ``sigma_u`` (n, nbands) [mag]."""
        s_emu = (2.0 * B / A) * sigma_u * self.xp.sqrt(1.0 + (x / (2.0 * B)) ** 2)
        return self.var_obs[galaxy] + s_emu ** 2

    def __call__(self, theta, galaxy, group: int | None = None) -> np.ndarray:
        """``theta`` (n, d) rows for galaxies ``galaxy`` (n,) int → log L (n,) float64; one
        emulator call for all rows. Rows outside the emulator's training ranges get −inf.
        ``group`` = R: the rows come in runs of R whose values must not depend on the other
        rows of the call (bit for bit; :meth:`sedhpc.emulator.Emulator.predict`)."""
        theta = self.xp.asarray(theta)
        self.ncalls += theta.shape[0]
        x, inside, sig = self.model_maggies(theta, group)
        return self.loglike_from(x, inside, sig, galaxy)

    def chi2(self, theta, galaxy) -> np.ndarray:
        """χ² (n,) of the rows (without the normalisation terms)."""
        xp = self.xp
        galaxy = xp.asarray(galaxy, dtype=xp.int64)
        x, _, sig = self.model_maggies(theta)
        r = (self.x_obs[galaxy] - x) ** 2 / self.variance(x, galaxy, sig)
        return xp.sum(xp.where(self.mask[galaxy], r, 0.0), axis=1)
