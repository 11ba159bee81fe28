"""The batched ensemble sampler on analytic targets: moments, convergence flags, continuous
batching (every galaxy once, independent of batch composition), a bimodal target."""

import numpy as np
import pytest

from sedhpc.samplers import EnsembleSampler, autocorr_time, split_rhat

D = 4


def gaussians(n, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 3, (n, D))
    scale = rng.uniform(0.05, 2.0, (n, D))  # galaxies converge at different speeds
    return mu, scale


def gauss_logp(mu, scale):
    def logp(x, g):
        return -0.5 * np.sum(((x - mu[g]) / scale[g]) ** 2, axis=1)
    return logp


def box_init(rng, g, n):
    return rng.uniform(-10, 10, (n, D))


def test_gaussian_moments_and_batching():
    mu, scale = gaussians(12)
    calls = []

    def logp(x, g):
        calls.append(len(x))
        return gauss_logp(mu, scale)(x, g)
    s = EnsembleSampler(logp, box_init, D, nslots=4, seed=1, nsamples=2000, ess_min=400,
                        max_steps=3000)
    done = []
    res = s.run(range(12), callback=lambda r: done.append(r.galaxy))
    assert sorted(done) == list(range(12)) and len(done) == 12  # each exactly once
    for g, r in res.items():
        assert r.converged and r.samples.shape == (2000, D)
        z = (r.samples.mean(axis=0) - mu[g]) / scale[g]
        assert np.all(np.abs(z) < 0.25), (g, z)
        np.testing.assert_allclose(r.samples.std(axis=0) / scale[g], 1.0, atol=0.15)
        assert 0.2 < r.acceptance < 0.9 and r.rhat.max() < s.rhat_max
    # one log_prob call per half-step for all active slots (plus one per slot refill)
    assert max(calls) <= 4 * s.init_draws and np.median(calls) == 4 * s.W // 2


def test_results_do_not_depend_on_batch_composition():
    mu, scale = gaussians(6, seed=3)
    runs = [EnsembleSampler(gauss_logp(mu, scale), box_init, D, nslots=k, seed=7).run(
        order) for k, order in ((1, range(6)), (3, [5, 2, 0, 4, 1, 3]), (6, range(6)))]
    for g in range(6):
        for other in runs[1:]:
            np.testing.assert_array_equal(runs[0][g].samples, other[g].samples)


def test_grouped_calls_keep_chains_independent_of_the_batch():
    """With grouped=True each galaxy's rows reach log_prob as one contiguous run of
    ``group`` rows; a log_prob whose ungrouped values depend on the batch (as BLAS products
    do, in the last bits) then gives identical chains for any batch composition."""
    mu, scale = gaussians(6, seed=4)
    exact = gauss_logp(mu, scale)

    def logp(x, g, group=None):
        if group is None:  # batch-dependent values, like a flat BLAS product
            return exact(x, g) + 0.1 * np.sin(len(x) + np.arange(len(x)))
        runs = np.asarray(g).reshape(-1, group)
        assert np.all(runs == runs[:, :1]), "a galaxy's rows must form one group"
        return exact(x, g)

    def run(k, order, grouped):
        return EnsembleSampler(logp, box_init, D, nslots=k, seed=7, max_steps=400,
                               grouped=grouped).run(order)
    grouped = [run(k, o, True) for k, o in ((1, range(6)), (4, [5, 2, 0, 4, 1, 3]))]
    plain = [run(k, o, False) for k, o in ((1, range(6)), (4, [5, 2, 0, 4, 1, 3]))]
    for g in range(6):
        np.testing.assert_array_equal(grouped[0][g].samples, grouped[1][g].samples)
    assert any(not np.array_equal(plain[0][g].samples, plain[1][g].samples) for g in range(6))


def test_fit_batch_is_bit_identical_for_any_batch_composition():
    """The emulator path (grouped by default): one slot vs five slots, other order."""
    from sedhpc.model import get_model
    from sedhpc.samplers import fit_batch
    from test_emulator import mock_emulator, mock_photometry
    emu, model = mock_emulator(), get_model("embedded")
    rng = np.random.default_rng(8)
    z = rng.uniform(0.2, 2.0, 6)
    flux, err = mock_photometry(emu, model.sample(rng, 6, z[:, None]), rng)
    opts = dict(max_steps=150, min_steps=50, init_draws=64, floor=0.0, seed=2)
    a = fit_batch(model, emu, flux, err, zred=z, nslots=1, **opts)
    b = fit_batch(model, emu, flux, err, zred=z, nslots=5, **opts)
    for g in range(6):
        np.testing.assert_array_equal(a[g].samples, b[g].samples)
        assert a[g].chi2_best == b[g].chi2_best


