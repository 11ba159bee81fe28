"""Batched emulator inference, written once against an array module (numpy or CuPy).

The forward pass of Mathews et al. (2023): x = (θ − mean)/std → L hidden layers
h ← GELU(h W + b) → linear output → + y_mean (σ = 1), giving arsinh magnitudes per band and
log10 mfrac. GELU uses the tanh approximation written as x·sigmoid(1.5957691(x + 0.044715x³))
(identical, and the cheapest form in numpy); all operations run in place on preallocated
buffers, rows in cache-sized blocks. A band subset is chosen at load time by slicing the last
layer. :class:`Emulator` evaluates any number of redshift windows with the sin²/cos² stitching
weights of MODEL.md, evaluating only the windows a batch needs.

Reproducibility: a BLAS matrix product's result for one row can depend on the other rows of
the call (OpenBLAS 0.3.31 computes a single row as a matrix–vector product, and the skinny
output layer (few bands) with another kernel above ~100 rows), so the same θ can differ in the
last bits between batches. ``predict(theta, group=R)`` makes each row's result depend only on
its run of R consecutive rows: the output layer is a stacked product per group, and the hidden
layers run as one flat product only if a probe (once per R, :meth:`_MLP.hidden_flat_ok`) finds
this BLAS giving every row of such products bit for bit as the group's own product, else as a
stacked product per group too. For 16 or more galaxies of 16–18 rows the kernel then takes
≈ 0.5× the time of per-group products in every layer, and ensemble fits 0.78–0.83× the CPU
(docs/BENCHMARKS.md, "Samplers"). The ensemble sampler passes its
per-galaxy proposals that way, so a galaxy's chain is bit-identical whatever galaxies share the
batch (one process or many MPI ranks, a resumed run).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..photometry import A, U0, arsinh_to_maggies
from . import io

GELU_K = 1.5957691216057308  # 2·sqrt(2/π)


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy imports, sees a GPU and can allocate on it."""
    try:
        import cupy

        if not cupy.cuda.is_available():
            return False
        cupy.zeros(1).sum()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable GPU
        return False


def array_module(xp=None):
    """numpy or cupy: ``xp`` may be a module, 'numpy', 'cupy' or None (CuPy when a GPU is
    usable, else numpy)."""
    if xp is None:
        xp = "cupy" if gpu_available() else "numpy"
    if isinstance(xp, str):
        if xp == "numpy":
            return np
        if xp == "cupy":
            if not gpu_available():
                raise RuntimeError("xp='cupy' asked for, but CuPy sees no usable GPU "
                                   "(pip install 'sedhpc[gpu]' on a machine with CUDA)")
            import cupy
            return cupy
        raise ValueError(f"array module must be 'numpy' or 'cupy'; got {xp!r}")
    return xp


@dataclass
class Prediction:
    """Emulator outputs for n inputs: arsinh magnitudes (n, nbands), log10 mfrac (n,) and
    ``inside`` (n,) — False where a parameter lies outside the ranges trained on."""
    mags: object
    log_mfrac: object
    inside: object

    @property
    def maggies(self):
        return arsinh_to_maggies(self.mags)


def scale_mass(u, dlogm, xp=np, out=None):
    """Arsinh magnitudes ``u`` (n, k) of a source scaled in flux by k = 10^``dlogm`` (n,):
    u0 − A·asinh(k·sinh(v)), v = (u0 − u)/A, exact at any flux (−2.5·dlogm where x ≫ b).

    Computed in ``u``'s dtype as u − sign(v)·(2.5·dlogm + A·c) with
    c = asinh(k sinh|v|) − |v| − ln k = ln(w + sqrt(w² + e^{−2|v|}/k²)), w = (1 − e^{−2|v|})/2:
    one exp, one sqrt, one log per element (float32 SIMD; ≈ 5× faster than sinh + arcsinh in
    float64); the magnitude itself is never recomputed from u0, so the result keeps float32's
    precision (≈ 1 ulp; 1e−14 mag in float64). Writes into ``out`` (may be ``u``) if given."""
    dt = u.dtype.type
    t = dt(U0) - u                                    # A·v
    q = xp.abs(t)
    q *= dt(-2.0 / A)
    xp.exp(q, out=q)                                  # e^{−2|v|}
    w = dt(1.0) - q
    w *= dt(0.5)
    q *= (10.0 ** (-2.0 * dlogm)).astype(u.dtype)[:, None]
    s = xp.multiply(w, w)
    s += q
    xp.sqrt(s, out=s)
    s += w
    xp.log(s, out=s)                                  # c
    s *= dt(A)
    s += (2.5 * dlogm).astype(u.dtype)[:, None]
    s *= xp.sign(t, out=t)
    return xp.subtract(u, s, out=out)                 # u0 − t − sign(t)·(2.5·dlogm + A·c)


