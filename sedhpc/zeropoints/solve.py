"""Zeropoint solver: the joint posterior mode of the offsets and the calibrators' parameters
(block-sparse Gauss–Newton with the galaxies profiled out), wider searches, the simulated-set
bias correction and the marginal-likelihood alternative; the method is described in
:mod:`sedhpc.zeropoints`."""

from __future__ import annotations

import numpy as np
from scipy import special

from ..photometry import A, B

LN10_04 = 0.4 * np.log(10.0)
RESCUE_STEP = 0.01  # offsets moving less than this [mag]: look for galaxies in poor modes
RESCUES = 2  # at most this many wider searches per calibration
RESCUE_FACTOR = 4  # their draws and starts, relative to the first search


class _Modes:
    """Per-galaxy posterior modes in probit space at given offsets, vectorised over galaxies."""

    def __init__(self, model, emulator, flux, err, zred, mask, floor, sigma_emu):
        from ..emulator import Emulator

        self.model = model
        self.emu = Emulator(emulator.file, bands=emulator.bands, xp="numpy", dtype=np.float64)
        self.x, self.e, self.mask = flux, err, mask
        self.zred = np.asarray(zred, float).reshape(-1, 1)
        self.p = len(model.free_index)
        self.var0 = err ** 2 + (floor * flux) ** 2
        self.floor = floor
        nb = flux.shape[1]
        if sigma_emu is None:
            self.sig_u = np.asarray(self.emu.sigma_at(self.zred[:, 0]), float)
        else:
            self.sig_u = np.broadcast_to(np.asarray(sigma_emu, float), (len(flux), nb))
        self.calls = 0

    def model_flux(self, v, g):
        """Model maggies (n, nbands) at probit points ``v`` (n, p) of galaxies ``g`` (n,)."""
        theta = self.model.unit_transform(special.ndtr(v), self.zred[g])
        self.calls += len(v)
        return self.emu.predict(theta).maggies

    def sigma(self, m, g):
        s_emu = (2.0 * B / A) * self.sig_u[g] * np.sqrt(1.0 + (m / (2.0 * B)) ** 2)
        return np.sqrt(self.var0[g] + s_emu ** 2)

    def residuals(self, v, g, k, sig, w):
        """Stacked whitened residuals (n, nbands + p): √w (x − m k)/σ and the prior's v."""
        m = self.model_flux(v, g)
        r = np.sqrt(w) * (self.x[g] - m * k) / sig
        return np.concatenate([np.nan_to_num(r, nan=1e10, posinf=1e10, neginf=-1e10),
                               v], axis=1), m

    def jacobian(self, v, g, k, sig, w, m, h=1e-6):
        """(n, nbands, p) ∂r/∂v of the data rows by forward differences (one batched call)."""
        n, p = v.shape
        vv = np.repeat(v[:, None, :], p, axis=1) + h * np.eye(p)[None]
        mm = self.model_flux(vv.reshape(n * p, p), np.repeat(g, p)).reshape(n, p, -1)
        dm = (mm - m[:, None, :]) / h  # (n, p, nb)
        return -(np.sqrt(w) * k / sig)[:, :, None] * dm.transpose(0, 2, 1)

    def solve(self, v, g, k, w, iters: int = 300, xtol: float = 1e-7):
        """Levenberg–Marquardt from ``v`` (n, p) for galaxies ``g`` with offset factors ``k``
        (n, nbands) and band weights ``w``; σ is taken at the start point. Returns
        (v, cost, m, sig, Jv) at the solution."""
        v = v.copy()
        m = self.model_flux(v, g)
        sig = self.sigma(m * k, g)
        R, m = self.residuals(v, g, k, sig, w)
        cost = 0.5 * np.sum(R * R, axis=1)
        lam = np.full(len(v), 1e-3)
        active = np.ones(len(v), bool)
        eye = np.eye(self.p)
        J = np.zeros((len(v), w.shape[1], self.p))
        fresh = np.zeros(len(v), bool)
        for _ in range(iters):
            a = np.flatnonzero(active & ~fresh)
            if a.size:
                J[a] = self.jacobian(v[a], g[a], k[a], sig[a], w[a], m[a])
                fresh[a] = True
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            Ja = J[a]
            JtJ = np.einsum("nbi,nbj->nij", Ja, Ja) + eye
            grad = np.einsum("nbi,nb->ni", Ja, R[a, :-self.p]) + v[a]
            D = np.einsum("nii->ni", JtJ)
            step = -np.linalg.solve(JtJ + lam[a, None, None] * (D[:, :, None] * eye),
                                    grad[..., None])[..., 0]
            Rn, mn = self.residuals(v[a] + step, g[a], k[a], sig[a], w[a])
            cn = 0.5 * np.sum(Rn * Rn, axis=1)
            ok = cn < cost[a]
            good = a[ok]
            v[good] += step[ok]
            R[good], m[good], cost[good] = Rn[ok], mn[ok], cn[ok]
            fresh[good] = False
            lam[good] = np.maximum(lam[good] / 5.0, 1e-9)
            lam[a[~ok]] *= 4.0
            small = np.max(np.abs(step), axis=1) < xtol
            active[a[(ok & small) | (lam[a] > 1e8)]] = False
        stale = np.flatnonzero(~fresh)
        if stale.size:
            J[stale] = self.jacobian(v[stale], g[stale], k[stale], sig[stale], w[stale],
                                     m[stale])
        return v, cost, m, sig, J

    def start(self, rng, g, k, w, ndraws: int, nstarts: int):
        """The best of ``nstarts`` LM runs started from the best of ``ndraws`` prior draws."""
        n = len(g)
        draws = rng.standard_normal((ndraws, self.p))
        best = np.empty((n, nstarts, self.p))
        for i in range(n):  # one galaxy's draws per call: bounded memory
            gi = np.full(ndraws, g[i])
            m = self.model_flux(draws, gi) * k[i]
            r = np.sqrt(w[i]) * (self.x[g[i]] - m) / self.sigma(m, gi)
            c = np.sum(np.nan_to_num(r * r, nan=np.inf), axis=1) + np.sum(draws ** 2, axis=1)
            best[i] = draws[np.argsort(c)[:nstarts]]
        rep = np.repeat(np.arange(n), nstarts)
        v, cost, *_ = self.solve(best.reshape(n * nstarts, self.p), g[rep], k[rep], w[rep],
                                 iters=40)
        pick = np.argmin(cost.reshape(n, nstarts), axis=1)
        return v.reshape(n, nstarts, self.p)[np.arange(n), pick]


