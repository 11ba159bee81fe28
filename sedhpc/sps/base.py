"""The SPS backend protocol: parameters (n, d) → arsinh magnitudes (n, nbands), log10 mfrac (n,).

A backend computes one observed-frame spectrum per parameter vector (``spectrum``) and shares the
projection onto bands (a precomputed filter matrix, :class:`sedhpc.photometry.FilterSet`) and the
validation of inputs. Backends are built once per process (SPS set-up is slow and holds large
grids) and are not pickled.
"""

from __future__ import annotations

import abc

import numpy as np

from ..model import Model
from ..photometry import FilterSet, arsinh_mag


class SPSBackend(abc.ABC):
    """Base class. Subclasses implement :meth:`spectrum` for one parameter vector."""

    name = "sps"

    def __init__(self, model: Model, filters: FilterSet | list[str] | str):
        self.model = model
        self.filters = filters if isinstance(filters, FilterSet) else FilterSet(filters)

    @property
    def bands(self) -> list[str]:
        return list(self.filters.names)

    @abc.abstractmethod
    def spectrum(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """One model: ``theta`` (d,) → (observed wavelengths [Å] (nλ,), f_λ [erg s⁻¹ cm⁻² Å⁻¹]
        (nλ,), log10 surviving-mass fraction)."""

    def maggies(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``theta`` (n, d) → (maggies (n, nbands), log10 mfrac (n,)). Raises ValueError naming
        the parameter for invalid input."""
        theta = self.model.validate(theta)
        out = np.empty((theta.shape[0], len(self.filters.names)))
        logmf = np.empty(theta.shape[0])
        for i, row in enumerate(theta):
            wave, flam, logmf[i] = self.spectrum(row)
            out[i] = self.filters.maggies_from_flambda(wave, flam)
        return out, logmf

    def photometry(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``theta`` (n, d) → (arsinh magnitudes (n, nbands), log10 mfrac (n,))."""
        x, logmf = self.maggies(theta)
        return arsinh_mag(x), logmf