def test_step_cap_flags_not_converged():
    mu, scale = gaussians(2)
    res = EnsembleSampler(gauss_logp(mu, scale), box_init, D, nslots=2, max_steps=60,
                          min_steps=50, tau_factor=1e6).run([0, 1])
    assert all(not r.converged and r.nsteps == 60 for r in res.values())


def test_bimodal_mode_masses():
    """Two well-separated modes with masses 0.3 / 0.7: DE moves move walkers between them."""
    def logp(x, g):
        a = -0.5 * np.sum(((x + 3.0) / 0.4) ** 2, axis=1) + np.log(0.3)
        b = -0.5 * np.sum(((x - 3.0) / 0.4) ** 2, axis=1) + np.log(0.7)
        return np.logaddexp(a, b)
    res = EnsembleSampler(logp, lambda rng, g, n: rng.uniform(-10, 10, (n, 2)), 2, nslots=1,
                          nwalkers=64, seed=2, de_fraction=0.5, nsamples=4000,
                          max_steps=6000).run([0])[0]
    frac = np.mean(res.samples[:, 0] > 0)
    assert abs(frac - 0.7) < 0.1, frac


def test_diagnostics_on_known_chains():
    rng = np.random.default_rng(0)
    T, W = 20000, 8
    phi = 0.9  # AR(1): τ = (1 + φ) / (1 − φ) = 19
    e = rng.standard_normal((T, 1, W, 1))
    x = np.zeros_like(e)
    for t in range(1, T):
        x[t] = phi * x[t - 1] + e[t]
    assert autocorr_time(x)[0, 0] == pytest.approx(19.0, rel=0.15)
    assert split_rhat(x)[0, 0] < 1.01
    x[:, :, :4] += 5.0  # walkers stuck apart
    assert split_rhat(x)[0, 0] > 1.5


def test_no_finite_start_is_reported_and_the_rest_go_on():
    mu, scale = np.zeros((3, D)), np.ones((3, D))
    good = gauss_logp(mu, scale)

    def logp(x, g):  # galaxy 1 has no finite log-probability anywhere
        return np.where(g == 1, -np.inf, good(x, g))
    s = EnsembleSampler(logp, box_init, D, nslots=1, max_steps=400)
    done = []
    res = s.run(iter([0, 1, 2]), callback=lambda r: done.append(r.galaxy))
    assert sorted(done) == [0, 1, 2] and sorted(res) == [0, 1, 2]
    assert "finite log-probability" in res[1].error and len(res[1].samples) == 0
    assert res[0].error is None and len(res[2].samples) == s.nsamples


def test_fit_recovers_mock_from_the_emulator_itself():
    """Mocks made with the emulator plus noise: the truth sits inside the posterior."""
    from sedhpc.model import get_model
    from sedhpc.samplers import fit_ensemble
    from test_emulator import mock_emulator, mock_photometry

    emu = mock_emulator()
    model = get_model("embedded")
    rng = np.random.default_rng(4)
    truth = model.sample(rng, 3, np.full((3, 1), 1.0))
    flux, err = mock_photometry(emu, truth, rng)
    res = fit_ensemble(model, emu, flux, err, zred=np.full(3, 1.0), floor=0.0, seed=3,
                       nslots=3, max_steps=3000)
    k = model.index("logmass")
    for r, t in zip(res, truth):
        assert r.samples.shape == (256, 16) and np.all(r.samples[:, model.index("zred")] == 1.0)
        lo, hi = np.percentile(r.samples[:, k], [0.5, 99.5])
        assert lo < t[k] < hi
        np.testing.assert_allclose(r.derived["logmstar"] - r.samples[:, k],
                                   emu.predict(r.samples).log_mfrac, rtol=1e-6)
        assert r.diagnostics["ncall"] > 0 and np.isfinite(r.chi2_best)