def _rescue(modes, v, m, sig, Jv, g, k, ndraws, nstarts, rng, p_bad: float = 1e-3):
    """A wider mode search for the galaxies whose mode fits improbably badly at offsets ``k``
    (χ² over all their bands, clipped ones included, above the 1 − ``p_bad`` quantile for that
    many bands): ``ndraws`` prior draws and ``nstarts`` LM runs each, the better of the old
    and new mode kept (posterior cost with every band). Updates v, m, sig, Jv in place;
    returns how many galaxies moved."""
    from scipy import stats

    w = modes.mask.astype(float)
    nb_used = np.maximum(w.sum(axis=1), 1)
    chi2 = np.sum(w * np.nan_to_num(((modes.x - m * k) / sig) ** 2, nan=1e20), axis=1)
    bad = np.flatnonzero(chi2 > stats.chi2.ppf(1 - p_bad, nb_used))
    if bad.size == 0:
        return 0
    old = 0.5 * (chi2[bad] + np.sum(v[bad] ** 2, axis=1))
    vb = modes.start(rng, g[bad], k[bad], w[bad], ndraws, nstarts)
    vb, cb, mb, sb, Jb = modes.solve(vb, g[bad], k[bad], w[bad])
    better = cb < old - 1e-6
    idx = bad[better]
    v[idx], m[idx], sig[idx], Jv[idx] = vb[better], mb[better], sb[better], Jb[better]
    return int(idx.size)


