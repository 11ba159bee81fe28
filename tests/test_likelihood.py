"""The photometric likelihood: formula, error floor, emulator error, masks, zeropoints."""

import numpy as np
import pytest

from sedhpc.emulator import Emulator
from sedhpc.likelihood import Likelihood, Observations
from sedhpc.photometry import A, B
from test_emulator import draws, emu_file, random_net


@pytest.fixture(scope="module")
def emulator():
    net = random_net(np.random.default_rng(11), 32)
    net.residuals = np.zeros((10, 11))
    net.residuals[:, -1] = 0.02
    net.residual_cov = np.eye(10)
    return Emulator(emu_file([net]), xp="numpy")


def direct(emu, theta, flux, err, mask, floor, zp, sig_u):
    """The MODEL.md formula written out per galaxy and band."""
    x = np.asarray(emu.predict(theta).maggies, float)
    out = []
    for k in range(len(theta)):
        tot = 0.0
        for j in range(x.shape[1]):
            if not mask[k, j]:
                continue
            xo, so = flux[k, j] * zp[j], err[k, j] * zp[j]
            se = 2 * B / A * sig_u[j] * np.sqrt(1 + x[k, j] ** 2 / (4 * B * B))
            var = so ** 2 + (floor * xo) ** 2 + se ** 2
            tot += -0.5 * ((xo - x[k, j]) ** 2 / var + np.log(2 * np.pi * var))
        out.append(tot)
    return np.array(out)


def test_matches_formula_with_floor_emulator_error_masks_zeropoints(emulator):
    rng = np.random.default_rng(0)
    theta = draws(40)
    x = np.asarray(emulator.predict(theta).maggies, float)
    err = 0.1 * np.abs(x) + 1e-12
    flux = x + err * rng.normal(size=x.shape)
    flux[3, 2] = -abs(flux[3, 2])  # negative fluxes are measurements
    mask = rng.random(x.shape) > 0.2
    zp = rng.uniform(0.9, 1.1, x.shape[1])
    lik = Likelihood(emulator, Observations.build(flux, err, mask), floor=0.05, zeropoints=zp)
    ll = lik(theta, np.arange(40))
    np.testing.assert_allclose(ll, direct(emulator, theta, flux, err, mask, 0.05, zp,
                                          np.full(9, 0.02)), rtol=1e-9)
    assert ll.dtype == np.float64 and lik.ncalls == 40
    # many proposals for one galaxy: rows map to galaxies through the index
    one = lik(theta[:5], np.full(5, 7))
    ref = direct(emulator, theta[:5], np.repeat(flux[7:8], 5, 0), np.repeat(err[7:8], 5, 0),
                 np.repeat(mask[7:8], 5, 0), 0.05, zp, np.full(9, 0.02))
    np.testing.assert_allclose(one, ref, rtol=1e-9)


def test_terms_switch_off_and_bad_bands_are_masked(emulator):
    theta = draws(3)
    x = np.asarray(emulator.predict(theta).maggies, float)
    err = 0.05 * np.abs(x)
    flux = x.copy()
    flux[0, 1] = np.nan
    err[1, 4] = 0.0
    err[2, 5] = -1.0
    obs = Observations.build(flux, err)
    assert list(obs.bad_error) == [False, True, True]
    assert list(obs.nbands_used) == [8, 8, 8]
    bare = Likelihood(emulator, obs, floor=0.0, sigma_emu=0.0)
    # at the model itself only the normalisation remains
    expect = [-0.5 * np.sum(np.log(2 * np.pi * err[k, obs.mask[k]] ** 2)) for k in range(3)]
    np.testing.assert_allclose(bare(theta, np.arange(3)), expect, rtol=1e-12)
    np.testing.assert_allclose(bare.chi2(theta, np.arange(3)), 0.0, atol=1e-20)
    # the floor and the emulator error only widen σ
    full = Likelihood(emulator, obs, floor=0.05)
    sig = emulator.sigma_at(theta[:, -4])
    wider = full.variance(x, np.arange(3), sig) > bare.variance(x, np.arange(3), 0 * sig)
    assert np.all(wider[obs.mask])


def test_emulator_sigma_follows_the_redshift_windows():
    from test_emulator import WINDOWS

    rng = np.random.default_rng(12)
    nets = [random_net(rng, 32, zrange=w) for w in WINDOWS]
    for k, net in enumerate(nets):
        net.residuals = np.zeros((10, 11))
        net.residuals[:, -1] = 0.01 * (k + 1)
        net.residual_cov = np.eye(10)
    emu = Emulator(emu_file(nets), xp="numpy")
    sig = emu.sigma_at(np.array([1.0, 2.0, 3.0, 5.0]))
    np.testing.assert_allclose(sig[:, 0], [0.01, 0.015, 0.02, 0.03], atol=1e-12)


def test_out_of_range_rows_and_bad_settings(emulator):
    theta = draws(4)
    theta[2, 0] = 13.0  # logmass outside the training range
    x = np.asarray(emulator.predict(theta).maggies, float)
    obs = Observations.build(x, 0.1 * np.abs(x))
    ll = Likelihood(emulator, obs)(theta, np.arange(4))
    assert np.isneginf(ll[2]) and np.all(np.isfinite(ll[[0, 1, 3]]))
    with pytest.raises(ValueError, match="bands"):
        Likelihood(emulator, Observations.build(x[:, :3], x[:, :3]))
    with pytest.raises(ValueError, match="zeropoints"):
        Likelihood(emulator, obs, zeropoints=np.zeros(9))
    with pytest.raises(ValueError, match="floor"):
        Likelihood(emulator, obs, floor=1.5)
