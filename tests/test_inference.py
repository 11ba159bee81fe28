"""dynesty with the batching dispatcher, the batch-fit library call with both samplers, the
photo-z redshift prior table, and a two-mode photo-z posterior with a known answer."""

import threading

import numpy as np
import pytest
from scipy import special, stats

from sedhpc.emulator import Emulator, io
from sedhpc.model import Tabulated, get_model
from sedhpc.photometry import A, B, U0
from sedhpc.samplers import (BatchDispatcher, fit_batch, photoz_model, pz_summary,
                             run_nested)


# -- the redshift prior table ------------------------------------------------------------------
def test_tabulated_prior_is_exact(tmp_path):
    x, p = [0.0, 0.5, 1.0, 3.0], [0.0, 2.0, 0.1, 1.0]
    t = Tabulated(x, p)
    u = np.linspace(0, 1, 101)
    np.testing.assert_allclose(t.cdf(t.ppf(u)), u, atol=1e-12)
    from scipy.integrate import quad
    assert quad(lambda v: np.exp(t.logpdf(np.array([v]))[0]), 0, 3, points=[0.5, 1])[0] == \
        pytest.approx(1.0, abs=1e-8)
    draws = t.sample(np.random.default_rng(0), 100000)
    assert stats.kstest(draws, t.cdf).pvalue > 1e-3
    f = tmp_path / "pz.txt"
    f.write_text("# z p\n" + "\n".join(f"{a} {b}" for a, b in zip(x, p)))
    np.testing.assert_allclose(Tabulated.read(f).ppf(u), t.ppf(u))
    assert Tabulated(**{k: v for k, v in t.spec().items() if k in "xp"}).spec() == t.spec()
    for bad in (([0, 1], [0, 0]), ([1, 0], [1, 1]), ([0, 1], [1, -1]), ([0], [1])):
        with pytest.raises(ValueError):
            Tabulated(*bad)


