"""Batched affine-invariant ensemble MCMC over many galaxies at once, with continuous batching.

G slots × W walkers advance together: each half-step proposes new positions for half of every
active slot's walkers (stretch moves, Goodman & Weare 2010, or differential-evolution moves,
ter Braak 2006, for multimodal posteriors) and evaluates all of them in **one** call of
``log_prob``. A galaxy leaves its slot when it has converged (chain length after burn-in
> ``tau_factor`` × its integrated autocorrelation time, effective sample size
W·T/τ ≥ ``ess_min``, split R-hat < ``rhat_max``) or hit
``max_steps`` (flagged not converged), and the next pending galaxy takes the slot, so the
batch stays full. Every galaxy draws its random numbers from its own generator
(``SeedSequence(seed, spawn_key=(galaxy,))``), so its chain does not depend on which galaxies
share the batch. Output: ``nsamples`` equal-weight samples per galaxy, thinned by τ/2.
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


class EnsembleSampler:
    """``log_prob(x (n, d), galaxy (n,)) → (n,)`` evaluates any mix of galaxies in one call;
    ``init(rng, galaxy, n) → (n, d)`` draws starting candidates (e.g. from the prior)."""

    def __init__(self, log_prob, init, ndim: int, nslots: int = 64, nwalkers: int | None = None,
                 seed: int = 0, de_fraction: float = 0.2, stretch_a: float = 2.0,
                 init_draws: int = 512, check_every: int = 50, min_steps: int = 200,
                 max_steps: int = 4000, tau_factor: float = 20.0, rhat_max: float = 1.05,
                 nsamples: int = 256, ess_min: float | None = None):
        self.log_prob, self.init, self.d = log_prob, init, int(ndim)
        w = nwalkers or max(16, 2 * self.d + 2)
        self.W = w + (w % 2)
        self.nslots, self.seed = int(nslots), seed
        self.de_fraction, self.a = de_fraction, stretch_a
        self.init_draws = max(int(init_draws), self.W)
        self.check_every, self.min_steps, self.max_steps = check_every, min_steps, max_steps
        self.tau_factor, self.rhat_max, self.nsamples = tau_factor, rhat_max, nsamples
        self.ess_min = nsamples if ess_min is None else ess_min
        self.ncall = 0

    def _rng(self, galaxy: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(int(galaxy),)))

    def _eval(self, x, gal):
        self.ncall += len(x)
        lp = np.asarray(self.log_prob(x, gal), float)
        return np.where(np.isfinite(lp), lp, -np.inf)

    def run(self, galaxies, callback=None) -> dict[int, EnsembleResult]:
        """Sample every galaxy id in ``galaxies``; ``callback(result)`` is called as each one
        finishes. Returns {galaxy: EnsembleResult}."""
        pending = deque(int(g) for g in galaxies)
        S, W, d = min(self.nslots, len(pending)) or 1, self.W, self.d
        gal = np.full(S, -1)
        x = np.zeros((S, W, d))
        lp = np.full((S, W), -np.inf)
        steps = np.zeros(S, int)
        accepted = np.zeros(S)
        calls = np.zeros(S, int)
        chain = np.zeros((self.max_steps, S, W, d), np.float32)
        lpchain = np.zeros((self.max_steps, S, W), np.float32)
        rngs: list = [None] * S
        results: dict[int, EnsembleResult] = {}
        half = W // 2
        while pending or np.any(gal >= 0):
            free = np.flatnonzero(gal < 0)
            if pending and free.size:
                self._fill(free, pending, gal, x, lp, steps, accepted, calls, rngs)
            act = np.flatnonzero(gal >= 0)
            for first in (True, False):
                mov = slice(0, half) if first else slice(half, W)
                oth = slice(half, W) if first else slice(0, half)
                y, logz = self._propose(x[act, mov], x[act, oth], [rngs[s] for s in act])
                ly = self._eval(y.reshape(-1, d), np.repeat(gal[act], half)).reshape(len(act),
                                                                                   half)
                calls[act] += half
                u = np.stack([rngs[s].random(half) for s in act])
                ok = np.log(u) < logz + ly - lp[act, mov]
                xs, ls = x[act, mov], lp[act, mov]
                xs[ok], ls[ok] = y[ok], ly[ok]
                x[act, mov], lp[act, mov] = xs, ls
                accepted[act] += ok.sum(axis=1)
            chain[steps[act], act] = x[act]
            lpchain[steps[act], act] = lp[act]
            steps[act] += 1
            for s in act:
                n = steps[s]
                if n >= self.max_steps or (n >= self.min_steps and n % self.check_every == 0):
                    res = self._maybe_finish(s, gal[s], chain[:n, s], lpchain[:n, s], n,
                                             calls[s], accepted[s], rngs[s])
                    if res is not None:
                        results[res.galaxy] = res
                        gal[s] = -1
                        if callback:
                            callback(res)
        return results

    def _fill(self, free, pending, gal, x, lp, steps, accepted, calls, rngs):
        """Load pending galaxies into free slots: best W of ``init_draws`` draws each, all
        evaluated in one call."""
        load = [(s, pending.popleft()) for s in free[:len(pending)]]
        cand, owner = [], []
        for s, g in load:
            rngs[s] = self._rng(g)
            cand.append(np.asarray(self.init(rngs[s], g, self.init_draws), float))
            owner.append(np.full(self.init_draws, g))
        lpc = self._eval(np.concatenate(cand), np.concatenate(owner))
        for k, (s, g) in enumerate(load):
            lpk = lpc[k * self.init_draws:(k + 1) * self.init_draws]
            if not np.isfinite(lpk).any():
                raise ValueError(f"galaxy {g}: none of {self.init_draws} starting draws has a "
                                 "finite log-probability")
            best = np.argsort(lpk)[::-1][:self.W]
            x[s], lp[s] = cand[k][best], lpk[best]
            gal[s], steps[s], accepted[s], calls[s] = g, 0, 0, self.init_draws

    def _propose(self, xm, xo, rngs):
        """Proposals for moving walkers ``xm`` (A, h, d) given the other half ``xo``; returns
        (y, log of the proposal-density factor). Per slot: stretch or DE."""
        A, h, d = xm.shape
        y = np.empty_like(xm)
        logz = np.zeros((A, h))
        for k, rng in enumerate(rngs):
            if rng.random() < self.de_fraction:
                i = rng.integers(h, size=h)
                j = (i + rng.integers(1, h, size=h)) % h
                gamma = 1.0 if rng.random() < 0.1 else 2.38 / np.sqrt(2 * d)
                y[k] = (xm[k] + gamma * (xo[k, i] - xo[k, j])
                        + 1e-6 * rng.standard_normal((h, d)))
            else:
                z = ((self.a - 1.0) * rng.random(h) + 1.0) ** 2 / self.a
                c = xo[k, rng.integers(h, size=h)]
                y[k] = c + z[:, None] * (xm[k] - c)
                logz[k] = (d - 1.0) * np.log(z)
        return y, logz

    def _maybe_finish(self, s, g, chain, lpchain, n, ncall, accepted, rng):
        burn = n // 2
        post = chain[burn:].astype(float)[:, None]  # (T, 1, W, d)
        tau = autocorr_time(post)[0]
        rhat = split_rhat(post)[0]
        ess = self.W * (n - burn) / tau.max()
        converged = bool((n - burn) > self.tau_factor * tau.max() and ess >= self.ess_min
                         and rhat.max() < self.rhat_max)
        if not converged and n < self.max_steps:
            return None
        thin = max(1, int(np.ceil(np.nanmax(tau) / 2)))
        pool = chain[burn::thin].reshape(-1, self.d)
        lpool = lpchain[burn::thin].reshape(-1)
        pick = rng.choice(len(pool), size=self.nsamples, replace=len(pool) < self.nsamples)
        return EnsembleResult(int(g), pool[pick].astype(float), lpool[pick].astype(float), tau,
                              rhat, float(ess), int(n), int(ncall), float(accepted / (n * self.W)),
                              converged)
