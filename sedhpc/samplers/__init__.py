"""Samplers: a batched affine-invariant ensemble MCMC over many galaxies at once
(:mod:`.ensemble`), dynesty per galaxy with batched likelihood calls (:mod:`.nested`),
convergence diagnostics (:mod:`.diagnostics`) and the batch-fit library call (:mod:`.fit`)."""

from .diagnostics import autocorr_time, split_rhat
from .ensemble import EnsembleResult, EnsembleSampler
from .fit import (FitResult, Problem, derived_quantities, fit_batch, fit_dynesty, fit_ensemble,
                  photoz_model, pz_summary)
from .nested import BatchDispatcher, NestedResult, run_nested

__all__ = ["EnsembleSampler", "EnsembleResult", "autocorr_time", "split_rhat", "FitResult",
           "Problem", "fit_batch", "fit_ensemble", "fit_dynesty", "derived_quantities",
           "photoz_model", "pz_summary", "BatchDispatcher", "NestedResult", "run_nested"]
