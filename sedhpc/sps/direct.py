"""The SPS itself behind the emulator interface, for fits that call the SPS directly (the
reference of emulator-vs-SPS validation, seed Sections 3.2 and 4.2).

:class:`DirectSPS` has what :class:`sedhpc.likelihood.Likelihood` and the samplers use of an
:class:`sedhpc.emulator.Emulator` — ``param_names``, ``bands``, ``xp``, ``zrange``,
``predict(θ, group) → Prediction``, ``sigma_at(z)`` and ``sigma_for(θ, group)`` (zero: no
emulator error; ``group`` is accepted and needs nothing: every row is computed alone) — and
computes every row with the SPS backend, one spectrum at a time (tens of ms each for the
embedded SPS, so a nested-sampling fit costs minutes to hours; run it through the MPI engine).
Rows outside the model's prior support, or where the SPS fails, come back with ``inside``
False (log L = −inf).

The SPS is linear in the mass formed (fluxes ∝ 10^logmass, the surviving mass fraction
independent of it; tested), so :attr:`DirectSPS.mass_ref` is set and the samplers use their
mass-shear coordinates with a direct SPS as with a mass-normalised emulator: the SPS runs at one
reference mass per θ and the fluxes are scaled (docs/VALIDATION.md (a): in the prior's probit
coordinates, twelve high-S/N mocks all hit the ensemble's 5,000-step cap).
"""

from __future__ import annotations

import numpy as np

from ..photometry import FilterSet, arsinh_mag
from . import get_backend, resolve_dl07


class DirectSPS:
    """``backend``: 'embedded' or 'fsps'; ``bands``: band specs (the catalog's, in order);
    ``dl07``: the embedded SPS's DL07 qpah sequence (None: the default)."""

    xp = np

    def __init__(self, backend: str, bands, dl07: str | None = None):
        self.dl07 = resolve_dl07(backend, dl07)
        self.backend = get_backend(backend, FilterSet(list(bands)), self.dl07)
        self.model = self.backend.model
        self.param_names = list(self.model.names)
        self.bands = list(self.backend.bands)
        self.name = f"sps:{backend}:{self.dl07}"
        self.ncalls = 0
        # "training ranges" = the prior's support (no edges inside it: no OUT_OF_RANGE flags)
        self.lo = np.array(self.model.bounds[:, 0], float)
        self.hi = np.array(self.model.bounds[:, 1], float)

    @property
    def mass_ref(self) -> float | None:
        """Fluxes scale exactly as 10^logmass (see the module docstring): the middle of the
        logmass range, or None for a model without logmass."""
        if "logmass" not in self.param_names:
            return None
        k = self.param_names.index("logmass")
        return 0.5 * float(self.lo[k] + self.hi[k])

    @property
    def zrange(self) -> tuple[float, float]:
        b = self.model.bounds[self.model.index("zred")]
        return float(b[0]), float(b[1])

    def sigma_at(self, z):
        return np.zeros((np.shape(z)[0], len(self.bands)))

    def sigma_for(self, theta, group=None):
        return np.zeros((np.shape(theta)[0], len(self.bands)))

    def predict(self, theta, group=None):
        from ..emulator.kernel import Prediction

        theta = np.atleast_2d(np.asarray(theta, float))
        n = theta.shape[0]
        mags = np.full((n, len(self.bands)), np.nan)
        logmf = np.full(n, np.nan)
        lo, hi = self.model.bounds[:, 0], self.model.bounds[:, 1]
        inside = np.all(np.isfinite(theta) & (theta >= lo) & (theta <= hi), axis=1)
        for i in np.flatnonzero(inside):
            try:
                x, lm = self.backend.maggies(theta[i:i + 1])
                mags[i], logmf[i] = arsinh_mag(x[0]), lm[0]
            except (ValueError, FloatingPointError):
                inside[i] = False
        self.ncalls += n
        inside &= np.all(np.isfinite(mags), axis=1)
        return Prediction(mags, logmf, inside)

    def __call__(self, theta, group=None):
        return self.predict(theta)
