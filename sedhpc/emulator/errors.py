"""A parameter-dependent model of the emulator's error (``sedhpc emulator-sigma``).

The test-set σ per band (one number per band and redshift window) is right on average but not
where it matters: the emulator is worse for some galaxies (dusty, old, metal-rich, near window
edges) than for others, and a likelihood with one σ per band gives too-narrow posteriors exactly
there (docs/VALIDATION.md (b)). This module fits, per window and band b, a log-quadratic variance

    log σ_b²(θ) = c_b0 + Σ_j c_bj x_j + Σ_j c'_bj x_j²,

with x the network's own normalised inputs (log10 inputs applied, then (θ − mean)/std), by
maximum likelihood on emulator − SPS residuals r of a calibration set made by ``sedhpc
generate`` with its own seed (not the training set, whose residuals are too small):
minimise Σ_i [log σ²(θ_i) + r_i²/σ²(θ_i)] + λ|c|² (convex in c; Newton steps with
backtracking). The kernel evaluates it beside the network (:meth:`Emulator.sigma_for`) and
the likelihood uses it in place of the per-band σ. Files without it keep the per-band σ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import io

FEATURES = "quadratic"  # the only form so far: 1, x_j, x_j² (1 + 2d terms)
# σ kept in [SIGMA_MIN, 2] mag. Emulator errors below SIGMA_MIN are negligible beside any
# photometric error and the error floor; residuals below it (e.g. bands far below the Lyman
# break, where the SPS flux is zero and a mass-normalised emulator exact) count as SIGMA_MIN in
# the fit, or those exact zeros drive log σ² towards −∞ there and the quadratic to a curvature
# that inflates σ elsewhere.
SIGMA_MIN = 0.005
LOG_VAR_MIN, LOG_VAR_MAX = 2 * np.log(SIGMA_MIN), 2 * np.log(2.0)


def normalised(theta, log_inputs, mean, std, xp=np):
    """The network's own normalised inputs: ``log_inputs`` = (columns, offsets) taken as
    log10(θ + offset) (:func:`io.to_log`), then (θ − mean)/std; float64."""
    x = xp.asarray(theta, dtype=xp.float64)
    cols, offsets = log_inputs
    if cols:
        x = io.to_log(x.copy(), cols, offsets, xp)
    return (x - mean) / std


def net_inputs(net: io.Network, theta, xp=np):
    """:func:`normalised` with window ``net``'s log inputs and normalisation."""
    return normalised(theta, net.log_inputs, xp.asarray(net.x_mean), xp.asarray(net.x_std), xp)


def features(net: io.Network, theta, xp=np):
    """Design matrix (n, 1 + 2d) of the σ model for inputs ``theta`` (n, d) of window ``net``."""
    x = net_inputs(net, theta, xp)
    return xp.concatenate([xp.ones((x.shape[0], 1)), x, x * x], axis=1)


def log_variance(x, coef, xp=np, group: int | None = None):
    """log σ² (n, k) [mag²] at normalised inputs ``x`` (n, d) with coefficient rows ``coef``
    (k, 1 + 2d) — ``features(x) @ coef.T`` without forming the design matrix — clipped to σ in
    [SIGMA_MIN, 2] mag. ``group`` = R: each run of R rows is its own product (see
    :mod:`sedhpc.emulator.kernel`)."""
    n, d = x.shape
    if group:
        x = x.reshape(-1, group, d)
    s = coef[:, 0] + x @ coef[:, 1:d + 1].T + (x * x) @ coef[:, d + 1:].T
    return xp.clip(s.reshape(n, -1), LOG_VAR_MIN, LOG_VAR_MAX)


def fit_log_variance(P: np.ndarray, R: np.ndarray, ridge: float = 1e-3, iters: int = 50,
                     tol: float = 1e-7) -> np.ndarray:
    """Coefficients C (k, p) of log σ² = P C_bᵀ per column b of residuals ``R`` (n, k), from
    the design matrix ``P`` (n, p) whose first column is 1: Gaussian maximum likelihood with a
    ridge penalty ``ridge``·|C_b,1:|² (not on the intercept), by Newton's method."""
    P, R = np.asarray(P, float), np.asarray(R, float)
    n, p = P.shape
    if n < 4 * p:
        raise ValueError(f"{n} residuals are too few for a σ model with {p} terms "
                         f"(need at least {4 * p})")
    R2 = np.maximum(R ** 2, np.exp(LOG_VAR_MIN))
    C = np.zeros((R.shape[1], p))
    C[:, 0] = np.log(np.maximum(R2.mean(axis=0), 1e-30))
    pen = np.full(p, ridge)
    pen[0] = 0.0

    def objective(C):
        S = P @ C.T
        return (np.mean(S + R2 * np.exp(-S), axis=0) + (pen * C * C).sum(axis=1), S)

    f, S = objective(C)
    for _ in range(iters):
        W = R2 * np.exp(-S)
        G = (P.T @ (1.0 - W)).T / n + 2 * pen * C
        step = np.empty_like(C)
        for b in range(R.shape[1]):
            H = (P * W[:, b:b + 1]).T @ P / n + np.diag(2 * pen + 1e-12)
            step[b] = np.linalg.solve(H, G[b])
        t = np.ones(R.shape[1])
        for _ in range(30):  # backtracking, per column
            C_new = C - t[:, None] * step
            f_new, S_new = objective(C_new)
            worse = f_new > f + 1e-12
            if not worse.any():
                break
            t[worse] *= 0.5
        moved = np.max(np.abs(t[:, None] * step))
        keep = ~worse
        C[keep], f[keep] = C_new[keep], f_new[keep]
        S = P @ C.T
        if moved < tol:
            break
    return C


