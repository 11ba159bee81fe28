"""Tests for sedhpc.photometry: magnitudes, units, filter loading and the FilterSet projection."""

import numpy as np
import pytest

from sedhpc.photometry import (
    FLUX_UNITS, Filter, FilterSet, ab_mag, ab_to_maggies, arsinh_mag, arsinh_to_maggies,
    from_maggies, load_eazy_filters, load_filter, load_filters, to_maggies,
)

C_AA = 2.99792458e18
REAL_BANDS = (["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0"]
              + [f"lsst_baseline_{b}" for b in "ugrizy"]
              + ["twomass_J", "twomass_H", "twomass_Ks", "wise_w1", "wise_w2", "wise_w3", "wise_w4",
                 "galex_FUV", "galex_NUV", "spitzer_irac_ch1", "spitzer_irac_ch2",
                 "spitzer_irac_ch3", "spitzer_irac_ch4"])


@pytest.fixture(scope="module")
def real_set():
    return FilterSet(REAL_BANDS)


def flat_fnu(wave, fnu_maggies):
    """f_λ [erg/s/cm²/Å] of a spectrum with constant f_ν = fnu_maggies × 3631 Jy."""
    return C_AA * fnu_maggies * 3631e-23 / wave**2


def write_box(path, lo=4000.0, hi=5000.0, n=20001):
    wave = np.linspace(lo, hi, n)
    wave = np.concatenate([[lo - 1e-3], wave, [hi + 1e-3]])
    trans = np.concatenate([[0.0], np.ones(n), [0.0]])
    np.savetxt(path, np.column_stack([wave, trans]), header="wave trans")
    return path


# ---------------------------------------------------------------------------------- magnitudes
def test_arsinh_equals_ab_for_bright():
    x = np.logspace(-10, 3, 500)
    np.testing.assert_allclose(arsinh_mag(x), ab_mag(x), rtol=0, atol=1e-6)


def test_arsinh_round_trip():
    x = np.concatenate([-np.logspace(-20, 3, 200), [0.0], np.logspace(-20, 3, 200)])
    back = arsinh_to_maggies(arsinh_mag(x))
    # u ≈ 35 for |x| ≪ B, so float64 u resolves x only to ~35·eps·2B/A ≈ 1e-28 maggies:
    # relative 1e-12 with an absolute floor of 1e-12·B
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-26)
    big = x[np.abs(x) > 1e-15]
    np.testing.assert_allclose(arsinh_to_maggies(arsinh_mag(big)), big, rtol=1e-12, atol=0)
    assert arsinh_mag(0.0) == 35.0 and arsinh_to_maggies(35.0) == 0.0
    assert arsinh_mag(np.zeros((2, 3))).shape == (2, 3)


def test_ab_mag():
    assert ab_to_maggies(0.0) == 1.0
    np.testing.assert_allclose(ab_mag([1.0, 1e-4]), [0.0, 10.0], atol=1e-12)
    assert np.isnan(ab_mag(-1.0))
    np.testing.assert_allclose(ab_mag(ab_to_maggies(np.linspace(-5, 40, 10))),
                               np.linspace(-5, 40, 10), atol=1e-12)


# ---------------------------------------------------------------------------------- flux units
def test_unit_anchors():
    assert to_maggies(3631.0, unit="Jy")[0] == pytest.approx(1.0, rel=1e-14)
    assert to_maggies(3631e9, unit="nJy")[0] == pytest.approx(1.0, rel=1e-14)
    assert to_maggies(0.0, unit="ABmag")[0] == 1.0
    for alias in ("µJy", "μJy", "microJy"):
        assert to_maggies(3631e6, unit=alias)[0] == pytest.approx(1.0, rel=1e-14)
    # AB zero points of µJy and nJy agree with the named units
    f = np.array([1.0, 17.0, 250.0])
    np.testing.assert_allclose(to_maggies(f, zeropoint=23.9)[0], to_maggies(f, unit="uJy")[0],
                               rtol=1e-4)
    np.testing.assert_allclose(to_maggies(f, zeropoint=31.4)[0], to_maggies(f, unit="nJy")[0],
                               rtol=1e-4)


