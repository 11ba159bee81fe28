"""dynesty with the batching dispatcher, the batch-fit library call with both samplers, the
photo-z redshift prior table, a two-mode photo-z posterior with a known answer, and the
ensemble's mass-shear coordinates (same posterior, unit-Jacobian shear)."""

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


def test_nested_single_bound_recovers_gaussians():
    """``bound`` reaches dynesty: one ellipsoid instead of several sets the slice directions."""
    mu, sd, loglike = gaussian_unit(2, 3, seed=2)
    res = run_nested(loglike, 3, range(2), seed=1, nlive=100, nsamples=2000, bound="single")
    multi = run_nested(loglike, 3, range(2), seed=1, nlive=100, nsamples=2000)
    for g, r in res.items():
        assert not np.array_equal(r.samples, multi[g].samples)
        np.testing.assert_allclose(r.samples.mean(axis=0), mu[g], atol=4 * sd[g].max() / 10)
        np.testing.assert_allclose(r.samples.std(axis=0) / sd[g], 1.0, atol=0.15)


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


# -- mass-shear coordinates ----------------------------------------------------------------------
def mass_ref_emulator(seed=21):
    """A random mass-normalised emulator (format 2): logmass weights zero, mass_ref 12.5."""
    from test_emulator import random_net
    from test_emulator import emu_file
    net = random_net(np.random.default_rng(seed), 32)
    net.weights[0][NAMES.index("logmass")] = 0.0
    net.attrs["mass_ref"] = 12.5
    net.residuals = np.zeros((len(net.y_mean), 11))
    net.residual_cov = np.eye(len(net.y_mean))
    return Emulator(emu_file([net]), xp="numpy")


def shear_problem(emu, n=2, seed=4):
    from test_emulator import mock_photometry
    from sedhpc.likelihood import Observations
    from sedhpc.samplers.fit import Problem
    model = get_model("embedded")
    truth = model.sample(np.random.default_rng(seed), n, np.full((n, 1), 1.0))
    flux, err = mock_photometry(emu, truth, np.random.default_rng(seed + 1))
    return model, truth, flux, err, Problem(model, emu, Observations.build(flux, err), np.ones(
        (n, 1)), floor=0.0, sigma_emu=0.0)


def test_mass_shear_is_a_unit_jacobian_change_of_variables():
    """The shear coordinates y map to θ with a triangular Jacobian (nothing but logmass depends
    on y_m; logmass depends on the rest through the best amplitude m*), and the sampler's
    target there equals log L + log prior(θ) (the model's own, mass–metallicity relation
    included) + log |det ∂θ/∂y| up to one constant: the same posterior as in probit space."""
    emu = mass_ref_emulator()
    model, truth, flux, err, prob = shear_problem(emu)
    assert prob.shear_ok and prob.kcond == [model.free_index.index(model.index("logzsol"))]
    free = list(model.free_index)
    rng = np.random.default_rng(0)
    consts = []
    for g in (0, 1):
        for _ in range(4):
            y = 0.8 * rng.standard_normal(prob.nfree)
            y[prob.km] = 0.3 * rng.standard_normal()
            gal = np.array([g])
            theta, ll = prob.theta_from_shear(y[None], gal)
            h = 1e-6
            jac = np.empty((prob.nfree, prob.nfree))
            for k in range(prob.nfree):
                yp, ym = y.copy(), y.copy()
                yp[k] += h
                ym[k] -= h
                jac[:, k] = (prob.theta_from_shear(yp[None], gal)[0][0, free]
                             - prob.theta_from_shear(ym[None], gal)[0][0, free]) / (2 * h)
            rest = [k for k in range(prob.nfree) if k != prob.km]
            assert np.all(jac[rest][:, prob.km] == 0.0)  # the rest ignores y_m
            off = jac[np.ix_(rest, rest)] - np.diag(np.diag(jac[np.ix_(rest, rest)]))
            assert np.all(off == 0.0)  # each of the rest depends on its own coordinate
            assert jac[prob.km, prob.km] == pytest.approx(1.0, rel=1e-6)  # SHEAR_SCALE dex
            # m* follows the rest (a shear; float32 fluxes need a larger step to show it)
            yp = y.copy()
            yp[rest] += 0.5
            assert abs(prob.theta_from_shear(yp[None], gal)[0][0, prob.im]
                       - theta[0, prob.im]) > 1e-5
            logdet = np.linalg.slogdet(jac)[1]
            lp = float(prob.logpost_shear(y[None], gal)[0])
            rest_lp = ll[0] + float(model.log_prob(theta)[0])
            if not np.isfinite(lp):  # outside the prior (or the emulator's ranges) both ways
                assert not np.isfinite(rest_lp)
                continue
            consts.append(lp - rest_lp - logdet)
    assert len(consts) >= 5 and np.ptp(consts) < 1e-5, consts