def residuals(emu_file: io.EmulatorFile, testset):
    """θ (n, d) and emulator − SPS residuals (n, nbands) [mag] of the draws of ``testset``
    (a finalized training set, or its path) inside the emulator's ranges (float64 kernel)."""
    from ..trainset import load as load_trainset
    from .kernel import Emulator
    from .train import file_hash
    from .validate import set_residuals

    if not hasattr(testset, "theta"):
        path = Path(testset) / "trainset.h5" if Path(testset).is_dir() else Path(testset)
        if path.exists() and str(emu_file.attrs.get("trainset_hash", "")) == file_hash(path):
            raise ValueError(f"{testset} is the emulator's own training set: its residuals "
                             "understate the emulator's error; use a set of another seed")
    ts = load_trainset(testset) if not hasattr(testset, "theta") else testset
    theta, res, _, _ = set_residuals(Emulator(emu_file, xp="numpy", dtype=np.float64), ts)
    return theta, res


def fit(emu_file: io.EmulatorFile, calset, ridge: float = 1e-3) -> tuple[io.EmulatorFile, dict]:
    """Fit the σ model of every window of ``emu_file`` on the residuals of ``calset``; returns a
    copy of the file with it, and a summary (per window: draws used, the mean negative log
    likelihood per residual with one σ per band and with the model, and the fraction of
    residuals within σ(θ))."""
    from .kernel import Emulator, stitch_weights

    theta, res = residuals(emu_file, calset)
    emu = Emulator(emu_file, xp="numpy")
    w = (stitch_weights(theta[:, emu.iz], emu.windows) if emu.iz is not None
         else np.ones((len(theta), 1)))
    nets, summary = [], {"ridge": ridge, "features": FEATURES, "windows": []}
    for k, net in enumerate(emu_file.nets):
        sel = w[:, k] > 0
        P = features(net, theta[sel])
        C = fit_log_variance(P, res[sel], ridge=ridge)
        s_model = log_variance(P[:, 1:1 + theta.shape[1]], C)
        s_const = np.log(np.mean(res[sel] ** 2, axis=0))
        r2 = res[sel] ** 2
        summary["windows"].append({
            "zrange": list(net.zrange), "n": int(sel.sum()),
            "nll_per_band": float(np.mean(s_const + r2 / np.exp(s_const))),
            "nll_model": float(np.mean(s_model + r2 / np.exp(s_model))),
            "frac_within_1sigma_model": float(np.mean(r2 < np.exp(s_model)))})
        new = io.Network(**{f: getattr(net, f) for f in net.__dataclass_fields__})
        new.attrs = dict(net.attrs)
        new.sigma_coef = C.astype(np.float64)
        nets.append(new)
    attrs = dict(emu_file.attrs)
    attrs["sigma_model"] = json.dumps({"features": FEATURES, "ridge": ridge,
                                       "calset": str(calset), "n": int(len(theta))})
    return io.EmulatorFile(nets, emu_file.param_names, emu_file.band_names, attrs), summary


def judge(emu_file: io.EmulatorFile, testset) -> dict:
    """How well the emulator's σ describes its errors on ``testset`` (held out): mean negative
    log likelihood per residual, r²/σ² + log σ² (lower is better), with the per-band test-set σ
    (blended at each redshift) and with the σ model, and the fractions of |r| within 1 and 2
    σ(θ) (0.683 / 0.954 for Gaussian errors)."""
    from .kernel import Emulator

    theta, res = residuals(emu_file, testset)
    emu = Emulator(emu_file, xp="numpy")
    if not emu.has_sigma_model:
        raise ValueError("this emulator file has no σ model (run `sedhpc emulator-sigma`)")
    s_band = np.asarray(emu.sigma_at(theta[:, emu.iz]), float) ** 2
    s_model = np.asarray(emu.sigma_for(theta), float) ** 2
    z = np.abs(res) / np.sqrt(s_model)
    return {"n": int(len(theta)),
            "nll_per_band": float(np.mean(np.log(s_band) + res ** 2 / s_band)),
            "nll_model": float(np.mean(np.log(s_model) + res ** 2 / s_model)),
            "within_1sigma": float(np.mean(z < 1)), "within_2sigma": float(np.mean(z < 2)),
            "within_1sigma_per_band": float(np.mean(np.abs(res) < np.sqrt(s_band)))}
