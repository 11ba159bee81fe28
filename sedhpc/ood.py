"""Out-of-distribution flags of a fitted galaxy (seed 003, Section 2)."""

from __future__ import annotations

import numpy as np

from .catalog import Flags


class OOD:
    """Out-of-distribution flags of one fit (seed 003, Section 2):

    - ``OUT_OF_RANGE``: the posterior piles up at an emulator training-range edge that lies
      inside the prior's support by more than 1 % of the prior's range (≥ ``edge_frac`` of the
      samples within 2 % of the training range of that edge): the data want parameters the
      emulator was not trained on;
    - ``BAD_CHI2``: the best sample's χ² is improbable for the bands used,
      P(χ²_nbands > χ²) < ``p_chi2`` (conservative: the fit's own degrees of freedom are not
      subtracted)."""

    def __init__(self, model, emulator, edge_frac: float = 0.2, p_chi2: float = 1e-3):
        from .samplers.ensemble import _host

        self.p_chi2, self.edge_frac = p_chi2, edge_frac
        self.edges = []
        if hasattr(emulator, "lo"):
            lo, hi = _host(emulator.lo).astype(float), _host(emulator.hi).astype(float)
            b = model.bounds
            for k in model.free_index:  # edges at least 1 % of the prior's range inside it
                w, gap = 0.02 * (hi[k] - lo[k]), 0.01 * (b[k, 1] - b[k, 0])
                if lo[k] > b[k, 0] + gap:
                    self.edges.append((k, lo[k], lo[k] + w))
                if hi[k] < b[k, 1] - gap:
                    self.edges.append((k, hi[k] - w, hi[k]))

    def flags(self, res, nbands: int) -> int:
        from scipy.stats import chi2

        f = 0
        for k, a, b in self.edges:
            if np.mean((res.samples[:, k] >= a) & (res.samples[:, k] <= b)) >= self.edge_frac:
                f |= Flags.OUT_OF_RANGE
        if nbands and chi2.sf(res.chi2_best, nbands) < self.p_chi2:
            f |= Flags.BAD_CHI2
        return int(f)