def test_nested_mass_shear_repartitions_the_prior_exactly():
    """dynesty's shear coordinates (posterior repartitioning): at unit-cube points u the
    weighted likelihood L' satisfies log L' = log L + log prior(θ) + log |det ∂θ/∂u| exactly
    (so π'L' = πL with π' uniform on the cube: the same posterior and the same evidence), is
    −inf where θ leaves the model's prior, and ``theta_from_shear_unit`` returns L itself."""
    emu = mass_ref_emulator()
    model, truth, flux, err, prob = shear_problem(emu)
    free = list(model.free_index)
    rng = np.random.default_rng(3)
    checked = outside = 0
    for g in (0, 1):
        gal = np.array([g])
        for _ in range(6):
            u = rng.uniform(0.05, 0.95, prob.nfree)
            u[prob.km] = rng.uniform(0.3, 0.7)
            theta, ll = prob.theta_from_shear_unit(u[None], gal)
            llp = float(prob.loglike_shear_unit(u[None], gal)[0])
            lp = float(model.log_prob(theta)[0])
            if not np.isfinite(lp):
                assert llp == -np.inf
                outside += 1
                continue
            h = 1e-6
            jac = np.empty((prob.nfree, prob.nfree))
            for k in range(prob.nfree):
                up, um = u.copy(), u.copy()
                up[k] += h
                um[k] -= h
                jac[:, k] = (prob.theta_from_shear_unit(up[None], gal)[0][0, free]
                             - prob.theta_from_shear_unit(um[None], gal)[0][0, free]) / (2 * h)
            assert jac[prob.km, prob.km] == pytest.approx(
                2 * (model.params[prob.im].prior.hi - model.params[prob.im].prior.lo), rel=1e-6)
            # L itself (float32 kernel evaluated at the mass vs scaled from the reference)
            np.testing.assert_allclose(ll, prob.lik(theta, gal), rtol=1e-4)
            assert llp == pytest.approx(ll[0] + lp + np.linalg.slogdet(jac)[1], abs=1e-5)
            checked += 1
    assert checked >= 6
    # logmass pushed past the prior's edge: no weight
    u = np.full((2, prob.nfree), 0.5)
    u[:, prob.km] = [0.0, 1.0]
    theta, _ = prob.theta_from_shear_unit(u, np.array([0, 0]))
    pm = model.params[prob.im].prior
    assert theta[0, prob.im] < pm.lo and theta[1, prob.im] > pm.hi
    assert np.all(prob.loglike_shear_unit(u, np.array([0, 0])) == -np.inf)


def test_dynesty_in_shear_and_unit_coordinates_agree():
    """fit_batch's dynesty takes the shear by default with a mass-normalised emulator: its
    samples carry the likelihood at the returned θ, lie inside the prior, and its posterior
    medians and log evidence agree with the unit-cube run's on the same galaxies."""
    emu = mass_ref_emulator()
    model, truth, flux, err, prob = shear_problem(emu, n=2, seed=6)
    out = {c: fit_batch(model, emu, flux, err, zred=np.ones(2), floor=0.0, sigma_emu=0.0,
                        sampler="dynesty", seed=3, nlive=100, dlogz=0.5, nsamples=500, coords=c)
           for c in ("auto", "probit")}
    assert [r.diagnostics["coords"] for r in out["auto"]] == ["shear", "shear"]
    assert [r.diagnostics["coords"] for r in out["probit"]] == ["unit", "unit"]
    k = model.index("logmass")
    for g in range(2):
        a, b = out["auto"][g], out["probit"][g]
        assert np.all(np.isfinite(model.log_prob(a.samples)))
        np.testing.assert_allclose(a.log_like, prob.lik(a.samples, np.full(500, g)), rtol=1e-4)
        qa, qb = (np.percentile(r.samples[:, k], [16, 50, 84]) for r in (a, b))
        assert abs(qa[1] - qb[1]) < 0.5 * np.hypot(qa[2] - qa[0], qb[2] - qb[0]) / 2, (qa, qb)
        da, db = a.diagnostics, b.diagnostics
        assert abs(da["logz"] - db["logz"]) < 4 * np.hypot(da["logzerr"], db["logzerr"]) + 0.5


