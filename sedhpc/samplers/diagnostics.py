"""Convergence diagnostics for ensemble chains: integrated autocorrelation time (Goodman &
Weare 2010 / emcee: FFT autocorrelation of the walker-averaged chain, Sokal's automatic window)
and split R-hat (Gelman et al. 2013) across walkers, both vectorised over galaxies."""

from __future__ import annotations

import numpy as np
from scipy import fft as _fft


def autocorr_time(chain: np.ndarray, c: float = 5.0) -> np.ndarray:
    """Integrated autocorrelation time per galaxy and parameter.

    ``chain``: (T, G, W, d) samples (steps, galaxies, walkers, parameters) → τ (G, d). The
    autocorrelation function is averaged over walkers (emcee's estimator); the sum is cut at
    the smallest M ≥ c τ(M). The FFTs run in single precision (the chains are stored in
    float32), the sums in double; scipy's transforms along contiguous time series, zero-padded
    to the next fast length ≥ 2T rather than the next power of two (tools/bench/bench_checks.py:
    τ equal to 2e-7)."""
    T = chain.shape[0]
    x = (chain - chain.mean(axis=0, keepdims=True, dtype=np.float64)).astype(np.float32)
    x = np.ascontiguousarray(np.moveaxis(x, 0, -1))  # (G, W, d, T)
    n = _fft.next_fast_len(2 * T, real=True)
    f = _fft.rfft(x, n=n, axis=-1)
    f *= np.conj(f)
    acf = np.moveaxis(_fft.irfft(f, n=n, axis=-1)[..., :T], -1, 0)  # (T, G, W, d)
    acf = acf.mean(axis=2, dtype=np.float64)  # over walkers → (T, G, d)
    acf /= np.where(acf[0] > 0, acf[0], 1.0)
    taus = 2.0 * np.cumsum(acf, axis=0) - 1.0  # (T, G, d)
    m = np.arange(T)[:, None, None]
    ok = m >= c * taus
    window = np.where(ok.any(axis=0), ok.argmax(axis=0), T - 1)  # (G, d)
    return np.take_along_axis(taus, window[None], axis=0)[0]


def split_rhat(chain: np.ndarray) -> np.ndarray:
    """Split R-hat per galaxy and parameter with walkers as chains: (T, G, W, d) → (G, d)."""
    T = chain.shape[0] // 2 * 2
    half = T // 2
    parts = np.concatenate([chain[:half], chain[half:T]], axis=2)  # (T/2, G, 2W, d)
    n = parts.shape[0]
    means = parts.mean(axis=0)  # (G, 2W, d)
    within = parts.var(axis=0, ddof=1).mean(axis=1)  # (G, d)
    between = n * means.var(axis=1, ddof=1)
    var = (n - 1) / n * within + between / n
    return np.sqrt(var / np.where(within > 0, within, np.inf))
