"""The parameter-dependent emulator-error model (sedhpc.emulator.errors): the maximum-likelihood
fit recovers a known variance law, the kernel evaluates and blends it across windows, the
likelihood uses it, and on the bundled emulator with embedded-SPS calibration and test sets it
describes held-out residuals better than one σ per band."""

import json

import numpy as np
import pytest

from sedhpc.emulator import Emulator, default_path, errors, io
from sedhpc.likelihood import Likelihood, Observations
from sedhpc.model import get_model

NAMES = get_model("embedded").names
BANDS = [f"band{i}" for i in range(4)]
WINDOWS = [(0.0, 2.25), (1.75, 4.25)]


def test_fit_recovers_a_known_log_quadratic_variance_law():
    """r ~ N(0, exp(c0 + c1 x + c2 x²)) for 3 columns; 20,000 draws give each coefficient to
    ~0.01–0.02 (Fisher: sd ≈ sqrt(2/n) per unit-variance term); tolerance 0.06."""
    rng = np.random.default_rng(3)
    n = 20000
    x = rng.normal(size=n)
    P = np.column_stack([np.ones(n), x, x * x])
    true = np.array([[-6.0, 0.8, 0.0], [-7.0, 0.0, 0.3], [-5.0, 0.0, 0.0]])
    R = rng.normal(size=(n, 3)) * np.exp(0.5 * P @ true.T)
    C = errors.fit_log_variance(P, R, ridge=0.0)
    np.testing.assert_allclose(C, true, atol=0.06)
    # a ridge shrinks the slopes (not the intercept)
    C1 = errors.fit_log_variance(P, R, ridge=10.0)
    assert np.all(np.linalg.norm(C1[:2, 1:], axis=1) < 0.2 * np.linalg.norm(C[:2, 1:], axis=1))
    with pytest.raises(ValueError, match="too few"):
        errors.fit_log_variance(P[:10], R[:10])


def _net(rng, zrange):
    d, nout = len(NAMES), len(BANDS) + 1
    b = get_model("embedded").bounds
    lo, hi = b[:, 0].copy(), b[:, 1].copy()
    lo[NAMES.index("zred")], hi[NAMES.index("zred")] = zrange
    ws = [rng.normal(0, 1 / np.sqrt(d), (d, 16)), rng.normal(0, 0.25, (16, nout))]
    net = io.Network(ws, [np.zeros(16), rng.normal(25, 1, nout)], (lo + hi) / 2, (hi - lo) / 3,
                     np.zeros(nout), lo, hi, zrange)
    net.residuals = np.zeros((nout, 11))
    net.residuals[:, -1] = 0.03
    net.residual_cov = np.eye(nout)
    net.sigma_coef = np.zeros((len(BANDS), 1 + 2 * d))
    net.sigma_coef[:, 0] = 2 * np.log(0.02 * (1 + len(WINDOWS) * zrange[0]))
    net.sigma_coef[:, 1 + NAMES.index("dust2")] = rng.uniform(0.3, 1.0, len(BANDS))
    net.sigma_coef[:, 1 + d + NAMES.index("logzsol")] = 0.2
    return net


def _explicit_sigma(nets, theta, band_rows):
    """σ written out: per window log σ² = c·[1, x, x²], variances blended by the weights."""
    from sedhpc.emulator import stitch_weights

    w = stitch_weights(theta[:, NAMES.index("zred")], [n.zrange for n in nets])
    v = 0.0
    for k, net in enumerate(nets):
        x = (theta - net.x_mean) / net.x_std
        s = np.column_stack([np.ones(len(x)), x, x * x]) @ net.sigma_coef[band_rows].T
        v = v + w[:, k:k + 1] * np.exp(s)
    return np.sqrt(v)


def test_kernel_sigma_for_blends_windows_and_survives_the_file(tmp_path):
    from sedhpc.model import get_model

    rng = np.random.default_rng(4)
    nets = [_net(rng, w) for w in WINDOWS]
    path = io.write(tmp_path / "e.h5", io.EmulatorFile(nets, NAMES, BANDS, {"model": "embedded"}))
    back = io.read(path)
    for a, b in zip(nets, back.nets):
        np.testing.assert_array_equal(a.sigma_coef, b.sigma_coef)
    theta = get_model("embedded").training_distribution(zrange=(0.01, 4.2)).sample(rng, 300)
    emu = Emulator(path, xp="numpy", bands=["band2", "band0"])
    assert emu.has_sigma_model
    sig = emu.sigma_for(theta)
    np.testing.assert_allclose(sig, _explicit_sigma(nets, theta, [2, 0]), rtol=1e-10)
    dusty = theta.copy()
    dusty[:, NAMES.index("dust2")] += 0.3
    assert np.all(emu.sigma_for(dusty) > sig)  # the dust2 terms act (positive slopes)
    # without the model in every window: the per-band test-set σ at the redshift
    nets[1].sigma_coef = None
    plain = Emulator(io.EmulatorFile(nets, NAMES, BANDS, {}), xp="numpy")
    assert not plain.has_sigma_model
    np.testing.assert_allclose(plain.sigma_for(theta), 0.03)