@pytest.mark.parametrize("unit", FLUX_UNITS)
def test_unit_round_trip(unit):
    rng = np.random.default_rng(1)
    f = rng.uniform(0.5, 30.0, size=(4, 3))
    e = rng.uniform(0.01, 0.3, size=(4, 3))
    x, ex = to_maggies(f, e, unit=unit)
    assert x.shape == ex.shape == (4, 3)
    f2, e2 = from_maggies(x, ex, unit=unit)
    np.testing.assert_allclose(f2, f, rtol=1e-12)
    np.testing.assert_allclose(e2, e, rtol=1e-12)
    assert to_maggies(f, unit=unit)[1] is None


def test_abmag_error_propagation():
    x, ex = to_maggies(20.0, 0.1, unit="ABmag")
    assert ex == pytest.approx(0.4 * np.log(10) * x * 0.1, rel=1e-14)


def test_zeropoint_round_trip():
    f, e = np.array([3.0, -1.0, 200.0]), np.array([0.5, 0.5, 2.0])
    x, ex = to_maggies(f, e, unit="Jy", zeropoint=25.0)  # unit ignored
    np.testing.assert_allclose(x, f * 1e-10, rtol=1e-12)
    f2, e2 = from_maggies(x, ex, zeropoint=25.0)
    np.testing.assert_allclose(f2, f, rtol=1e-12)
    np.testing.assert_allclose(e2, e, rtol=1e-12)


def test_unknown_unit():
    with pytest.raises(ValueError, match="furlongs"):
        to_maggies(1.0, unit="furlongs")
    with pytest.raises(ValueError, match="MJy"):
        from_maggies(1.0, unit="MJy")


# ------------------------------------------------------------------------------------- filters
def test_box_pivot(tmp_path):
    f = load_filter(str(write_box(tmp_path / "box.dat", 4000.0, 5000.0)))
    assert f.name == "box"
    exact = np.sqrt((5000.0**2 - 4000.0**2) / (2 * np.log(5000.0 / 4000.0)))
    assert f.pivot == pytest.approx(exact, rel=1e-6)


def test_par_file_and_list(tmp_path):
    path = tmp_path / "mybox.par"
    np.savetxt(path, [[3000, 0], [3500, 1], [4000, 1], [4500, 0]], header="lambda pass")
    fs = load_filters(f"sdss_r0, {path}")
    assert [f.name for f in fs] == ["sdss_r0", "mybox"]
    assert fs[1].trans.tolist() == [0, 1, 1, 0]