def _estimate(modes, t_idx, nt, ref, iterations, tol_mag, clip, ndraws, nstarts, rng, log):
    """The offsets at the joint mode for the galaxies of ``modes``: {offset, error, n, it,
    converged, chi2} and the state the marginal refinement starts from: the galaxies' modes
    ``v``, band weights ``w`` (clipped outliers 0) and per tract the profiled information
    ``H`` (free bands)."""
    G, nb = modes.x.shape
    free = np.array([j for j in range(nb) if j != ref])
    offset = np.zeros((nt, nb))
    g = np.arange(G)
    w = modes.mask.astype(float)
    k = 10.0 ** (0.4 * offset[t_idx])
    v = modes.start(rng, g, k, w, ndraws, nstarts)
    v, cost, m, sig, Jv = modes.solve(v, g, k, w)
    converged, rescues = False, 0
    for it in range(1, iterations + 1):
        k = 10.0 ** (0.4 * offset[t_idx])
        z = (modes.x - m * k) / sig
        w = (modes.mask & (np.abs(z) <= clip)).astype(float)  # outliers leave the next step
        r = np.sqrt(w) * z
        total = 0.5 * np.sum(r * r) + 0.5 * np.sum(v * v)
        Jv = Jv * (w > 0)[:, :, None]
        Jo = -(np.sqrt(w) * LN10_04 * m * k / sig)  # (G, nb): ∂r_b/∂o_b
        Ainv_C = np.linalg.solve(np.einsum("nbi,nbj->nij", Jv, Jv) + np.eye(modes.p),
                                 Jv.transpose(0, 2, 1) * Jo[:, None, :])  # (G, p, nb)
        score = Jo * r  # (G, nb): ∂Φ_g/∂o at each galaxy's mode
        step = np.zeros_like(offset)
        H_all = []
        for t in range(nt):
            sel = t_idx == t
            H = np.diag(np.sum(Jo[sel] ** 2, axis=0)) - np.einsum(
                "nb,nbi,nic->bc", Jo[sel], Jv[sel], Ainv_C[sel])
            Hf = H[np.ix_(free, free)] + 1e-12 * np.eye(nb - 1)
            step[t, free] = -np.linalg.solve(Hf, score[sel][:, free].sum(axis=0))
            H_all.append(Hf)
        big = np.max(np.abs(step))
        if big > 0.1:  # a trust region for the first steps from far away
            step *= 0.1 / big
        if np.max(np.abs(step)) < RESCUE_STEP and rescues < RESCUES:
            # offsets nearly settled: galaxies stuck in a poor local mode (found at the first
            # offsets, or followed there) get a wider search; the step is then recomputed
            rescues += 1
            moved = _rescue(modes, v, m, sig, Jv, g, k, RESCUE_FACTOR * ndraws,
                            RESCUE_FACTOR * nstarts, rng)
            log(f"  wider mode search: {moved} galaxies moved to a better mode")
            if moved:
                cost = 0.5 * (np.sum(w * ((modes.x - m * k) / sig) ** 2, axis=1)
                              + np.sum(v * v, axis=1))
                continue
        if np.max(np.abs(step)) < tol_mag:
            converged = True
            break
        # backtracking: the galaxies follow the offsets (linear prediction, then LM); the
        # step is halved until the summed objective goes down (at most 8 times)
        for _ in range(8):
            o_try = offset + step
            v_try = v - np.einsum("nib,nb->ni", Ainv_C, step[t_idx])
            trial = modes.solve(v_try, g, 10.0 ** (0.4 * o_try[t_idx]), w)
            if np.sum(trial[1]) <= total + 1e-6 * abs(total):
                break
            step *= 0.5
        offset = o_try
        v, cost, m, sig, Jv = trial
        log(f"  step {it}: largest change {np.max(np.abs(step)):.5f} mag, "
            f"χ² {2 * cost.sum() - np.sum(v * v):.1f} over {int(w.sum())} galaxy-bands")
    error = np.zeros_like(offset)
    count = np.zeros(offset.shape, int)
    for t in range(nt):
        sel = t_idx == t
        n_t = int(sel.sum())
        count[t] = np.sum(w[sel] > 0, axis=0)
        s = score[sel][:, free]
        meat = s.T @ s * n_t / max(n_t - 1, 1)
        Hinv = np.linalg.inv(H_all[t])
        error[t, free] = np.sqrt(np.maximum(np.diag(Hinv @ meat @ Hinv), 0.0))
    return {"offset": offset, "error": error, "n": count, "it": it, "converged": converged,
            "chi2": float(2 * cost.sum() - np.sum(v * v)), "v": v, "w": w, "H": H_all,
            "free": free}