def test_mass_shear_and_probit_sample_the_same_posterior():
    """Both coordinate systems on the same galaxies (mass-normalised emulator): posterior
    medians agree within 0.3 of the combined 16–84 % half-widths and widths within 25 % for
    logmass, logzsol, dust2 and log mfrac-weighted mass; 'auto' takes the shear here and the
    probit space for an emulator without a reference mass, and asking for the shear there
    fails clearly."""
    emu = mass_ref_emulator()
    model, truth, flux, err, _ = shear_problem(emu, n=3, seed=6)
    out = {c: fit_batch(model, emu, flux, err, zred=np.ones(3), floor=0.0, sigma_emu=0.0,
                        seed=2, nsamples=1000, coords=c, max_steps=10000)
           for c in ("auto", "probit")}
    assert all(r.diagnostics["coords"] == "shear" for r in out["auto"])
    assert all(r.diagnostics["coords"] == "probit" for r in out["probit"])
    for g in range(3):
        a, b = out["auto"][g], out["probit"][g]
        for name in ("logmass", "logzsol", "dust2"):
            k = model.index(name)
            qa, qb = (np.percentile(r.samples[:, k], [16, 50, 84]) for r in (a, b))
            wa, wb = (qa[2] - qa[0]) / 2, (qb[2] - qb[0]) / 2
            assert abs(qa[1] - qb[1]) / np.hypot(wa, wb) < 0.3, (g, name, qa, qb)
            assert abs(wa / wb - 1) < 0.25, (g, name, wa, wb)
        np.testing.assert_allclose(np.median(a.derived["logmstar"]),
                                   np.median(b.derived["logmstar"]), atol=0.3 * np.hypot(
                                       *(np.subtract(*np.percentile(r.derived["logmstar"],
                                                                    [84, 16])) / 2
                                         for r in (a, b))))
        # the stored log L is the likelihood at the returned θ
        assert np.isfinite(a.log_like).all() and a.log_like.max() >= b.log_like.max() - 5
    from test_emulator import mock_emulator
    plain = mock_emulator()
    r = fit_batch(model, plain, flux[:1], err[:1], zred=[1.0], seed=1, nsamples=64,
                  max_steps=400)[0]
    assert r.diagnostics["coords"] == "probit"
    with pytest.raises(ValueError, match="coords='shear' needs"):
        fit_batch(model, plain, flux[:1], err[:1], zred=[1.0], coords="shear")
    with pytest.raises(ValueError, match="coords must be"):
        fit_batch(model, emu, flux[:1], err[:1], zred=[1.0], coords="mass")


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


# -- BLAS threads while fitting ----------------------------------------------------------------
def test_fit_batch_limits_blas_threads_and_restores_them(monkeypatch):
    """One BLAS thread while fitting unless the user set a thread variable or ``threads``; the
    process's setting is restored afterwards."""
    import threadpoolctl

    from sedhpc import _threads
    from test_emulator import mock_emulator, mock_photometry

    def blas():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"]

    emu = mock_emulator()
    model = get_model("embedded")
    rng = np.random.default_rng(5)
    truth = model.sample(rng, 1, np.full((1, 1), 1.0))
    flux, err = mock_photometry(emu, truth, rng)
    before = blas()
    assert before, "numpy has no BLAS thread pool that threadpoolctl can see"

    def run(threads):
        seen = []
        fit_batch(model, emu, flux, err, zred=[1.0], floor=0.0, seed=1, max_steps=200,
                  min_steps=100, threads=threads, callback=lambda r: seen.append(blas()))
        assert blas() == before  # restored
        return seen[0]

    monkeypatch.setattr(_threads, "USER_SET", {})
    assert run(None) == [1] * len(before)
    if min(before) >= 2:  # (a pool started with one thread may not grow)
        assert run(2) == [2] * len(before)
    monkeypatch.setattr(_threads, "USER_SET", {"OMP_NUM_THREADS": "3"})
    assert run(None) == before  # the user's own setting is left alone
    with pytest.raises(ValueError, match="threads"):
        run(0)