def write_eazy(path):
    lines = ["   4 first/filt_a.dat  lambda_c= 4500", "1 4000 0.0", "2 4400 1.0", "3 4600 1.0",
             "4 5000 0.0", "   3 second_b  comment", "1 6000 0.0", "2 6500 0.5", "3 7000 0.0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eazy_reader(tmp_path):
    res = write_eazy(tmp_path / "FILTER.RES")
    a, b = load_eazy_filters(str(res), [1, 2])
    assert a.name == "filt_a" and b.name == "second_b"
    np.testing.assert_array_equal(a.wave, [4000, 4400, 4600, 5000])
    np.testing.assert_array_equal(b.trans, [0.0, 0.5, 0.0])
    assert load_filter(f"eazy:{res}:2").name == "second_b"
    with pytest.raises(ValueError, match="out of range"):
        load_eazy_filters(str(res), [3])
    with pytest.raises(ValueError, match="not found"):
        load_filter(f"eazy:{tmp_path / 'nope.RES'}:1")


def test_bad_filters(tmp_path):
    with pytest.raises(ValueError, match="sdss_q0") as exc:
        load_filters(["sdss_r0", "sdss_q0"])
    assert "eazy:PATH:N" in str(exc.value)
    with pytest.raises(ValueError, match="missing.dat"):
        load_filter(str(tmp_path / "missing.dat"))
    bad = tmp_path / "nanfilt.dat"
    bad.write_text("4000 0\n4500 nan\n5000 0\n")
    with pytest.raises(ValueError, match="nanfilt.*non-finite"):
        load_filter(str(bad))
    neg = tmp_path / "negfilt.dat"
    neg.write_text("4000 0\n4500 -0.1\n5000 0\n")
    with pytest.raises(ValueError, match="negfilt.*negative"):
        load_filter(str(neg))
    dec = tmp_path / "decfilt.dat"
    dec.write_text("4000 0\n4500 1\n4400 1\n5000 0\n")
    with pytest.raises(ValueError, match="decfilt.*increasing"):
        load_filter(str(dec))
    with pytest.raises(ValueError, match="no bands"):
        load_filters("")


# ----------------------------------------------------------------------------------- FilterSet
def test_flat_fnu_gives_fnu_everywhere(real_set):
    assert len(real_set) >= 20
    wave = np.geomspace(real_set.wave_min * 0.99, real_set.wave_max * 1.01, 200_000)
    x = real_set.maggies_from_flambda(wave, flat_fnu(wave, 2.5e-8))
    np.testing.assert_allclose(x, 2.5e-8, rtol=1e-4)
    # directly on the grid the identity is exact
    np.testing.assert_allclose(flat_fnu(real_set.grid, 1.0) @ real_set.matrix.T, 1.0, rtol=1e-12)


def test_matches_sedpy(real_set):
    from sedpy.observate import getSED, load_filters as sedpy_load
    wave = np.geomspace(500.0, 3e5, 60_000)
    flam = 1e-16 * (wave / 5000.0) ** -1.3
    ours = ab_mag(real_set.maggies_from_flambda(wave, flam))
    theirs = getSED(wave, flam, filterlist=sedpy_load(REAL_BANDS))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)
    # sedpy integrates ∫T dlnλ on ln λ, we ∫T/λ dλ on λ: equal up to quadrature error
    np.testing.assert_allclose(real_set.pivot, [f.wave_pivot for f in sedpy_load(REAL_BANDS)],
                               rtol=2e-5)


def test_batch_equals_loop(real_set):
    rng = np.random.default_rng(0)
    wave = np.geomspace(800.0, 4e5, 5000)
    flam = (wave / 5000.0) ** rng.uniform(-3, 1, size=(5, 1)) * 1e-17
    batch = real_set.maggies_from_flambda(wave, flam)
    loop = np.array([real_set.maggies_from_flambda(wave, f) for f in flam])
    assert batch.shape == (5, len(REAL_BANDS))
    np.testing.assert_allclose(batch, loop, rtol=1e-12)


def test_filterset_from_objects_and_coverage(tmp_path):
    box = load_filter(str(write_box(tmp_path / "box.dat", 4000.0, 5000.0, n=101)))
    fs = FilterSet([box, Filter("red", [8000.0, 8100.0, 9000.0], [0.0, 1.0, 0.0])], resolution=500)
    assert fs.names == ["box", "red"] and fs.matrix.shape == (2, fs.grid.size)
    assert np.all(np.diff(fs.grid) > 0) and fs.wave_min < 4000 and fs.wave_max == 9000.0
    wave = np.linspace(3000.0, 8500.0, 1000)
    with pytest.raises(ValueError, match="red"):
        fs.maggies_from_flambda(wave, np.ones_like(wave))
    wave = np.linspace(3000.0, 9500.0, 1000)
    with pytest.raises(ValueError, match="increasing"):
        fs.maggies_from_flambda(wave[::-1], np.ones_like(wave))
    with pytest.raises(ValueError, match="shape"):
        fs.maggies_from_flambda(wave, np.ones(10))
    with pytest.raises(ValueError, match="narrow"):
        FilterSet([Filter("narrow", [5000.0, 5000.5, 5001.0], [0.0, 1.0, 0.0])])