def test_likelihood_uses_the_parameter_dependent_sigma(tmp_path):
    from test_likelihood import direct

    rng = np.random.default_rng(5)
    nets = [_net(rng, w) for w in WINDOWS]
    emu = Emulator(io.EmulatorFile(nets, NAMES, BANDS, {}), xp="numpy", dtype=np.float64)
    theta = get_model("embedded").training_distribution(zrange=(0.01, 4.2)).sample(rng, 40)
    x = np.asarray(emu.predict(theta).maggies, float)
    err = 0.02 * np.abs(x) + 1e-12
    flux = x * (1 + 0.05 * rng.normal(size=x.shape))
    mask = rng.uniform(size=x.shape) > 0.2
    lik = Likelihood(emu, Observations.build(flux, err, mask), floor=0.0)
    got = lik(theta, np.arange(len(theta)))
    sig = emu.sigma_for(theta)
    want = [direct(emu, theta[i:i + 1], flux[i:i + 1], err[i:i + 1], mask[i:i + 1], 0.0,
                   np.ones(len(BANDS)), sig[i])[0] for i in range(len(theta))]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # and it is not the per-band σ: that gives other numbers
    flat = Likelihood(emu, Observations.build(flux, err, mask), floor=0.0, sigma_emu=0.03)
    assert np.max(np.abs(flat(theta, np.arange(len(theta))) - got)) > 0.1


@pytest.fixture(scope="module")
def sps_sets(tmp_path_factory):
    """Calibration and test sets of the embedded SPS in the bundled emulator's bands."""
    from sedhpc.trainset import GenerateConfig, generate

    bands = Emulator(default_path(), xp="numpy").bands
    out = tmp_path_factory.mktemp("sigsets")
    for name, seed in (("cal", 31), ("test", 32)):
        cfg = GenerateConfig(out=str(out / name), n=2400, bands=bands, zrange=[0.001, 6.0],
                             seed=seed, chunk=600, progress=False)
        cfg.validate()
        generate(cfg, comm=None)
    return out


def test_bundled_emulator_sigma_model_on_embedded_sps_sets(sps_sets, tmp_path):
    """Fitted on 2,400 SPS draws (~800 per window), judged on 2,400 others: the held-out mean
    −log L per residual falls (σ(θ) describes where the emulator errs; the full-size run in
    the README: −5.49 → −6.22 for v0.3) and |r| < σ(θ) for a Gaussian-like fraction of residuals."""
    from sedhpc.cli import main

    out = tmp_path / "sig.h5"
    assert main(["emulator-sigma", str(default_path()), "--calset", str(sps_sets / "cal"),
                 "--testset", str(sps_sets / "test"), "--out", str(out)]) == 0
    emu = io.read(out)
    assert all(n.sigma_coef is not None for n in emu.nets)
    assert json.loads(emu.attrs["sigma_model"])["features"] == "quadratic"
    t = errors.judge(emu, sps_sets / "test")
    assert t["n"] > 2000
    assert t["nll_model"] < t["nll_per_band"] - 0.1, t
    assert 0.62 < t["within_1sigma"] < 0.85 and 0.9 < t["within_2sigma"] < 0.98, t
    with pytest.raises(SystemExit, match="differ"):
        main(["emulator-sigma", str(out), "--calset", str(sps_sets / "cal"), "--out", str(out)])
    # bad calibration sets: the emulator's own training set, a set without its bands
    from sedhpc.emulator.train import file_hash

    own = io.read(default_path())
    own.attrs["trainset_hash"] = file_hash(sps_sets / "cal" / "trainset.h5")
    with pytest.raises(ValueError, match="own training set"):
        errors.fit(own, sps_sets / "cal")
    rng = np.random.default_rng(6)
    other = io.EmulatorFile([_net(rng, (0.001, 6.0))], NAMES, BANDS, {})
    with pytest.raises(ValueError, match="lacks 4 of the emulator's 4 bands"):
        errors.fit(other, sps_sets / "cal")