def test_validate_inference_worker_processes_give_the_same_fits(tmp_path):
    """tools/validate_inference.py --procs: fits in forked workers equal the single-process
    ones galaxy by galaxy (each depends only on its index and the seed), the workers' CPU time
    is counted, and a rerun is read from the cache."""
    import sys
    from pathlib import Path

    from test_emulator import mock_emulator, mock_photometry
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import validate_inference as vi

    emu = mock_emulator(seed=3)
    model = get_model("embedded")
    rng = np.random.default_rng(4)
    z = rng.uniform(0.1, 2.0, 4)
    truth = model.sample(rng, 4, z[:, None])
    flux, err = mock_photometry(emu, truth, rng)
    opts = {"nlive": 40, "dlogz": 1.0}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, cpu1 = vi.run_fits("a", tmp_path / "one", model, emu, flux, err, z, "dynesty", opts)
    two, cpu2 = vi.run_fits("a", tmp_path / "two", model, emu, flux, err, z, "dynesty", opts,
                            procs=2)
    assert [r.galaxy for r in one] == [r.galaxy for r in two] == [0, 1, 2, 3]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.samples, b.samples)
    assert cpu1 > 0 and cpu2 > 0
    again, cpu3 = vi.run_fits("a", tmp_path / "two", model, emu, flux, err, z, "dynesty", opts,
                              procs=2)
    assert cpu3 == cpu2 and all(np.array_equal(a.samples, b.samples) for a, b in zip(two, again))
    # cache keys: photometry equal to float32 rounding (BLAS threads) names the same mocks
    key = '{"flux": 6.596618179e-4, "n": 200, "opts": {"coords": "auto"}, "sampler": "ensemble"}'
    assert vi.same_key(key, key.replace("6.596618179", "6.596617866"))
    assert not vi.same_key(key, key.replace("6.596618179", "6.596718179"))
    assert not vi.same_key(key, key.replace("auto", "probit"))
    # dynesty keys from before dynesty took coords name unit-cube ("probit") fits
    old = '{"flux": 1.0, "n": 16, "opts": {"nlive": 1000}, "sampler": "dynesty"}'
    assert vi.same_key(old, old.replace('"nlive"', '"coords": "probit", "nlive"'))
    assert not vi.same_key(old, old.replace('"nlive"', '"coords": "auto", "nlive"'))


def test_validate_inference_expected_coverage_of_n_draws():
    """The SBC reference of tools/validate_inference.py: the 16–84 % and 2.5–97.5 % percentile
    intervals of n independent draws from the true posterior contain the truth in
    (p_hi − p_lo)(n − 1)/(n + 1) of cases (10,000 simulated galaxies per n, tolerance 3σ)."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import validate_inference as vi

    rng = np.random.default_rng(7)
    m = 10_000
    for n in (64, 256):
        draws = rng.standard_normal((m, n))
        truth = rng.standard_normal(m)
        e = vi.expected_coverage([SimpleNamespace(samples=d[:, None]) for d in draws[:3]])
        assert e["n_samples"] == n
        lo68, hi68, lo95, hi95 = np.percentile(draws, [16, 84, 2.5, 97.5], axis=1)
        for got, want in (((lo68 <= truth) & (truth <= hi68), e["in68"]),
                          ((lo95 <= truth) & (truth <= hi95), e["in95"])):
            assert abs(got.mean() - want) < 3 * np.sqrt(want * (1 - want) / m)
    assert e["in95"] == pytest.approx(0.9426, abs=1e-4)