def _logpost(modes, v, g, k, w):
    """Log posterior (n,) of probit points ``v`` of galaxies ``g`` with offset factors ``k``
    and band weights ``w`` (the fit's likelihood: Gaussian with the model-dependent variance,
    normalisation included), the model fluxes and σ."""
    m = modes.model_flux(v, g)
    sig = modes.sigma(m * k, g)
    r = (modes.x[g] - m * k) / sig
    lp = -0.5 * np.sum(w * np.nan_to_num(r * r + 2 * np.log(sig), nan=1e20), axis=1)
    return np.where(np.isfinite(lp), lp, -np.inf) - 0.5 * np.sum(v * v, axis=1), m, sig


def _laplace(J):
    """Laplace covariances (JᵀJ + 1)⁻¹ (n, p, p) of probit-space posteriors with whitened
    Jacobians ``J`` (n, nbands, p), and factors C with C Cᵀ equal to them: C = R⁻¹ from the
    QR factorisation of the stacked [J; 1] (RᵀR = JᵀJ + 1, R invertible since the identity
    block's singular values are 1), never squaring J's condition number: inverting JᵀJ + 1
    and factorising that broke a calibration of 4000 galaxies at S/N 50–200 (for a very well
    measured galaxy JᵀJ swamps the 1 in float64). Non-finite Jacobian entries (a model flux
    that overflowed) count as 0."""
    J = np.clip(np.nan_to_num(J, nan=0.0, posinf=0.0, neginf=0.0), -1e100, 1e100)
    n, _, p = J.shape
    R = np.linalg.qr(np.concatenate([J, np.broadcast_to(np.eye(p), (n, p, p))], axis=1),
                     mode="r")
    C = np.linalg.inv(R)
    return C @ C.transpose(0, 2, 1), C


def _cholesky_or(S, fallback):
    """Cholesky factors of the matrices ``S`` (n, p, p); where one is not positive definite,
    that galaxy's ``fallback`` factor."""
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        out = fallback.copy()
        for i in range(len(S)):
            try:
                out[i] = np.linalg.cholesky(S[i])
            except np.linalg.LinAlgError:
                pass
        return out