class _MLP:
    """One network on one array module, with per-batch-size buffers."""

    def __init__(self, net: io.Network, columns: np.ndarray, xp, dtype, block: int):
        self.xp, self.dtype, self.block = xp, dtype, block
        self.mass_ref = net.mass_ref
        # inputs the network takes as log10 (e.g. zred: magnitudes change by 5 mag per decade)
        self.log_cols, offsets = net.log_inputs
        # offsets as an array of this dtype once (None when all 0: the plain log10)
        self.log_offsets = xp.asarray(offsets, dtype) if any(offsets) else None
        w = [np.asarray(a, dtype) for a in net.weights]
        b = [np.asarray(a, dtype) for a in net.biases]
        w[-1], b[-1] = w[-1][:, columns], b[-1][columns]
        # fold the input normalisation into the first layer: (θ − m)/s W = θ (W/s) − (m/s) W
        inv = 1.0 / np.asarray(net.x_std, np.float64)
        w0 = np.asarray(net.weights[0], np.float64) * inv[:, None]
        b[0] = (np.asarray(net.biases[0], np.float64)
                - (np.asarray(net.x_mean, np.float64) * inv) @ np.asarray(net.weights[0],
                                                                           np.float64)).astype(dtype)
        w[0] = w0.astype(dtype)
        b[-1] = (b[-1].astype(np.float64) + np.asarray(net.y_mean, np.float64)[columns]).astype(dtype)
        self.W = [xp.asarray(a) for a in w]
        self.b = [xp.asarray(a) for a in b]
        self.nout = len(columns)
        self._buffers: dict[int, tuple] = {}
        self._flat_ok: dict[int, bool] = {}  # group size R → hidden layers may run flat

    def _bufs(self, shape: tuple):
        """Three work arrays of ``shape`` + (width,), kept for the last few shapes used."""
        if shape not in self._buffers:
            xp, width = self.xp, self.W[0].shape[1]
            if len(self._buffers) >= 4:
                self._buffers.pop(next(iter(self._buffers)))
            self._buffers[shape] = tuple(xp.empty(shape + (width,), self.dtype)
                                         for _ in range(3))
        return self._buffers[shape]

    def __call__(self, x, out, group: int | None = None):
        """x: (n, d) in this module's dtype → out (n, nout), in blocks of ``block`` rows; with
        ``group`` = R (n a multiple of R), each row's result depends only on its run of R rows
        (module docstring)."""
        if self.log_cols:
            x = io.to_log(x.copy(), self.log_cols, self.log_offsets, self.xp)
        n = x.shape[0]
        step = self.block if not group else max(1, self.block // group) * group
        with np.errstate(over="ignore"):  # exp overflow → inf → GELU(−large) = −0: exact
            flat = bool(group) and self.hidden_flat_ok(group)
            for s in range(0, n, step):
                xb, ob = x[s:s + step], out[s:s + step]
                if flat:
                    self._block(xb, ob, last_group=group)
                elif group:
                    self._block(xb.reshape(-1, group, xb.shape[1]),
                                ob.reshape(-1, group, ob.shape[1]))
                else:
                    self._block(xb, ob)
        return out

    def hidden_flat_ok(self, group: int) -> bool:
        """Whether this BLAS computes the hidden layers' products row by row the same in one
        flat product as in products of ``group`` rows, for any number and order of groups up to
        a block. Probed once per group size on random inputs of each distinct weight shape
        (BLAS paths depend on shapes, not values); False (a stacked product per group, always
        exact) wherever any probed row differs in any bit — OpenBLAS, for one, computes a
        single row (matrix–vector) and skinny products (the output layer) differently."""
        ok = self._flat_ok.get(group)
        if ok is None:
            ok = self._flat_ok[group] = self._probe_flat(int(group))
        return ok

    def _probe_flat(self, R: int) -> bool:
        xp = self.xp
        K = max(1, self.block // R)
        sizes = sorted({k for k in (1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 23, 32, 47, 64, 95, 128, 191,
                                    256, K - 1, K) if 1 <= k <= K})
        rng = np.random.default_rng(0)
        shapes = {tuple(w.shape): w for w in self.W[:-1]}
        for w in shapes.values():
            x = xp.asarray(rng.standard_normal((K * R, w.shape[0])).astype(self.dtype))
            ref = xp.matmul(x.reshape(K, R, -1), w).reshape(K * R, -1)
            for k in sizes:
                rows = xp.asarray((rng.choice(K, k, replace=False)[:, None] * R
                                   + np.arange(R)).ravel())
                if not bool(xp.array_equal(xp.matmul(x[rows], w), ref[rows])):
                    return False
        return True

    def _block(self, x, out, last_group: int | None = None):
        """One block: x (n, d) → out (n, nout), or stacked (g, R, d) → (g, R, nout). With
        ``last_group`` = R: hidden layers in one flat product, the output layer (skinny: few
        bands) as a stacked product per run of R rows — each row's result depends only on its
        group when :meth:`hidden_flat_ok` (R)."""
        xp = self.xp
        h, g, t = self._bufs(x.shape[:-1])
        xp.matmul(x, self.W[0], out=h)
        for i in range(1, len(self.W)):
            h += self.b[i - 1]
            # GELU in place: h ← h / (1 + exp(h (−k − 0.044715 k h²)))
            xp.multiply(h, h, out=t)
            t *= -0.044715 * GELU_K
            t -= GELU_K
            t *= h
            xp.exp(t, out=t)
            t += 1.0
            h /= t
            if i < len(self.W) - 1:
                xp.matmul(h, self.W[i], out=g)
                h, g = g, h
            elif last_group:
                xp.matmul(h.reshape(-1, last_group, h.shape[-1]), self.W[i],
                          out=out.reshape(-1, last_group, out.shape[-1]))
            else:
                xp.matmul(h, self.W[i], out=out)
        out += self.b[-1]


def stitch_weights(z, windows) -> np.ndarray:
    """Weights (n, K) of K overlapping redshift windows at redshifts ``z`` (n,): 1 inside one
    window; in the overlap [a_{k+1}, b_k] of centre z0 and width Δz, θ = π/(2Δz)(z − z0 + Δz/2),
    the leaving window has cos²θ and the entering one sin²θ (sum 1, continuous first
    derivative). Zero outside all windows. Works for numpy or cupy ``z``."""
    xp = np if isinstance(z, np.ndarray) else array_module(None)
    z = xp.asarray(z, dtype=np.float64)
    w = xp.zeros((z.shape[0], len(windows)))
    for k, (lo, hi) in enumerate(windows):
        w[:, k] = (z >= lo) & (z <= hi)
    for k in range(len(windows) - 1):
        a, b = windows[k + 1][0], windows[k][1]
        if a >= b:
            continue  # no overlap: windows only touch
        dz = b - a
        theta = np.pi / (2 * dz) * (z - (a + b) / 2 + dz / 2)
        inside = (z >= a) & (z <= b)
        w[:, k] = xp.where(inside, xp.cos(theta) ** 2, w[:, k])
        w[:, k + 1] = xp.where(inside, xp.sin(theta) ** 2, w[:, k + 1])
    return w


class Emulator:
    """Load an emulator file for inference.

    ``bands``: subset (and order) of bands to output (default all); ``xp``: 'numpy', 'cupy',
    a module or None (auto); ``dtype``: float32 (default) or float64; ``block``: rows per block.
    Call :meth:`predict` with θ (n, d) in :attr:`param_names` order (numpy or the module's
    arrays).
    """

    def __init__(self, path, bands=None, xp=None, dtype=np.float32, block: int = 2048):
        self.file = path if isinstance(path, io.EmulatorFile) else io.read(path)
        self.path = None if isinstance(path, io.EmulatorFile) else str(path)
        self.xp = array_module(xp)
        self.dtype = np.dtype(dtype)
        self.param_names = list(self.file.param_names)
        all_bands = self.file.band_names
        if bands is None:
            bands = list(all_bands)
        unknown = [b for b in bands if b not in all_bands]
        if unknown:
            raise ValueError(f"band(s) {unknown} are not in this emulator; it has {all_bands}")
        self.bands = list(bands)
        columns = np.array([all_bands.index(b) for b in bands] + [len(all_bands)])
        self.nets = [_MLP(n, columns, self.xp, self.dtype, block) for n in self.file.nets]
        self.windows = [tuple(n.zrange) for n in self.file.nets]
        self.iz = self.param_names.index("zred") if "zred" in self.param_names else None
        if any(n.mass_ref is not None for n in self.nets) and "logmass" not in self.param_names:
            raise ValueError("a network emulates a reference mass but the emulator has no "
                             f"logmass parameter ({self.param_names})")
        self.im = self.param_names.index("logmass") if "logmass" in self.param_names else None
        lo = np.min([n.lo for n in self.file.nets], axis=0)
        hi = np.max([n.hi for n in self.file.nets], axis=0)
        if self.iz is not None:
            lo[self.iz], hi[self.iz] = self.windows[0][0], self.windows[-1][1]
        self.lo, self.hi = self.xp.asarray(lo), self.xp.asarray(hi)
        self.band_columns = columns[:-1]
        # parameter-dependent σ model (sedhpc.emulator.errors), when every window has one
        self._sigma_models = None
        if all(n.sigma_coef is not None for n in self.file.nets):
            self._sigma_models = [
                (n.log_inputs,
                 self.xp.asarray(np.asarray(n.x_mean, np.float64)),
                 self.xp.asarray(np.asarray(n.x_std, np.float64)),
                 self.xp.asarray(np.asarray(n.sigma_coef, np.float64)[self.band_columns]))
                for n in self.file.nets]

    @property
    def has_sigma_model(self) -> bool:
        """True when the file carries a parameter-dependent σ model for every window."""
        return self._sigma_models is not None

    @property
    def mass_ref(self) -> float | None:
        """The reference log mass every network emulates (fluxes then scale exactly as
        10^(logmass − mass_ref)), or None when the networks take logmass as an input (format 1)
        or disagree on it."""
        refs = {n.mass_ref for n in self.nets}
        return float(refs.pop()) if len(refs) == 1 and None not in refs else None

    @property
    def ndim(self) -> int:
        return len(self.param_names)

    @property
    def zrange(self) -> tuple[float, float]:
        return self.windows[0][0], self.windows[-1][1]

    def sigma(self) -> np.ndarray:
        """Test-set residual σ per output band [mag] (largest over windows): (nbands,)."""
        stats = [n.residuals for n in self.file.nets if n.residuals is not None]
        if not stats:
            raise ValueError("this emulator file has no test-set residual statistics")
        return np.max([s[self.band_columns, -1] for s in stats], axis=0)

    def sigma_at(self, z):
        """Test-set residual σ per band [mag] at redshifts ``z`` (n,): the windows' σ blended
        with the stitching weights (n, nbands), in ``z``'s array module."""
        stats = [n.residuals for n in self.file.nets]
        if any(s is None for s in stats):
            raise ValueError("this emulator file has no test-set residual statistics")
        xp = np if isinstance(z, (np.ndarray, list, tuple, float)) else self.xp
        sig = xp.asarray(np.array([s[self.band_columns, -1] for s in stats]))  # (K, nbands)
        z = xp.asarray(z, dtype=np.float64)
        if len(self.nets) == 1:
            return xp.broadcast_to(sig[0], (z.shape[0], sig.shape[1]))
        w = stitch_weights(z, self.windows)
        w[w.sum(axis=1) == 0] = 1.0 / len(self.windows)  # outside all windows: the average
        return w @ sig

    def sigma_for(self, theta, group: int | None = None):
        """Emulator σ per row and band [mag] (n, nbands) at inputs ``theta`` (n, d): the
        parameter-dependent model of :mod:`sedhpc.emulator.errors` when the file has one
        (variances blended with the stitching weights), else :meth:`sigma_at` of the rows'
        redshifts. In the emulator's array module. ``group``: as in :meth:`predict`."""
        xp = self.xp
        theta = xp.asarray(theta, dtype=xp.float64)
        group = _check_group(theta.shape[0], group)
        if self._sigma_models is None:
            return xp.asarray(self.sigma_at(theta[:, self.iz]))
        from .errors import log_variance, normalised

        def var(k, rows):
            log_in, mean, std, coef = self._sigma_models[k]
            x = normalised(theta[rows], log_in, mean, std, xp)
            return xp.exp(log_variance(x, coef, xp, group))

        if len(self.windows) == 1:
            return xp.sqrt(var(0, slice(None)))
        w = stitch_weights(theta[:, self.iz], self.windows)
        w[w.sum(axis=1) == 0] = 1.0 / len(self.windows)  # outside all windows: the average
        v = xp.zeros((theta.shape[0], len(self.bands)))
        for k in range(len(self.windows)):
            rows = self._window_rows(w, k, group)
            if rows.size:
                v[rows] += w[rows, k:k + 1] * var(k, rows)
        return xp.sqrt(v)

    def _window_rows(self, w, k: int, group: int | None):
        """Rows that window k must evaluate: those with weight > 0, or with ``group``, every
        row of a group that has one (so the group's product is always the same)."""
        xp = self.xp
        if not group:
            return xp.nonzero(w[:, k] > 0)[0]
        need = xp.any((w[:, k] > 0).reshape(-1, group), axis=1)
        return (xp.nonzero(need)[0][:, None] * group + xp.arange(group)).reshape(-1)

    def predict(self, theta, group: int | None = None) -> Prediction:
        """Outputs for ``theta`` (n, d) in :attr:`param_names` order. ``group`` = R: rows come
        in runs of R (n a multiple of R) and each run's results do not depend on the other rows
        (module docstring)."""
        xp = self.xp
        theta = xp.asarray(theta)
        if theta.ndim == 1:
            theta = theta[None, :]
        if theta.shape[-1] != self.ndim:
            raise ValueError(f"theta must have shape (n, {self.ndim}) with columns "
                             f"{self.param_names}; got {tuple(theta.shape)}")
        group = _check_group(theta.shape[0], group)
        inside = xp.all((theta >= self.lo) & (theta <= self.hi), axis=1)
        x = xp.ascontiguousarray(theta, dtype=self.dtype)
        nout = self.nets[0].nout
        if len(self.nets) == 1:
            out = self._net(0, x, theta, slice(None), group)
        else:
            w = stitch_weights(theta[:, self.iz], self.windows)
            out = xp.zeros((x.shape[0], nout), self.dtype)
            for k in range(len(self.nets)):
                rows = self._window_rows(w, k, group)
                if rows.size == 0:
                    continue
                part = self._net(k, x[rows], theta, rows, group)
                out[rows] += part * w[rows, k:k + 1].astype(self.dtype)
            out[w.sum(axis=1) == 0] = np.nan  # outside every window
        return Prediction(out[:, :-1], out[:, -1], inside)

    def __call__(self, theta, group: int | None = None):
        return self.predict(theta, group)

    def _net(self, k: int, x, theta, rows, group):
        """Network k on inputs ``x`` (n, d) (rows ``rows`` of ``theta``) → (n, nout), the
        bands at the rows' own mass when the network emulates a reference mass."""
        net = self.nets[k]
        out = net(x, self.xp.empty((x.shape[0], net.nout), self.dtype), group)
        if net.mass_ref is not None:
            dm = self.xp.asarray(theta[rows, self.im], dtype=self.xp.float64) - net.mass_ref
            scale_mass(out[:, :-1], dm, self.xp, out=out[:, :-1])
        return out


def _check_group(n: int, group: int | None) -> int | None:
    if not group:
        return None
    group = int(group)
    if group < 1 or n % group:
        raise ValueError(f"group must be a positive divisor of the number of rows ({n}); "
                         f"got {group}")
    return group
