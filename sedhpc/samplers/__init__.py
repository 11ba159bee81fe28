"""Samplers: a batched affine-invariant ensemble MCMC over many galaxies at once
(:mod:`.ensemble`), with convergence diagnostics (:mod:`.diagnostics`)."""

from .diagnostics import autocorr_time, split_rhat
from .ensemble import EnsembleResult, EnsembleSampler

__all__ = ["EnsembleSampler", "EnsembleResult", "autocorr_time", "split_rhat"]