def _marginal(modes, t_idx, est, rng, chains, sweeps, steps, log, burn=2):
    """The offsets that maximise the marginal likelihood of the calibrators (their parameters
    integrated out), from the joint mode ``est`` of :func:`_estimate`.

    Stochastic approximation: every galaxy keeps ``chains`` Metropolis chains in probit space
    (started at its mode; Gaussian proposals from its Laplace covariance, then from its chains'
    own covariance, scaled toward 23 % acceptance). Each sweep runs ``steps`` steps at the
    current offsets and averages the complete-data score ∂ log p(x_g | v, o)/∂o over the second
    half; by Fisher's identity its sum over galaxies is the marginal score, and the offsets take
    a step H⁻¹ · score with H the profiled information at the mode (gain 1 for the first third
    of the sweeps, then decreasing as t^−0.7; at most 0.02 mag). The estimate is the average
    of the offsets over the second half of the sweeps; its errors the mode's sandwich errors
    and the offsets' spread over those sweeps, added in quadrature."""
    G, nb = modes.x.shape
    v0, w, free, nt = est["v"], est["w"], est["free"], len(est["H"])
    p = v0.shape[1]
    o = est["offset"].copy()
    g = np.arange(G)
    k = 10.0 ** (0.4 * o[t_idx])
    m = modes.model_flux(v0, g)
    sig = modes.sigma(m * k, g)
    h = 1e-6  # Laplace covariance (JᵀJ + 1)⁻¹ at the modes, by forward differences
    J = modes.jacobian(v0, g, k, sig, w, m, h)
    lap, chol = _laplace(J)
    gc = np.repeat(g, chains)
    tc = t_idx[gc]
    vc = np.repeat(v0, chains, axis=0) + 0.05 * np.einsum(
        "nij,nj->ni", np.repeat(chol, chains, 0), rng.standard_normal((G * chains, p)))
    wc = w[gc]
    lscale = np.zeros(G)
    prop = np.repeat(chol, chains, 0) * (2.38 / np.sqrt(p))
    hist = []
    half = steps - steps // 2
    for it in range(-burn, sweeps):
        kc = 10.0 ** (0.4 * o[tc])
        lp, mc, sc = _logpost(modes, vc, gc, kc, wc)
        acc = np.zeros(G * chains)
        S = np.zeros((G * chains, nb))
        kept = np.empty((half, G * chains, p))
        for step in range(steps):
            trial = vc + np.einsum("nij,nj->ni", prop, rng.standard_normal(vc.shape))
            lpt, mt, st = _logpost(modes, trial, gc, kc, wc)
            a = np.log(rng.random(len(vc))) < lpt - lp
            vc[a], lp[a], mc[a], sc[a] = trial[a], lpt[a], mt[a], st[a]
            acc += a
            if step >= steps // 2:
                S += np.nan_to_num(wc * (modes.x[gc] - mc * kc) * mc * kc * LN10_04 / sc ** 2)
                kept[step - steps // 2] = vc
        # proposals: the chains' covariance (pooled per galaxy), shrunk to the Laplace one
        K = kept.transpose(1, 0, 2).reshape(G, chains * half, p)
        Kc = K - K.mean(axis=1, keepdims=True)
        cov = 0.7 * np.einsum("nsi,nsj->nij", Kc, Kc) / (K.shape[1] - 1) + 0.3 * lap
        rate = acc.reshape(G, chains).mean(axis=1) / steps
        lscale = np.clip(lscale + 1.5 * (rate - 0.234), -4.0, 1.0)
        prop = np.repeat(_cholesky_or(cov + 1e-9 * np.eye(p), chol)
                         * np.exp(lscale)[:, None, None], chains, 0) * (2.38 / np.sqrt(p))
        if it < 0:
            continue
        s_g = (S / half).reshape(G, chains, nb).mean(axis=1)
        gain = 1.0 if it < sweeps // 3 else (1.0 + it - sweeps // 3) ** -0.7
        for t in range(nt):
            sel = t_idx == t
            step_t = np.linalg.solve(est["H"][t], s_g[sel][:, free].sum(axis=0))
            big = np.max(np.abs(step_t))
            o[t, free] += gain * step_t * (min(1.0, 0.02 / big) if big > 0 else 1.0)
        hist.append(o.copy())
        log(f"  sweep {it + 1}/{sweeps}: acceptance {rate.mean():.2f}, offsets moved "
            f"{np.max(np.abs(hist[-1] - (hist[-2] if len(hist) > 1 else est['offset']))):.4f}"
            f" mag")
    offset = np.mean(hist[sweeps // 2:], axis=0)
    spread = np.std(hist[sweeps // 2:], axis=0)
    # errors: the mode's sandwich (the Laplace approximation of the marginal score's
    # variance; one built from the sampled scores is dominated by their Monte Carlo noise,
    # ~10× too large at S/N 100–400), plus the Monte Carlo spread of the sweeps
    error = np.sqrt(est["error"] ** 2 + spread ** 2)
    return {**est, "offset": offset, "error": error, "mode_offset": est["offset"],
            "mc_spread": float(np.max(spread)), "trajectory": np.array(hist)}


def _mock_like(model, modes, rng, ref, offsets, t_idx):
    """Calibrators as the model would make them: per galaxy a prior draw at its redshift, its
    stellar mass moved so that the reference band matches the galaxy's flux there, the
    galaxy's mask, and per band the galaxy's S/N where it is detected (|x| > 3σ: the error
    scaled with the draw's flux) or its error where it is not (sky-limited); noise from the
    likelihood's own variance (observational, floor and emulator terms); the tracts'
    ``offsets`` (ntract, nbands) [mag] applied. Returns (flux, err, noiseless flux)."""
    G = modes.x.shape[0]
    theta = model.sample(rng, G, fixed_values=modes.zred)
    i = model.index("logmass")
    lo, hi = model.bounds[i]
    m = modes.emu.predict(theta).maggies
    x_ref = modes.x[:, ref]
    ok = modes.mask[:, ref] & (x_ref > 0) & (m[:, ref] > 0)
    shift = np.where(ok, np.log10(np.where(ok, x_ref, 1.0) / np.where(ok, m[:, ref], 1.0)), 0)
    theta[:, i] = np.clip(theta[:, i] + shift, lo, hi)
    m = modes.emu.predict(theta).maggies
    # the galaxy's S/N, not its absolute error: a draw fainter than the galaxy in a band with
    # the galaxy's error there would be measured worse, and be pulled further by the prior
    detected = np.abs(modes.x) > 3 * modes.e
    e = np.where(detected, modes.e * np.abs(m) / np.where(detected, np.abs(modes.x), 1.0),
                 modes.e)
    e = np.maximum(e, 1e-30)
    sig = modes.sigma(m, np.arange(G))
    sig = np.sqrt(np.maximum(sig ** 2 - modes.var0, 0.0) + e ** 2 + (modes.floor * m) ** 2)
    k = 10.0 ** (0.4 * offsets[t_idx])
    return m * k + sig * k * rng.standard_normal(m.shape), e * k, m * k


def calibrate(model, emulator, flux, err, zred, mask, tract=None, reference: str | None = None,
              iterations: int = 60, tol_mag: float = 1e-3, floor: float = 0.05, sigma_emu=None,
              clip: float = 5.0, bias_sims: int = 4, ndraws: int = 2048, nstarts: int = 4,
              method: str = "mode", chains: int = 4, sweeps: int = 30, steps: int = 40,
              burn: int = 2, seed: int = 0, log=print) -> dict:
    """Offsets (ntract, nbands) [mag] with errors, for galaxies ``flux``, ``err`` (G, nbands)
    maggies in the emulator's bands, ``zred`` (G,), ``mask`` (G, nbands); ``tract`` (G,) labels
    (default: one tract); ``sigma_emu``: emulator σ [mag] per band (default: the emulator
    file's test-set σ at each redshift; 0 for mocks made with the emulator); ``bias_sims``:
    simulated calibration sets for the bias correction (default 4; 0: none); ``method``:
    "mode" (default: the joint mode) or "marginal" (the joint mode, then the marginal-
    likelihood refinement with ``chains`` chains per galaxy, ``sweeps`` sweeps of ``steps``
    steps after ``burn`` sweeps at the mode's offsets); the simulated sets go through the
    same method.
    Returns {tracts, bands, offset, error, bias, n, iterations, reference, chi2, converged,
    emulator_calls, method, mode_offset, mc_spread, trajectory (the offsets after each sweep)}."""
    from ..likelihood import Observations

    obs = Observations.build(flux, err, mask)
    G, nb = obs.flux.shape
    if G == 0:
        raise ValueError("no calibration galaxies")
    tract = np.zeros(G, int) if tract is None else np.asarray(tract)
    labels, t_idx = np.unique(tract, return_inverse=True)
    if reference is not None and reference not in emulator.bands:
        raise ValueError(f"reference band {reference!r} is not among {emulator.bands}")
    if clip <= 0 or bias_sims < 0 or iterations < 1:
        raise ValueError(f"need clip > 0, bias_sims ≥ 0, iterations ≥ 1; got {clip}, "
                         f"{bias_sims}, {iterations}")
    if method not in ("marginal", "mode"):
        raise ValueError(f"method must be 'marginal' or 'mode'; got {method!r}")
    if method == "marginal" and (chains < 1 or sweeps < 2 or steps < 2 or burn < 0):
        raise ValueError(f"need chains ≥ 1, sweeps ≥ 2, steps ≥ 2, burn ≥ 0; got {chains}, "
                         f"{sweeps}, {steps}, {burn}")
    zred = np.asarray(zred, float).reshape(-1)
    if zred.shape != (G,):
        raise ValueError(f"zred has {zred.size} values for {G} galaxies")
    zlo, zhi = emulator.zrange
    bad = ~np.isfinite(zred) | (zred < zlo) | (zred > zhi)
    if bad.any():
        raise ValueError(f"calibration needs a redshift inside the emulator's range "
                         f"{emulator.zrange} for every galaxy; {int(bad.sum())} of {G} have "
                         f"none (first: row {int(np.argmax(bad))}, z = {zred[bad][0]})")
    ref = emulator.bands.index(reference) if reference else nb // 2
    seqs = np.random.SeedSequence(seed).spawn(2 + 3 * bias_sims)
    modes = _Modes(model, emulator, obs.flux, obs.err, zred, obs.mask, floor, sigma_emu)
    args = (t_idx, len(labels), ref, iterations, tol_mag, clip, ndraws, nstarts)
    log(f"calibrating {G} galaxies in {len(labels)} tract(s)")
    mcmc = (chains, sweeps, steps)

    def estimate(m, s1, s2):
        est = _estimate(m, *args, np.random.default_rng(s1), log)
        if method == "marginal":
            log("marginal likelihood: sampling the calibrators' posteriors")
            est = _marginal(m, t_idx, est, np.random.default_rng(s2), *mcmc, log, burn)
        return est

    est = estimate(modes, seqs[0], seqs[1])
    offset, error = est["offset"], est["error"]
    calls = modes.calls
    sims = []
    for s in range(bias_sims):
        log(f"simulated calibration set {s + 1}/{bias_sims} (estimator bias)")
        fake, fake_err, _ = _mock_like(model, modes, np.random.default_rng(seqs[2 + 3 * s]),
                                       ref, offset, t_idx)
        sim = _Modes(model, emulator, fake, fake_err, zred, obs.mask, floor, sigma_emu)
        e_s = estimate(sim, seqs[3 + 3 * s], seqs[4 + 3 * s])
        sims.append((e_s["offset"] - offset, e_s["error"]))
        calls += sim.calls
    bias = np.zeros_like(offset)
    if sims:
        # one bias per band, pooled over the sets and the tracts (it depends on the population
        # and the errors, not on where on the sky a tract is); known to the sets' own scatter
        bias[:] = np.mean([o for o, _ in sims], axis=(0, 1))
        var_b = np.mean([e ** 2 for _, e in sims], axis=(0, 1)) / (len(sims) * len(labels))
        error = np.sqrt(error ** 2 + var_b)
    it, converged = est["it"], est["converged"]
    log(f"offsets after {it} steps{'' if converged else ' (not converged)'}"
        + (f", then {sweeps} sweeps (Monte Carlo spread {est['mc_spread']:.4f} mag)"
           if method == "marginal" else "")
        + f"; largest bias correction {np.max(np.abs(bias)):.4f} mag")
    return {"tracts": labels, "bands": list(emulator.bands), "offset": offset - bias,
            "error": error, "bias": bias, "n": est["n"], "iterations": it,
            "reference": emulator.bands[ref], "chi2": est["chi2"], "converged": converged,
            "emulator_calls": calls, "method": method,
            "mode_offset": est.get("mode_offset", est["offset"]),
            "mc_spread": est.get("mc_spread", 0.0),
            "trajectory": est.get("trajectory", np.zeros((0,) + offset.shape))}
