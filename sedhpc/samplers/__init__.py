"""Samplers: a batched affine-invariant ensemble MCMC over many galaxies at once
(:mod:`.ensemble`), with convergence diagnostics (:mod:`.diagnostics`)."""

from .diagnostics import autocorr_time, split_rhat
from .ensemble import EnsembleResult, EnsembleSampler
from .fit import FitResult, derived_quantities, fit_ensemble, photoz_model

__all__ = ["EnsembleSampler", "EnsembleResult", "autocorr_time", "split_rhat", "FitResult",
           "fit_ensemble", "derived_quantities", "photoz_model"]