# -- the dispatcher ----------------------------------------------------------------------------
def test_dispatcher_batches_calls_from_threads():
    seen = []

    def fn(u, g):
        seen.append(len(u))
        return u.sum(axis=1) * 10 + g

    disp = BatchDispatcher(fn, 8)
    out = {}

    def work(g):
        try:
            out[g] = [disp(np.full(2, k), g) for k in range(50)]
        finally:
            disp.leave()

    ts = [threading.Thread(target=work, args=(g,)) for g in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g in range(8):
        assert out[g] == [20.0 * k + g for k in range(50)]
    assert disp.nrows == 400 and sum(seen) == 400 and disp.nbatches == len(seen) < 400
    assert max(seen) == 8


def test_dispatcher_error_reaches_every_caller():
    def fn(u, g):
        raise RuntimeError("kernel failed")

    disp = BatchDispatcher(fn, 3)
    errs = []

    def work():
        try:
            disp(np.zeros(1), 0)
        except RuntimeError as exc:
            errs.append(str(exc))
        finally:
            disp.leave()

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert errs == ["kernel failed"] * 3


# -- dynesty on analytic posteriors --------------------------------------------------------------
def gaussian_unit(G, d, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.3, 0.7, (G, d))
    sd = rng.uniform(0.02, 0.06, (G, d))

    def loglike(u, g):
        return -0.5 * np.sum(((u - mu[g]) / sd[g]) ** 2 + np.log(2 * np.pi * sd[g] ** 2), axis=1)
    return mu, sd, loglike


def test_nested_batched_equals_plain_and_recovers_gaussians():
    G, d = 4, 3
    mu, sd, loglike = gaussian_unit(G, d)
    stats_ = {}
    done = []
    batched = run_nested(loglike, d, range(G), seed=4, nlive=100, nsamples=2000,
                         nconcurrent=3, stats=stats_, callback=lambda r: done.append(r.galaxy))
    plain = run_nested(loglike, d, [3, 2, 0, 1], seed=4, nlive=100, nsamples=2000,
                       batched=False)
    assert sorted(done) == list(range(G))  # each galaxy exactly once
    assert stats_["rows"] > 0
    assert stats_["batches"] < stats_["rows"] / 2  # calls really were gathered
    for g in range(G):
        b, p = batched[g], plain[g]
        # same seed per galaxy, deterministic likelihood: identical runs whatever ran beside
        np.testing.assert_array_equal(b.samples, p.samples)
        assert b.logz == p.logz and b.ncall == p.ncall
        np.testing.assert_allclose(b.samples.mean(axis=0), mu[g], atol=4 * sd[g].max() / 10)
        np.testing.assert_allclose(b.samples.std(axis=0) / sd[g], 1.0, atol=0.15)
        # the likelihood integrates to 1 over the unit cube: log Z = 0
        assert abs(b.logz) < 4 * b.logzerr + 0.05 and b.ess > 300


def test_dynamic_nested_runs():
    mu, sd, loglike = gaussian_unit(1, 2, seed=1)
    res = run_nested(loglike, 2, range(1), seed=0, nlive=100, dynamic=True, nsamples=1000,
                     maxbatch=3)
    for g, r in res.items():
        np.testing.assert_allclose(r.samples.mean(axis=0), mu[g], atol=0.02)
        assert abs(r.logz) < 0.3


# -- an emulator whose photometry depends on redshift only: a known two-mode posterior ----------
NAMES = get_model("embedded").names
BANDS = ["b1", "b2", "b3", "b4"]
ZC, S, K1, K2, M0 = 1.5, 4.0, 3.0, 1.5, 22.0


def v_emulator():
    """mag_j(z) = M0 + K1·GELU(S(z − ZC)) + K2·GELU(−S(z − ZC)) in every band: a 'V' in z."""
    d, iz = len(NAMES), NAMES.index("zred")
    w0 = np.zeros((d, 2))
    w0[iz] = [1.0, -1.0]
    w1 = np.zeros((2, len(BANDS) + 1))
    w1[0, :-1], w1[1, :-1] = K1, K2
    b = get_model("embedded").bounds
    lo, hi = b[:, 0].copy(), b[:, 1].copy()
    lo[iz], hi[iz] = 0.001, 3.0
    mean, std = (lo + hi) / 2, (hi - lo) / 3
    mean[iz], std[iz] = ZC, 1.0 / S
    net = io.Network([w0, w1], [np.zeros(2), np.zeros(len(BANDS) + 1)], mean, std,
                     np.r_[np.full(len(BANDS), M0), -0.2], lo, hi, (0.001, 3.0),
                     residuals=np.zeros((len(BANDS) + 1, 11)),
                     residual_cov=np.eye(len(BANDS) + 1))
    return Emulator(io.EmulatorFile([net], NAMES, BANDS, {"model": "embedded"}), xp="numpy")


def gelu(x):
    return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def exact_low_mass(flux, err):
    """P(z < ZC | data) by quadrature (uniform prior on [0.001, 3])."""
    z = np.linspace(0.001, 3.0, 300001)
    m = M0 + K1 * gelu(S * (z - ZC)) + K2 * gelu(-S * (z - ZC))
    x = 2 * B * np.sinh((U0 - m) / A)
    logl = -0.5 * np.sum(((flux[:, None] - x) / err[:, None]) ** 2, axis=0)
    w = np.exp(logl - logl.max())
    return w[z < ZC].sum() / w.sum()


@pytest.mark.parametrize("sampler,opts", [("ensemble", {"nslots": 1}),
                                          ("dynesty", {"nlive": 300})])
def test_two_mode_photoz_mode_masses(sampler, opts):
    emu = v_emulator()
    model = photoz_model(get_model("embedded"), emu)
    m_obs = M0 + K1 * 2.0  # reached at z = ZC + 0.5 and, less steeply, at z = ZC − 1
    x = np.full(len(BANDS), 2 * B * np.sinh((U0 - m_obs) / A))
    err = 0.05 * x
    ref = exact_low_mass(x, err)
    assert 0.55 < ref < 0.8  # two real modes, unequal
    r = fit_batch(model, emu, x[None], err[None], floor=0.0, sigma_emu=0.0, sampler=sampler,
                  seed=5, nsamples=2000, **opts)[0]
    z = r.samples[:, model.index("zred")]
    assert abs(np.mean(z < ZC) - ref) < 0.1, (np.mean(z < ZC), ref)
    assert np.all(np.abs(np.abs(z - ZC) - np.where(z < ZC, 1.0, 0.5)) < 0.2)  # on the peaks
    assert r.pz is not None and r.pz["z2p5"] < ZC < r.pz["z97p5"]
    assert np.sum(r.pz["pdf"] * np.diff(r.pz["edges"])) == pytest.approx(1.0)
    # the other parameters follow their prior: logmass uniform on [6, 12.5] (mean 9.25,
    # sd 1.876); tolerances allow for the samples' correlation (ESS ≥ 200)
    lm = r.samples[:, model.index("logmass")]
    assert abs(lm.mean() - 9.25) < 0.4 and abs(lm.std() / 1.876 - 1) < 0.12


def test_photoz_prior_table_and_errors(tmp_path):
    emu = v_emulator()
    base = get_model("embedded")
    f = tmp_path / "pz.txt"
    f.write_text("0.001 0\n1.0 1\n2.0 0\n")
    m = photoz_model(base, emu, f)
    assert isinstance(m.params[m.index("zred")].prior, Tabulated) and not m.fixed
    f.write_text("0.001 0\n5.0 1\n")
    with pytest.raises(ValueError, match="cut the table"):
        photoz_model(base, emu, f)
    flux = np.ones((2, len(BANDS))) * 1e-9
    with pytest.raises(ValueError, match="give zred"):
        fit_batch(base, emu, flux, flux * 0.1)
    with pytest.raises(ValueError, match="outside the emulator's range"):
        fit_batch(base, emu, flux, flux * 0.1, zred=[1.0, 4.0])
    with pytest.raises(ValueError, match="unknown sampler"):
        fit_batch(base, emu, flux, flux * 0.1, zred=[1.0, 1.0], sampler="emcee")


def test_pz_summary():
    z = np.random.default_rng(0).normal(1.0, 0.05, 20000)
    s = pz_summary(z, (0.001, 3.0))
    assert s["z_median"] == pytest.approx(1.0, abs=0.005)
    assert s["z84"] - s["z16"] == pytest.approx(0.1, rel=0.05)
    assert abs(s["z_mode"] - 1.0) < 0.05


# -- both samplers on one emulator mock, through the library call --------------------------------
def test_fit_batch_both_samplers_agree_on_a_mock():
    from test_emulator import mock_emulator, mock_photometry
    emu = mock_emulator()
    model = get_model("embedded")
    rng = np.random.default_rng(4)
    truth = model.sample(rng, 2, np.full((2, 1), 1.0))
    flux, err = mock_photometry(emu, truth, rng)
    mask = np.ones_like(flux, bool)
    mask[1, 0] = False
    err[0, 1] = -1.0  # a bad error: that band is dropped and the galaxy flagged
    out = {s: fit_batch(model, emu, flux, err, zred=[1.0, 1.0], mask=mask, floor=0.0,
                        sampler=s, seed=3, **o)
           for s, o in (("ensemble", {"nslots": 2}), ("dynesty", {"nlive": 200}))}
    k = model.index("logmass")
    for g in range(2):
        e, d = out["ensemble"][g], out["dynesty"][g]
        assert e.diagnostics["bad_error"] == (g == 0) and d.diagnostics["nbands"] == 8
        for r in (e, d):
            assert r.samples.shape == (256, 16) and np.all(r.samples[:, -4] == 1.0)
            assert np.all(np.isfinite(r.derived["logmstar"])) and np.isfinite(r.chi2_best)
        qe, qd = np.percentile(e.samples[:, k], [16, 50, 84]), np.percentile(d.samples[:, k],
                                                                            [16, 50, 84])
        D = abs(qe[1] - qd[1]) / np.hypot((qe[2] - qe[0]) / 2, (qd[2] - qd[0]) / 2)
        assert D < 1.0, D
        assert "logz" in d.diagnostics and "tau" in e.diagnostics


def test_ensemble_on_gpu_matches_cpu():
    from sedhpc.emulator import gpu_available
    if not gpu_available():
        pytest.skip("no usable GPU (CuPy absent or no device)")
    from test_emulator import mock_emulator, mock_photometry
    model = get_model("embedded")
    rng = np.random.default_rng(4)
    truth = model.sample(rng, 4, np.full((4, 1), 1.0))
    flux, err = mock_photometry(mock_emulator(), truth, rng)
    k = model.index("logmass")
    med = {}
    for xp in ("numpy", "cupy"):
        emu = mock_emulator(xp=xp)
        res = fit_batch(model, emu, flux, err, zred=np.ones(4), floor=0.0, seed=3,
                        nsamples=1000)
        med[xp] = np.array([np.percentile(r.samples[:, k], [16, 50, 84]) for r in res])
        assert all(isinstance(r.samples, np.ndarray) for r in res)
    w = (med["numpy"][:, 2] - med["numpy"][:, 0]) / 2
    assert np.all(np.abs(med["numpy"][:, 1] - med["cupy"][:, 1]) < 0.5 * w)


@pytest.mark.slow
@pytest.mark.parametrize("sampler,opts", [("ensemble", {}), ("dynesty", {"nlive": 300})])
def test_simulation_based_calibration(sampler, opts):
    """200 prior mocks through a small random emulator: the truth falls inside the 68 % / 95 %
    intervals of logmass, logzsol and dust2 68 ± 5 % / 95 ± 3 % of the time (fixed seeds; the
    full-size run on the bundled emulator is tools/validate_inference.py)."""
    from test_emulator import mock_emulator, mock_photometry
    emu = mock_emulator(seed=8)
    model = get_model("embedded")
    rng = np.random.default_rng(9)
    n = 200
    z = rng.uniform(0.05, 2.5, n)
    truth = model.sample(rng, n, z[:, None])
    flux, err = mock_photometry(emu, truth, rng)
    res = fit_batch(model, emu, flux, err, zred=z, floor=0.0, sigma_emu=0.0, sampler=sampler,
                    seed=2, **opts)
    for name in ("logmass", "logzsol", "dust2"):
        k = model.index(name)
        q = np.array([np.percentile(r.samples[:, k], [2.5, 16, 84, 97.5]) for r in res])
        t = truth[:, k]
        in68 = np.mean((q[:, 1] <= t) & (t <= q[:, 2]))
        in95 = np.mean((q[:, 0] <= t) & (t <= q[:, 3]))
        assert abs(in68 - 0.68) <= 0.05 and abs(in95 - 0.95) <= 0.03, (name, in68, in95)
