"""Non-parametric 7-bin ("continuity") star-formation history of Prospector-α (Leja et al. 2019).

Bin edges are in log10 lookback time [yr] and depend on redshift through the age of the universe
t_univ(z) (WMAP9): for z ≤ 3, ``[0, 7.47712, linspace(8, log10(0.9 t_univ), 5), log10 t_univ]``;
for z > 3, ``linspace(7.1295, log10(0.9 t_univ), 7)`` then ``log10 t_univ``, first edge set to 0.
(An edge of 0 in log10 is a lookback time of 1 yr, as in Prospector.) SFR is constant within a
bin; bin 1 is the youngest. All functions are vectorised over galaxies.
"""

from __future__ import annotations

import numpy as np

from ..cosmology import age_yr

NBINS = 7


def bin_edges(zred) -> np.ndarray:
    """log10 lookback-time edges [log10 yr] of the 7 bins: (n, 8) for ``zred`` of shape (n,)."""
    z = np.atleast_1d(np.asarray(zred, float))
    tu = np.log10(age_yr(z))
    t90 = tu + np.log10(0.9)
    out = np.empty(z.shape + (NBINS + 1,))
    low = z <= 3.0
    f = np.linspace(0.0, 1.0, 5)
    out[low, 0] = 0.0
    out[low, 1] = 7.47712
    out[low, 2:7] = 8.0 + f * (t90[low, None] - 8.0)
    f7 = np.linspace(0.0, 1.0, 7)
    out[~low, :7] = 7.1295 + f7 * (t90[~low, None] - 7.1295)
    out[~low, 0] = 0.0
    out[:, 7] = tu
    return out


def bin_widths(zred) -> np.ndarray:
    """Bin durations Δt_i [yr]: (n, 7)."""
    return np.diff(10.0 ** bin_edges(zred), axis=-1)


def bin_masses(logmass, logsfr_ratios, zred) -> np.ndarray:
    """Stellar mass formed in each bin [Msun]: (n, 7), summing to 10**logmass.

    ``logsfr_ratios``: (n, 6) log10(SFR_i / SFR_{i+1}); m_i ∝ Δt_i ∏_{j<i} 1/r_j.
    """
    logmass = np.atleast_1d(np.asarray(logmass, float))
    r = np.atleast_2d(np.asarray(logsfr_ratios, float))
    if r.shape[-1] != NBINS - 1:
        raise ValueError(f"logsfr_ratios must have {NBINS - 1} columns; got shape {r.shape}")
    # log10 SFR_i relative to SFR_1: −Σ_{j<i} log r_j
    logsfr = np.concatenate([np.zeros(r.shape[:-1] + (1,)), -np.cumsum(r, axis=-1)], axis=-1)
    logm = logsfr + np.log10(bin_widths(zred))
    logm -= logm.max(axis=-1, keepdims=True)  # avoid overflow for extreme ratios
    m = 10.0 ** logm
    return m / m.sum(axis=-1, keepdims=True) * 10.0 ** logmass[..., None]


def sfr_over(masses, zred, timescale_yr: float = 1e8) -> np.ndarray:
    """SFR averaged over the last ``timescale_yr`` of lookback time [Msun/yr]: (n,)."""
    t = 10.0 ** bin_edges(zred)
    overlap = np.clip(np.minimum(t[:, 1:], timescale_yr) - t[:, :-1], 0.0, None)
    return np.sum(masses / np.diff(t, axis=-1) * overlap, axis=-1) / timescale_yr


def mass_weighted_age(masses, zred) -> np.ndarray:
    """Mass-weighted age [Gyr] (lookback, constant SFR within bins): Σ m_i t̄_i / Σ m_i."""
    t = 10.0 ** bin_edges(zred)
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    return np.sum(masses * mid, axis=-1) / np.sum(masses, axis=-1) / 1e9