def test_independence_moves_are_exact_and_mix_faster():
    """Independence proposals (the default; t fitted to the burn-in, in rounds): a correlated
    8-d Gaussian keeps its moments and τ drops several-fold against stretch/DE moves alone
    (``ind_fraction=0``); a two-mode target keeps its masses."""
    d = 8
    rng = np.random.default_rng(4)
    a = rng.standard_normal((d, d))
    cov = a @ a.T / d + np.diag(rng.uniform(0.01, 1.0, d))
    prec = np.linalg.inv(cov)

    def logp(x, g):
        return -0.5 * np.einsum("ni,ij,nj->n", x, prec, x)

    def init(rng, g, n):
        return 2.0 * rng.standard_normal((n, d))

    plain = EnsembleSampler(logp, init, d, nslots=6, seed=3, nsamples=2000,
                            max_steps=3000, ind_fraction=0.0).run(range(6))
    ind = EnsembleSampler(logp, init, d, nslots=6, seed=3, nsamples=2000, max_steps=3000,
                          ind_fraction=0.8).run(range(6))
    tau_plain = np.median([r.tau.max() for r in plain.values()])
    tau_ind = np.median([r.tau.max() for r in ind.values()])
    assert tau_ind < tau_plain / 3, (tau_ind, tau_plain)
    pooled = np.concatenate([r.samples for r in ind.values()])  # 12000 samples, ESS ≥ 1500
    assert all(r.converged for r in ind.values())
    np.testing.assert_allclose(pooled.mean(axis=0) / np.sqrt(np.diag(cov)), 0.0, atol=0.1)
    np.testing.assert_allclose(np.var(pooled, axis=0) / np.diag(cov), 1.0, atol=0.12)

    def two(x, g):
        lo = -0.5 * np.sum(((x + 1.0) / 0.4) ** 2, axis=1) + np.log(0.3)
        return np.logaddexp(lo, -0.5 * np.sum(((x - 1.0) / 0.4) ** 2, axis=1) + np.log(0.7))
    res = EnsembleSampler(two, lambda rng, g, n: rng.uniform(-3, 3, (n, 4)), 4, nslots=8,
                          seed=2, nsamples=4000, max_steps=3000, min_steps=2000,
                          ind_fraction=0.8).run(range(8))
    frac = np.mean([np.mean(r.samples[:, 0] > 0) for r in res.values()])
    assert abs(frac - 0.7) < 0.03, frac
    with pytest.raises(ValueError, match="ind_fraction"):
        EnsembleSampler(two, None, 4, ind_fraction=1.5)


def test_laplace_start_is_exact_and_cheaper_on_a_gaussian():
    """``laplace_steps``: the first independence proposal from a Laplace fit at the best
    walker. On a correlated 8-d Gaussian (where the Laplace fit is the target itself) the
    moments stay exact (12 × 256 samples pooled), galaxies converge in fewer likelihood calls than with the chain fit
    after ``adapt_steps``, and chains do not depend on the batch's composition."""
    d = 8
    rng = np.random.default_rng(5)
    a = rng.standard_normal((d, d))
    cov = a @ a.T / d + np.diag(rng.uniform(0.01, 1.0, d))
    prec = np.linalg.inv(cov)
    shift = rng.normal(0, 2, (12, d))

    def logp(x, g, group=None):
        r = x - shift[g]
        return -0.5 * np.einsum("ni,ij,nj->n", r, prec, r)

    def init(rng, g, n):
        return 3.0 * rng.standard_normal((n, d))

    kw = dict(seed=3, max_steps=3000)
    base = EnsembleSampler(logp, init, d, nslots=6, **kw).run(range(12))
    lap = EnsembleSampler(logp, init, d, nslots=6, laplace_steps=50, **kw).run(range(12))
    assert all(r.converged for r in lap.values())
    assert np.median([r.ncall for r in lap.values()]) < 0.7 * np.median(
        [r.ncall for r in base.values()])
    pooled = np.concatenate([r.samples - shift[g] for g, r in lap.items()])
    np.testing.assert_allclose(pooled.mean(axis=0) / np.sqrt(np.diag(cov)), 0.0, atol=0.1)
    np.testing.assert_allclose(np.var(pooled, axis=0) / np.diag(cov), 1.0, atol=0.12)
    one = EnsembleSampler(logp, init, d, nslots=1, laplace_steps=50, grouped=True,
                          **kw).run([4, 1])
    many = EnsembleSampler(logp, init, d, nslots=6, laplace_steps=50, grouped=True,
                           **kw).run(range(6))
    for g in (4, 1):
        np.testing.assert_array_equal(one[g].samples, many[g].samples)
    with pytest.raises(ValueError, match="laplace"):
        EnsembleSampler(logp, init, d, laplace_steps=-1)


@pytest.mark.parametrize("bad", [{"max_steps": -3}, {"check_every": 0}, {"nsamples": 0},
                                 {"min_steps": -1}, {"rhat_max": 1.0}])
def test_bad_settings_give_a_clear_error(bad):
    """Nonsense settings (e.g. ``sedhpc fit --option max_steps=-3``) fail at construction with a
    message naming them, not deep inside the run."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        EnsembleSampler(lambda x, g: np.zeros(len(x)), lambda rng, g, n: np.zeros((n, 2)), 2,
                        **bad)
