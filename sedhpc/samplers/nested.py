"""dynesty per galaxy — the robust reference sampler — with batched likelihood calls.

dynesty's pool maps whole proposal *walks* (``internal_sampler.sample`` in
``sampler._fill_queue``), each making sequential single-point likelihood calls, so a pool batches
only ``sample='unif'``. Here many galaxies' samplers run concurrently, one thread each, and a
:class:`BatchDispatcher` gathers their pending likelihood calls: when every running sampler is
waiting for a likelihood value, the calls are evaluated together in **one** batched call (one
emulator kernel call) and the samplers resume. dynesty's own Python work still runs one thread
at a time; what the dispatcher removes is the per-call cost of a batch-1 kernel call.

dynesty samples the unit cube with the identity as its prior transform; the batched function
maps the cube to parameters (vectorised) and evaluates the likelihood, so per-point Python work
stays inside dynesty. That cube need not be the prior's own: :func:`~.fit.fit_batch` gives it
the mass-shear coordinates by posterior repartitioning (:meth:`~.fit.Problem.loglike_shear_unit`).
Every galaxy's sampler gets its own generator (``SeedSequence(seed, spawn_key=(galaxy,))``), so
its run does not depend on which galaxies run beside it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

LOGL_FLOOR = -1e300  # dynesty wants finite log-likelihoods: −inf (outside ranges) maps here


class BatchDispatcher:
    """Collects single-point calls ``dispatcher(u, galaxy)`` from ``nthreads`` threads and
    evaluates them together as ``batch_fn(U (n, d), galaxy (n,)) → (n,)`` once every thread
    that has not left (:meth:`leave`) is waiting. Counts batches and rows."""

    def __init__(self, batch_fn, nthreads: int):
        self.fn = batch_fn
        self.cv = threading.Condition()
        self.active = int(nthreads)
        self.pending: list = []
        self.nbatches = 0
        self.nrows = 0

    def __call__(self, u, galaxy: int) -> float:
        req = [np.asarray(u, float), int(galaxy), None, None]  # u, galaxy, value, error
        with self.cv:
            self.pending.append(req)
            if len(self.pending) >= self.active:
                self._flush()
            while req[2] is None and req[3] is None:
                self.cv.wait()
        if req[3] is not None:
            raise req[3]
        return req[2]

    def leave(self):
        """The calling thread will make no more calls."""
        with self.cv:
            self.active -= 1
            if self.pending and len(self.pending) >= self.active:
                self._flush()

    def _flush(self):  # with self.cv held; every other thread is waiting
        reqs, self.pending = self.pending, []
        try:
            out = np.asarray(self.fn(np.stack([r[0] for r in reqs]),
                                     np.array([r[1] for r in reqs])), float)
            for r, v in zip(reqs, out):
                r[2] = float(v) if np.isfinite(v) else LOGL_FLOOR
        except BaseException as exc:  # every waiting sampler sees the error
            for r in reqs:
                r[3] = exc
        self.nbatches += 1
        self.nrows += len(reqs)
        self.cv.notify_all()


@dataclass
class NestedResult:
    """Per-galaxy output: equal-weight samples (nsamples, d) in the unit cube, their log L,
    log evidence and its error, likelihood calls, Kish effective sample size."""
    galaxy: int
    samples: np.ndarray
    log_like: np.ndarray
    logz: float
    logzerr: float
    ncall: int
    niter: int
    ess: float
    converged: bool = True


def _run_one(g, loglike, ndim, seed, nlive, dynamic, dlogz, sample, maxcall, nsamples,
             maxbatch, walks, slices, bound, key):
    import dynesty

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(key),)))
    ident = _identity
    if dynamic:
        s = dynesty.DynamicNestedSampler(loglike, ident, ndim, bound=bound, sample=sample,
                                         walks=walks, slices=slices, rstate=rng)
        s.run_nested(nlive_init=nlive, dlogz_init=dlogz, maxcall=maxcall,
                     maxbatch=maxbatch, wt_kwargs={"pfrac": 1.0}, print_progress=False)
    else:
        s = dynesty.NestedSampler(loglike, ident, ndim, nlive=nlive, bound=bound,
                                  sample=sample, walks=walks, slices=slices, rstate=rng)
        s.run_nested(dlogz=dlogz, maxcall=maxcall, print_progress=False)
    r = s.results
    w = r.importance_weights()
    pick = rng.choice(len(w), size=nsamples, p=w / w.sum())
    ncall = int(np.sum(r.ncall))
    return NestedResult(int(g), np.asarray(r.samples)[pick], np.asarray(r.logl)[pick],
                        float(r.logz[-1]), float(r.logzerr[-1]), ncall, int(r.niter),
                        float(1.0 / np.sum((w / w.sum()) ** 2)),
                        converged=maxcall is None or ncall < maxcall)


def _identity(u):
    return u


def run_nested(batch_loglike, ndim: int, galaxies, seed: int = 0, nlive: int = 400,
               dynamic: bool = False, dlogz: float = 0.1, sample: str = "rslice",
               maxcall: int | None = None, nsamples: int = 256, nconcurrent: int = 64,
               maxbatch: int | None = None, walks: int | None = None,
               slices: int | None = None, bound: str = "multi", batched: bool = True,
               callback=None,
               stats: dict | None = None, keys=None, tick=None,
               keep: bool = True) -> dict[int, NestedResult]:
    """Run dynesty (static, or dynamic with ``dynamic=True``) on every galaxy id in
    ``galaxies``. ``batch_loglike(U (n, ndim) unit cube, galaxy (n,)) → log L (n,)``.
    ``nlive`` live points (the initial run's, when dynamic; ``maxbatch`` caps the dynamic
    batches, which otherwise go on to dynesty's default stopping rule, posterior-weighted);
    ``dlogz`` the stopping tolerance; ``sample`` dynesty's proposal: "rslice" by default
    (random slices, ndim + 3 per proposal) — with "rwalk" (dynesty's own choice for 10–20
    dimensions) the 17-parameter posteriors came out too narrow on multimodal galaxies
    (docs/inference); ``walks`` the random-walk length of ``sample='rwalk'``
    (dynesty's default: ndim + 20); ``slices`` the slice updates per proposal of
    ``sample='rslice'`` (default ndim + 3) or ``'slice'`` (default 3 sweeps); ``maxcall`` a
    cap on likelihood calls per galaxy (hit → ``converged`` False); ``bound`` dynesty's bounding
    distribution ("multi" ellipsoids by default; for the slice proposals it sets the slice
    directions' scales).

    With ``batched`` (default), up to ``nconcurrent`` galaxies run at once in threads and their
    likelihood calls are evaluated together through a :class:`BatchDispatcher`; a finished
    galaxy's thread takes the next pending one. ``batched=False`` runs them one after another
    with single-point calls (the reference for the dispatcher's gain). ``callback(result)`` is
    called as each galaxy finishes; ``stats`` (a dict) receives the dispatcher's counts
    (batches, rows). ``galaxies`` is read lazily (the next id when a thread is free);
    galaxy g seeds from ``SeedSequence(seed, spawn_key=(keys(g),))`` (default key: g);
    ``tick()`` is called about every 50 ms from the calling thread (e.g. to answer other MPI
    ranks). Returns {galaxy: NestedResult} (empty with ``keep=False``)."""
    todo = iter(galaxies)
    results: dict[int, NestedResult] = {}
    opts = dict(ndim=ndim, seed=seed, nlive=nlive, dynamic=dynamic, dlogz=dlogz, sample=sample,
                maxcall=maxcall, nsamples=nsamples, maxbatch=maxbatch, walks=walks,
                slices=slices, bound=bound)
    lock = threading.Lock()

    def key(g):
        return g if keys is None else int(keys(g))

    def finish(res):
        with lock:
            if keep:
                results[res.galaxy] = res
            if callback:
                callback(res)

    if not batched:
        for g in todo:
            g = int(g)
            finish(_run_one(g, lambda u, g=g: float(np.nan_to_num(
                batch_loglike(np.asarray(u, float)[None], np.array([g]))[0],
                nan=LOGL_FLOOR, neginf=LOGL_FLOOR)), key=key(g), **opts))
            if tick:
                tick()
        return results

    nthreads = max(1, int(nconcurrent) if not hasattr(galaxies, "__len__")
                   else min(int(nconcurrent), len(galaxies)))
    dispatcher = BatchDispatcher(batch_loglike, nthreads)
    errors: list = []

    def worker():
        try:
            while True:
                with lock:
                    g = None if errors else next(todo, None)
                if g is None:
                    return
                g = int(g)
                finish(_run_one(g, lambda u, g=g: dispatcher(u, g), key=key(g), **opts))
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            dispatcher.leave()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.05)
            if tick:
                with lock:
                    tick()
    if stats is not None:
        stats.update(batches=dispatcher.nbatches, rows=dispatcher.nrows, threads=nthreads)
    if errors:
        raise errors[0]
    return results
