"""Batched affine-invariant ensemble MCMC over many galaxies at once, with continuous batching.

G slots × W walkers advance together: each half-step proposes new positions for half of every
active slot's walkers and evaluates all of them in **one** call of ``log_prob``. Moves: stretch
(Goodman & Weare 2010), differential evolution (ter Braak 2006; also jumps between modes) and
(by default, ``ind_fraction`` = 0.8; 0 turns them off) independence proposals from a
multivariate Student t fitted to the galaxy's own chain. Stretch and DE moves alone mix slowly
in ~15 dimensions: integrated autocorrelation time τ ≈ 70 steps on a correlated 15-d Gaussian,
≈ 80–100 on faint galaxies' posteriors and ≈ 150–250 on well-measured ones, whose posteriors
are curved ridges in the SFH ratios, dust and metallicity. An independence move, when
accepted, gives the walker a fresh draw: τ falls to ≈ 6 steps on the Gaussian, and galaxies
converge in a third of the steps (docs/BENCHMARKS.md, "Ensemble moves"). Adaptation is done in
rounds: after ``adapt_steps`` (400) steps the proposal is (re)fitted to the second half of the
chain so far and the burn-in starts again, so every chain used for the output has one fixed
transition kernel — exact MCMC whatever the fit's quality (a poor fit only lowers the
acceptance of those moves). The first fit must see enough of the posterior: after 100 steps
(τ ≈ 150 there) a well-measured galaxy's t is too narrow and few converge; after 400 most do.

A galaxy leaves its slot when it has converged or hit ``max_steps`` (then it is flagged not
converged), and the next pending galaxy takes the slot, so the batch stays full.

Convergence (checked after ``min_steps``, then every ``check_every`` steps or every
``check_growth`` × the chain length if that is longer — a check costs FFTs over the whole
chain, so checks thin out as chains grow), on the second half of
the chain (the first half is burn-in): its length exceeds ``tau_factor`` × the largest
integrated autocorrelation time τ, the effective sample size W·T/τ reaches ``ess_min``, and
split R-hat over walkers is below ``rhat_max`` for every parameter.

Galaxies are taken from the ``galaxies`` iterable only when a slot frees up, so a caller can
feed it lazily (the catalog engine claims work from other ranks that way).

Randomness: every galaxy draws from its own generator (``SeedSequence(seed,
spawn_key=(key,))``, key = ``keys(galaxy)``, by default the galaxy id itself) in blocks of
``check_every`` steps, so its chain does not depend on
which galaxies share the batch, and all per-step arithmetic is vectorised over slots.
The state lives in the array module ``xp`` (numpy or CuPy; ``log_prob`` then receives and
returns that module's arrays); convergence checks run on the host.
Output: ``nsamples`` equal-weight samples per galaxy drawn from the post-burn-in chain thinned
by ⌈τ/2⌉.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .diagnostics import autocorr_time, split_rhat


@dataclass
class EnsembleResult:
    """Per-galaxy output: samples (nsamples, d), their log_prob, diagnostics."""
    galaxy: int
    samples: np.ndarray
    log_prob: np.ndarray
    tau: np.ndarray
    rhat: np.ndarray
    ess: float
    nsteps: int
    ncall: int
    acceptance: float
    converged: bool
    resets: int = 0  # times stuck walkers were moved (burn-in restarted)
    error: str | None = None  # set when the galaxy could not be sampled (samples empty)


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


class _Lazy:
    """An iterable read on demand: ``take(n)`` → up to n items; truthy while items may remain."""

    def __init__(self, items):
        self.it, self.buf = iter(items), deque()

    def take(self, n: int) -> list:
        out = [self.buf.popleft() for _ in range(min(n, len(self.buf)))]
        while len(out) < n:
            try:
                out.append(int(next(self.it)))
            except StopIteration:
                break
        return out

    def __bool__(self) -> bool:
        if not self.buf:
            try:
                self.buf.append(int(next(self.it)))
            except StopIteration:
                return False
        return True


class EnsembleSampler:
    """``log_prob(x (n, d), galaxy (n,)) → (n,)`` evaluates any mix of galaxies in one call;
    ``init(rng, galaxy, n) → (n, d)`` draws starting candidates (e.g. from the prior): the best
    W of ``init_draws`` (all slots being filled evaluated in one call) start the walkers.

    ``de_fraction``: probability per galaxy and half-step of a differential-evolution move
    (γ = ``de_gamma``, default 2.38/√(2d), or 1 with probability ``de_jump`` for jumps between
    modes) instead of a stretch
    move (scale ``stretch_a``). ``store_every``: keep every k-th step of the chains (memory
    max_steps/k × slots × W × d × 4 bytes); τ is reported in steps either way.

    ``ind_fraction``: probability per galaxy and half-step of an independence move once the
    galaxy has a fitted proposal (multivariate t, ``ind_nu`` degrees of freedom, mean and
    covariance of the second half of its chain so far), fitted ``adapt_rounds`` times, each
    ``adapt_steps`` steps after the last (burn-in restarts after each fit: the output chain
    has a fixed kernel). From the second fit on, the probability is scaled by
    min(1, acceptance of the independence moves in the last round / ``ind_target``), so narrow
    or curved posteriors, where such proposals rarely land, keep mostly stretch/DE moves.
    ``ind_fraction=0`` gives the plain stretch/DE sampler.

    ``laplace_steps`` (default 0: off): after that many steps, fit the first proposal by a
    Laplace approximation at the best walker (:meth:`_fit_laplace`: 1 + 2d² evaluations, one
    call) instead of to the chain, so independence moves start early; the chain fits follow
    every ``adapt_steps`` as before. Each fit still restarts the burn-in, so the output chain
    has a fixed kernel whatever the approximation's quality. Measured (docs/BENCHMARKS.md,
    "Ensemble moves"): cheaper for faint galaxies, worse for well-measured ones (the curvature
    at the mode misses a ridge's extent), worse overall — hence off by default.

    ``grouped``: call ``log_prob(x, galaxy, group=R)``, the rows of each galaxy being R
    consecutive rows, for a ``log_prob`` whose values depend in the last bits on the other
    rows of a call (an emulator's BLAS products: :meth:`sedhpc.emulator.Emulator.predict`). A
    last-bit difference can flip an acceptance and send a chain elsewhere; with groups
    evaluated alone, every galaxy's chain is bit-identical whatever shares the batch."""

    def __init__(self, log_prob, init, ndim: int, nslots: int = 64, nwalkers: int | None = None,
                 seed: int = 0, de_fraction: float = 0.5, stretch_a: float = 2.0,
                 init_draws: int = 512, check_every: int = 50, min_steps: int = 200,
                 max_steps: int = 5000, tau_factor: float = 10.0, rhat_max: float = 1.1,
                 nsamples: int = 256, ess_min: float | None = None, store_every: int = 1,
                 stuck_gap: float | None = None, de_gamma: float | None = None,
                 de_jump: float = 0.1, check_growth: float = 0.1, ind_fraction: float = 0.8,
                 adapt_steps: int = 400, adapt_rounds: int = 3, ind_nu: int = 15,
                 ind_target: float = 0.1, grouped: bool = False, laplace_steps: int = 0,
                 laplace_step: float = 0.05, laplace_inflate: float = 1.2,
                 xp=None, keys=None, tick=None):
        self.log_prob, self.init, self.d = log_prob, init, int(ndim)
        self.grouped = bool(grouped)
        w = nwalkers or max(16, 2 * self.d + 2)
        self.W = w + (w % 2)
        self.nslots, self.seed = int(nslots), seed
        if not 0 <= de_fraction <= 1:
            raise ValueError(f"de_fraction must be in [0, 1]; got {de_fraction}")
        self.de_fraction, self.a = de_fraction, stretch_a
        self.de_gamma = 2.38 / np.sqrt(2 * self.d) if de_gamma is None else float(de_gamma)
        self.de_jump = float(de_jump)
        if not 0 <= ind_fraction <= 1:
            raise ValueError(f"ind_fraction must be in [0, 1]; got {ind_fraction}")
        if int(ind_nu) < 1 or int(adapt_steps) < 2 * check_every or int(adapt_rounds) < 0:
            raise ValueError("need ind_nu ≥ 1, adapt_steps ≥ 2 check_every, adapt_rounds ≥ 0")
        self.ind_fraction, self.ind_nu = float(ind_fraction), int(ind_nu)
        self.adapt_steps, self.adapt_rounds = int(adapt_steps), int(adapt_rounds)
        self.ind_target = float(ind_target)
        if self.ind_fraction == 0:
            self.adapt_rounds = 0
        if int(laplace_steps) < 0 or not (laplace_step > 0 and laplace_inflate > 0):
            raise ValueError("need laplace_steps ≥ 0, laplace_step > 0, laplace_inflate > 0")
        self.laplace_steps = int(laplace_steps) if self.adapt_rounds else 0
        self.laplace_step, self.laplace_inflate = float(laplace_step), float(laplace_inflate)
        ints = {"nslots": nslots, "check_every": check_every, "max_steps": max_steps,
                "store_every": store_every, "nsamples": nsamples, "init_draws": init_draws}
        bad = [f"{k}={v}" for k, v in ints.items() if not int(v) >= 1]
        if int(min_steps) < 0 or not (tau_factor > 0 and rhat_max > 1):
            bad.append(f"min_steps={min_steps}, tau_factor={tau_factor}, rhat_max={rhat_max}")
        if bad:
            raise ValueError("need nslots, check_every, max_steps, store_every, nsamples, "
                             "init_draws ≥ 1, min_steps ≥ 0, tau_factor > 0, rhat_max > 1; got "
                             + ", ".join(bad))
        self.init_draws = max(int(init_draws), self.W)
        self.check_every, self.min_steps, self.max_steps = check_every, min_steps, max_steps
        self.check_growth = float(check_growth)
        if check_every % store_every or max_steps % store_every:
            raise ValueError("check_every and max_steps must be multiples of store_every")
        self.store_every = int(store_every)
        self.tau_factor, self.rhat_max, self.nsamples = tau_factor, rhat_max, nsamples
        self.ess_min = nsamples if ess_min is None else ess_min
        self.xp = np if xp is None else xp
        self.stuck_gap = (5.0 * np.sqrt(self.d / 2.0) + 5.0) if stuck_gap is None else stuck_gap
        self.keys = keys  # galaxy → seed key (e.g. its catalog row); default: the galaxy id
        self.tick = tick  # called once per step (e.g. to answer other MPI ranks)
        self.ncall = 0

    def _rng(self, galaxy: int) -> np.random.Generator:
        key = int(galaxy) if self.keys is None else int(self.keys(galaxy))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))

    def _eval(self, x, gal, group: int):
        """log_prob of rows ``x`` (n, d) of galaxies ``gal`` (n,), each galaxy's ``group``
        rows consecutive; non-finite values → −inf."""
        xp = self.xp
        self.ncall += len(x)
        lp = self.log_prob(x, gal, group=group) if self.grouped else self.log_prob(x, gal)
        lp = xp.asarray(lp, dtype=xp.float64)
        return xp.where(xp.isfinite(lp), lp, -xp.inf)

    def run(self, galaxies, callback=None, keep: bool = True) -> dict[int, EnsembleResult]:
        """Sample every galaxy id in ``galaxies`` (any iterable, read lazily: the next id is
        taken when a slot frees up); ``callback(result)`` is called as each one finishes
        (``result.error`` set, samples empty, when a galaxy has no finite starting point).
        Returns {galaxy: EnsembleResult} (empty with ``keep=False``: results only go to the
        callback, for long streams)."""
        xp = self.xp
        pending = _Lazy(galaxies)
        S = self.nslots if not hasattr(galaxies, "__len__") else min(self.nslots, len(galaxies))
        S, W, d = max(S, 1), self.W, self.d
        h, K = W // 2, self.check_every
        self._ncol = 2 + 4 * h + (1 if self.adapt_rounds else 0)
        nu = self.ind_nu
        rounds = np.zeros(S, int)  # proposal fits done for the slot's galaxy
        frac = np.full(S, self.ind_fraction)  # the slot's probability of an independence move
        iprop, iacc = np.zeros(S), np.zeros(S)  # independence moves tried / accepted
        lap = np.zeros(S, bool)  # the slot's galaxy has had its Laplace fit (laplace_steps)
        pmu = xp.zeros((S, d))
        pL = xp.broadcast_to(xp.eye(d), (S, d, d)).copy()
        pLi = pL.copy()
        # per-slot normals for independence moves: (S, K, 2 halves, h, d + ν), float32
        nbuf = xp.zeros((S, K, 2, h, d + nu), np.float32) if self.adapt_rounds else None
        gal = np.full(S, -1)
        x = xp.zeros((S, W, d))
        lp = xp.full((S, W), -np.inf)
        steps = np.zeros(S, int)
        start = np.zeros(S, int)  # step where the current burn-in began
        next_check = np.zeros(S, int)
        resets = np.zeros(S, int)
        accepted = np.zeros(S)
        calls = np.zeros(S, int)
        nstore = self.max_steps // self.store_every
        chain = xp.zeros((nstore, S, W, d), np.float32)
        lpchain = xp.zeros((nstore, S, W), np.float32)
        # per-slot random numbers for the next K steps: (S, K, 2 halves, 2 + 4h)
        ubuf = xp.zeros((S, K, 2, self._ncol))
        rngs: list = [None] * S
        results: dict[int, EnsembleResult] = {}
        keep_results = keep

        def report(res):
            if keep_results:
                results[res.galaxy] = res
            if callback:
                callback(res)

        while np.any(gal >= 0) or pending:
            if self.tick:
                self.tick()
            free = np.flatnonzero(gal < 0)
            if free.size and pending:
                self._fill(free, pending, gal, x, lp, steps, accepted, calls, rngs, report)
                start[free], resets[free], next_check[free], rounds[free] = 0, 0, 0, 0
                frac[free], iprop[free], iacc[free], lap[free] = self.ind_fraction, 0, 0, False
            act = np.flatnonzero(gal >= 0)
            if not act.size:
                continue
            for s in act[steps[act] % K == 0]:
                ubuf[s] = xp.asarray(rngs[s].random((K, 2, self._ncol)))
                if nbuf is not None and rounds[s]:
                    nbuf[s] = xp.asarray(rngs[s].standard_normal((K, 2, h, d + nu),
                                                                 dtype=np.float32))
            xa = xp.asarray(act)
            kk = xp.asarray(steps[act] % K)
            u = ubuf[xa, kk]  # (A, 2, ncol)
            if nbuf is not None and rounds[act].any():
                nrm = nbuf[xa, kk]  # (A, 2, h, d + ν)
                has = xp.asarray(rounds[act] > 0)
                fr_a = xp.asarray(frac[act])
                mu_a, L_a, Li_a = pmu[xa], pL[xa], pLi[xa]
            else:
                nrm = None
            for half in (0, 1):
                mov = slice(0, h) if half == 0 else slice(h, W)
                oth = slice(h, W) if half == 0 else slice(0, h)
                xm, lm = x[xa, mov], lp[xa, mov]
                ind = None if nrm is None else (
                    has & (u[:, half, 2 + 4 * h] < fr_a), nrm[:, half], mu_a, L_a, Li_a)
                y, logq = self._propose(xm, x[xa, oth], u[:, half], ind)
                ly = self._eval(y.reshape(-1, d), xp.asarray(np.repeat(gal[act], h)),
                                h).reshape(len(act), h)
                calls[act] += h
                ok = xp.log(u[:, half, 2 + 3 * h:2 + 4 * h]) < logq + ly - lm
                x[xa, mov] = xp.where(ok[:, :, None], y, xm)
                lp[xa, mov] = xp.where(ok, ly, lm)
                accepted[act] += _host(ok.sum(axis=1))
                if ind is not None:
                    iprop[act] += h * _host(ind[0])
                    iacc[act] += _host((ok & ind[0][:, None]).sum(axis=1))
            steps[act] += 1
            keep = act[steps[act] % self.store_every == 0]
            if keep.size:
                k = xp.asarray(keep)
                row = xp.asarray(steps[keep] // self.store_every - 1)
                chain[row, k] = x[k].astype(np.float32)
                lpchain[row, k] = lp[k].astype(np.float32)
            for s in act:
                n = steps[s]
                if n % K and n < self.max_steps:
                    continue
                if n < self.max_steps and self._unstick(s, x, lp, lpchain, n, rngs[s]):
                    start[s], resets[s] = n, resets[s] + 1  # burn-in begins again
                    rounds[s] = 0 if rounds[s] >= self.adapt_rounds else rounds[s]
                    continue
                if (self.laplace_steps and not lap[s] and n < self.max_steps
                        and rounds[s] == 0 and n - start[s] >= self.laplace_steps):
                    lap[s] = True
                    if self._fit_laplace(s, gal[s], x, lp, calls, pmu, pL, pLi):
                        rounds[s] += 1
                        iprop[s] = iacc[s] = 0
                        start[s], next_check[s] = n, 0  # burn-in begins again
                        continue
                if (n < self.max_steps and rounds[s] < self.adapt_rounds
                        and n - start[s] >= self.adapt_steps):
                    a, m = (start[s] + n) // 2 // self.store_every, n // self.store_every
                    if self._fit_proposal(_host(chain[a:m, s]), s, pmu, pL, pLi):
                        if rounds[s] and iprop[s]:  # fewer independence moves if they fail
                            rate = iacc[s] / iprop[s]
                            frac[s] = self.ind_fraction * min(1.0, rate / self.ind_target)
                        rounds[s] += 1
                        iprop[s] = iacc[s] = 0
                        start[s], next_check[s] = n, 0  # burn-in begins again
                        continue
                if n >= self.max_steps or (n - start[s] >= self.min_steps
                                           and n >= next_check[s]):
                    grow = int(np.ceil(self.check_growth * n / K)) * K
                    next_check[s] = n + max(K, grow)
                    a, m = start[s] // self.store_every, n // self.store_every
                    res = self._maybe_finish(gal[s], _host(chain[a:m, s]),
                                             _host(lpchain[a:m, s]), n, calls[s], accepted[s],
                                             rngs[s], resets[s])
                    if res is not None:
                        gal[s] = -1
                        report(res)
        return results

    def _fill(self, free, pending, gal, x, lp, steps, accepted, calls, rngs, report):
        """Load pending galaxies into free slots: best W of ``init_draws`` draws each, all
        evaluated in one call. A galaxy without a finite draw is reported failed."""
        xp = self.xp
        load = [(s, g) for s, g in zip(free, pending.take(len(free)))]
        if not load:
            return
        cand, owner = [], []
        for s, g in load:
            rngs[s] = self._rng(g)
            cand.append(np.asarray(self.init(rngs[s], g, self.init_draws), float))
            owner.append(np.full(self.init_draws, g))
        lpc = _host(self._eval(xp.asarray(np.concatenate(cand)),
                               xp.asarray(np.concatenate(owner)), self.init_draws))
        for k, (s, g) in enumerate(load):
            lpk = lpc[k * self.init_draws:(k + 1) * self.init_draws]
            if not np.isfinite(lpk).any():
                gal[s] = -1
                report(EnsembleResult(
                    int(g), np.zeros((0, self.d)), np.zeros(0), np.full(self.d, np.nan),
                    np.full(self.d, np.nan), 0.0, 0, self.init_draws, 0.0, False,
                    error=f"none of {self.init_draws} starting draws has a finite "
                          "log-probability"))
                continue
            best = np.argsort(lpk, kind="stable")[::-1][:self.W]
            x[s], lp[s] = xp.asarray(cand[k][best]), xp.asarray(lpk[best])
            gal[s], steps[s], accepted[s], calls[s] = g, 0, 0, self.init_draws

    def _propose(self, xm, xo, u, ind=None):
        """Proposals for the moving walkers ``xm`` (A, h, d) given the other half ``xo`` and
        uniforms ``u`` (A, 2 + 4h [+ 1]) per slot: [move, γ, z or ε (h), partner i (h),
        partner j (h), accept (h), independence move (only if enabled)]; ``ind`` = (use (A,),
        normals (A, h, d + ν), μ (A, d), L (A, d, d), L⁻¹) for independence moves, or None.
        Returns (y, log proposal factor)."""
        xp = self.xp
        A, h, d = xm.shape
        de = u[:, 0] < self.de_fraction
        ar = xp.arange(A)[:, None]
        r1, i1, i2 = u[:, 2:2 + h], u[:, 2 + h:2 + 2 * h], u[:, 2 + 2 * h:2 + 3 * h]
        # stretch: y = c + z (x − c), z ~ g(z) ∝ 1/√z on [1/a, a]
        z = ((self.a - 1.0) * r1 + 1.0) ** 2 / self.a
        c = xo[ar, xp.minimum((i1 * h).astype(np.int64), h - 1)]
        ys = c + z[:, :, None] * (xm - c)
        # differential evolution: y = x + γ(1 + ε)(x_i − x_j), i ≠ j from the other half
        ii = xp.minimum((i1 * h).astype(np.int64), h - 1)
        jj = (ii + 1 + xp.minimum((i2 * (h - 1)).astype(np.int64), h - 2)) % h
        gamma = xp.where(u[:, 1] < self.de_jump, 1.0, self.de_gamma)
        g = gamma[:, None] * (1.0 + 0.1 * (r1 - 0.5))
        yd = xm + g[:, :, None] * (xo[ar, ii] - xo[ar, jj])
        y = xp.where(de[:, None, None], yd, ys)
        logq = xp.where(de[:, None], 0.0, (d - 1.0) * xp.log(z))
        if ind is None:
            return y, logq
        use, nrm, mu, L, Li = ind
        # independence: y = μ + L ε √(ν/χ²_ν), factor q(x)/q(y) with the t density
        nu = self.ind_nu
        nrm = nrm.astype(xp.float64)
        chi2 = xp.maximum(xp.sum(nrm[..., d:] ** 2, axis=-1), 1e-30)  # 0 in unused slots
        yi = mu[:, None] + xp.einsum("aij,ahj->ahi", L, nrm[..., :d]) * xp.sqrt(
            nu / chi2)[..., None]

        def logt(v):
            r = xp.einsum("aij,ahj->ahi", Li, v - mu[:, None])
            return -0.5 * (nu + d) * xp.log1p(xp.sum(r * r, axis=-1) / nu)
        y = xp.where(use[:, None, None], yi, y)
        logq = xp.where(use[:, None], logt(xm) - logt(yi), logq)
        return y, logq

    def _fit_proposal(self, chain, s, pmu, pL, pLi) -> bool:
        """Fit the independence proposal of slot ``s`` to ``chain`` (T, W, d): mean and
        covariance of all its points (t scale matrix Σ (ν−2)/ν for ν > 2, so the proposal's
        covariance is Σ). False (nothing changed) if the covariance is not positive definite."""
        xp = self.xp
        pts = chain.reshape(-1, self.d).astype(float)
        mu = pts.mean(axis=0)
        cov = np.cov(pts, rowvar=False).reshape(self.d, self.d)
        nu = self.ind_nu
        cov = cov * ((nu - 2.0) / nu if nu > 2 else 1.0)
        cov += 1e-12 * np.trace(cov) / self.d * np.eye(self.d)
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return False
        if not np.all(np.isfinite(L)):
            return False
        pmu[s], pL[s], pLi[s] = xp.asarray(mu), xp.asarray(L), xp.asarray(np.linalg.inv(L))
        return True

    def _fit_laplace(self, s, g, x, lp, calls, pmu, pL, pLi) -> bool:
        """Fit slot ``s``'s first independence proposal by a Laplace approximation instead of
        to its chain: at the best walker x₀, the gradient and Hessian of log_prob by central
        and second differences (step ``laplace_step``; 1 + 2d² points in one call, as one
        group), one Newton step toward the mode along the directions of negative curvature,
        and a t centred there with scale ``laplace_inflate``² × (−H)⁻¹. Directions without
        negative curvature take the walkers' own spread. Deterministic. False (nothing
        changed) if any point is not finite."""
        xp, d, h = self.xp, self.d, self.laplace_step
        walkers = _host(x[s]).astype(float)
        x0 = walkers[int(np.argmax(_host(lp[s])))]
        e = np.eye(d) * h
        iu, ju = np.triu_indices(d, 1)
        pts = np.concatenate([x0[None], x0 + e, x0 - e,
                              x0 + e[iu] + e[ju], x0 + e[iu] - e[ju],
                              x0 - e[iu] + e[ju], x0 - e[iu] - e[ju]])
        f = _host(self._eval(xp.asarray(pts), xp.asarray(np.full(len(pts), g)),
                             len(pts))).astype(float)
        calls[s] += len(pts)
        if not np.all(np.isfinite(f)):
            return False
        fp, fm, q = f[1:1 + d], f[1 + d:1 + 2 * d], f[1 + 2 * d:].reshape(4, -1)
        grad = (fp - fm) / (2 * h)
        hess = np.diag((fp - 2 * f[0] + fm) / h ** 2)
        hess[iu, ju] = hess[ju, iu] = (q[0] - q[1] - q[2] + q[3]) / (4 * h * h)
        w, v = np.linalg.eigh(-0.5 * (hess + hess.T))
        curved = w > 0
        spread = np.var((walkers - walkers.mean(axis=0)) @ v, axis=0)
        var = np.where(curved, 1.0 / np.where(curved, w, 1.0), np.maximum(spread, 1e-12))
        step = np.where(curved, (v.T @ grad) * var, 0.0)  # Newton, in the eigenbasis
        mahal = np.sqrt(np.sum(step ** 2 / var))
        if mahal > 3.0:  # the quadratic model is a local one: at most 3σ from x₀
            step *= 3.0 / mahal
        mu = x0 + v @ step
        cov = (v * (self.laplace_inflate ** 2 * var)) @ v.T
        cov = 0.5 * (cov + cov.T) + 1e-12 * np.trace(cov) / d * np.eye(d)
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return False
        if not (np.all(np.isfinite(L)) and np.all(np.isfinite(mu))):
            return False
        pmu[s], pL[s], pLi[s] = xp.asarray(mu), xp.asarray(L), xp.asarray(np.linalg.inv(L))
        return True

    def _unstick(self, s, x, lp, lpchain, n, rng) -> bool:
        """Walkers whose best log-probability over the last ``check_every`` steps lies more
        than ``stuck_gap`` below the slot's median (left behind in a negligible local mode, or
        from initialisation) are moved onto randomly chosen other walkers. True if any was."""
        xp = self.xp
        m = n // self.store_every
        k = max(1, self.check_every // self.store_every)
        if m < k:
            return False
        best = _host(lpchain[m - k:m, s].max(axis=0)).astype(float)
        now = _host(lp[s])
        stuck = best < np.median(now) - self.stuck_gap
        if not stuck.any() or stuck.all():
            return False
        good = np.flatnonzero(~stuck)
        src = good[rng.integers(len(good), size=int(stuck.sum()))]
        dst = np.flatnonzero(stuck)
        x[s, xp.asarray(dst)] = x[s, xp.asarray(src)]
        lp[s, xp.asarray(dst)] = lp[s, xp.asarray(src)]
        return True

    def _maybe_finish(self, g, chain, lpchain, n, ncall, accepted, rng, resets=0):
        burn = len(chain) // 2
        post = chain[burn:][:, None]  # (T, 1, W, d), float32
        tau = autocorr_time(post)[0] * self.store_every  # in steps
        rhat = split_rhat(post.astype(float))[0]
        length = (len(chain) - burn) * self.store_every
        ess = float(self.W * length / tau.max())
        converged = bool(length > self.tau_factor * tau.max() and ess >= self.ess_min
                         and rhat.max() < self.rhat_max)
        if not converged and n < self.max_steps:
            return None
        thin = max(1, int(np.ceil(np.nanmax(tau) / 2 / self.store_every)))
        pool = chain[burn::thin].reshape(-1, self.d)
        lpool = lpchain[burn::thin].reshape(-1)
        pick = rng.choice(len(pool), size=self.nsamples, replace=len(pool) < self.nsamples)
        return EnsembleResult(int(g), pool[pick].astype(float), lpool[pick].astype(float), tau,
                              rhat, ess, int(n), int(ncall), float(accepted / (n * self.W)),
                              converged, int(resets))
