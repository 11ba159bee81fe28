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


class ColourOOD:
    """``COLOUR_OOD``: the observed colours lie far outside the emulator's training
    distribution (seed 003, Section 2), judged without any fit.

    Statistic: the distance to the k-th nearest training neighbour in colour space, measured as
    a χ² with a free normalisation (so it uses colours, not brightness, and weights each band
    by its error): for ``nref`` fixed draws from the training distribution (``mix`` × prior +
    uniform, the emulator's), emulated at the galaxy's redshift (at their own redshifts in
    photo-z mode), χ²_j = min_c Σ_b (x_b − c r_jb)² / (σ_b² + (f x_b)²) over the galaxy's
    bands; the statistic is the k-th smallest χ²_j divided by ν = bands − 1.

    Threshold: the ``quantile`` of the same statistic for ``ncal`` held-out draws of the
    training distribution (independent of the references) with noise σ² = (f·x)² + (5σ depth
    ``depth`` AB / 5)² in every band (a deep survey: the threshold is then conservative for
    shallower data, whose larger errors shrink the statistic), calibrated once per band set (seeded, so every rank, shard and rerun agrees). A galaxy is
    flagged when its statistic exceeds the threshold; galaxies with fewer than three bands are
    not judged."""

    def __init__(self, model, emulator, zfree: bool = False, nref: int = 1024, k: int = 5,
                 quantile: float = 0.999, ncal: int = 4000, floor: float = 0.05,
                 mix: float = 0.5, depth: float = 28.0, seed: int = 20261124,
                 batch: int = 65536):
        if not 1 <= k < nref:
            raise ValueError(f"need 1 ≤ k < nref; got k={k}, nref={nref}")
        self.emulator, self.k, self.floor, self.zfree = emulator, int(k), float(floor), zfree
        self.iz = model.index("zred")
        self.batch = int(batch)
        dist = model.training_distribution(mix, zrange=emulator.zrange)
        ss = np.random.SeedSequence(seed)
        r_ref, r_cal, r_noise = (np.random.default_rng(s) for s in ss.spawn(3))
        self.theta = dist.sample(r_ref, nref)
        self.ref_fixed = self._maggies(self.theta) if zfree else None
        # held-out calibration: groups of 100 draws share a redshift (and its references)
        ncal = max(100, int(ncal))
        hold = dist.sample(r_cal, ncal)
        if not zfree:
            hold[:, self.iz] = np.repeat(hold[::100, self.iz], 100)[:ncal]
        x = self._maggies(hold)
        e = np.sqrt((self.floor * x) ** 2 + (10 ** (-0.4 * depth) / 5) ** 2)
        x = x + e * r_noise.standard_normal(x.shape)
        stat = self.statistic(x, np.full_like(x, 10 ** (-0.4 * depth) / 5),
                              np.ones(x.shape, bool), hold[:, self.iz])
        self.threshold = float(np.quantile(stat, quantile))
        self.quantile, self.nref, self.ncal = quantile, nref, ncal

    def _maggies(self, theta) -> np.ndarray:
        from .photometry import arsinh_to_maggies
        from .samplers.ensemble import _host

        out = []
        for i in range(0, theta.shape[0], self.batch):
            u = _host(self.emulator.predict(self.emulator.xp.asarray(theta[i:i + self.batch]))
                      .mags).astype(float)
            out.append(arsinh_to_maggies(u))
        return np.concatenate(out)

    def _refs(self, z) -> np.ndarray:
        """(nref, nbands) reference maggies at redshift z."""
        th = self.theta.copy()
        th[:, self.iz] = z
        return self._maggies(th)

    def statistic(self, flux, err, mask, zred=None) -> np.ndarray:
        """χ²_k / ν per galaxy (NaN with fewer than three bands); ``flux``, ``err``, ``mask``
        (n, nbands) maggies in the emulator's bands, ``zred`` (n,) when redshifts are fixed."""
        flux, err = np.asarray(flux, float), np.asarray(err, float)
        mask = np.asarray(mask, bool) & np.isfinite(flux) & np.isfinite(err)
        n = flux.shape[0]
        stat = np.full(n, np.nan)
        nu = mask.sum(axis=1) - 1
        x = np.where(mask, flux, 0.0)
        w = np.where(mask, 1.0 / np.maximum(np.where(mask, err, 1.0) ** 2
                                            + (self.floor * x) ** 2, 1e-300), 0.0)
        if self.zfree:
            groups = [(np.arange(n), self.ref_fixed)]
        else:
            z = np.asarray(zred, float)
            groups = []
            for zz in np.unique(z[np.isfinite(z) & (nu >= 2)]):
                groups.append((np.flatnonzero(z == zz), self._refs(zz)))
        for rows, r in groups:
            rows = rows[nu[rows] >= 2]
            if rows.size == 0:
                continue
            wx, ww = w[rows] * x[rows], w[rows]
            s = np.sum(wx * x[rows], axis=1)[:, None]
            a = wx @ r.T                      # Σ w x r   (rows, nref)
            c = ww @ (r * r).T                # Σ w r²
            chi2 = s - np.where(a > 0, a * a / np.maximum(c, 1e-300), 0.0)
            kth = np.partition(chi2, self.k - 1, axis=1)[:, self.k - 1]
            stat[rows] = kth / nu[rows]
        return stat

    def flags(self, flux, err, mask, zred=None) -> np.ndarray:
        """(n,) bool: colours outside the training distribution."""
        s = self.statistic(flux, err, mask, zred)
        return np.isfinite(s) & (s > self.threshold)
