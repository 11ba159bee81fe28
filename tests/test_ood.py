"""Colour-space out-of-distribution flag (sedhpc.ood.ColourOOD), with the bundled emulator."""

import numpy as np
import pytest

from sedhpc.emulator import Emulator, default_path
from sedhpc.model import get_model
from sedhpc.ood import ColourOOD
from sedhpc.photometry import A, B, U0

BANDS = [f"lsst_baseline_{b}" for b in "ugrizy"]
DEPTH = 10 ** (-0.4 * 27.0) / 5


@pytest.fixture(scope="module")
def setup():
    emu = Emulator(default_path(), bands=BANDS, xp="numpy")
    model = get_model("embedded")
    return model, emu, ColourOOD(model, emu)


def _prior_galaxies(model, emu, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.05, 3.0, n)
    th = model.sample(rng, n, z[:, None])
    x = 2 * B * np.sinh((U0 - np.asarray(emu.predict(th).mags, float)) / A)
    return rng, z, x


def _noisy(rng, x, snr=20.0):
    e = np.sqrt((x / snr) ** 2 + DEPTH ** 2)
    return x + e * rng.standard_normal(x.shape), e


def test_threshold_is_reproducible_and_prior_galaxies_pass(setup):
    model, emu, c = setup
    assert c.threshold == ColourOOD(model, emu).threshold  # seeded: every rank agrees
    rng, z, x = _prior_galaxies(model, emu, 200, 1)
    f, e = _noisy(rng, x)
    s = c.statistic(f, e, np.ones(f.shape, bool), z)
    assert np.all(np.isfinite(s))
    assert np.mean(s > c.threshold) <= 0.01  # the prior lies inside the training distribution
    # with two bands there are no colours to judge
    mask = np.zeros(f.shape, bool)
    mask[:, :2] = True
    assert np.all(np.isnan(c.statistic(f, e, mask, z)))


def test_garbled_colours_are_flagged(setup):
    """Swapping the g and i columns of a catalog, or a steep blue power law (f_ν ∝ ν⁴), gives
    colours no training SED has in a fair share of galaxies (a swap is invisible where g and i
    are alike, or too noisy to tell): ≥ 20 times the ≤ 1 % rate of genuine galaxies."""
    model, emu, c = setup
    rng, z, x = _prior_galaxies(model, emu, 200, 2)
    f, e = _noisy(rng, x[:, [0, 3, 2, 1, 4, 5]])
    assert np.mean(c.flags(f, e, np.ones(f.shape, bool), z)) > 0.2
    lam = np.array([3670, 4830, 6220, 7550, 8690, 9710.0])
    f, e = _noisy(rng, (lam / 6220.0) ** -4 * x[:, 2:3])
    assert np.mean(c.flags(f, e, np.ones(f.shape, bool), z)) > 0.3
    # photo-z mode: references at their own redshifts
    cz = ColourOOD(model, emu, zfree=True)
    f, e = _noisy(rng, x)
    assert np.mean(cz.flags(f, e, np.ones(f.shape, bool))) <= 0.01
