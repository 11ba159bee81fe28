"""The embedded SPS against bagpipes' own photometry, the DL07 umin fix and qpah sequences,
grid edges, bad input."""

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from sedhpc import cosmology
from sedhpc.model import get_model
from sedhpc.photometry import FilterSet, arsinh_mag
from sedhpc.sps import get_backend
from sedhpc.sps.embedded import (EmbeddedSPS, bagpipes_components, import_bagpipes,
                                 write_filter_files)

# 48 bands from the far-UV to the sub-mm whose curves bagpipes' R = 100 resampling represents
# well (bagpipes' photometry of bands with sharp edges, e.g. 2MASS J, is off by up to 0.03 mag
# from a fine integration; sedhpc's projection is within 0.001 mag of it: docs/BENCHMARKS.md).
BANDS = ("galex_FUV sdss_u0 sdss_g0 sdss_r0 sdss_i0 sdss_z0 lsst_baseline_u lsst_baseline_g "
         "lsst_baseline_r lsst_baseline_i lsst_baseline_z lsst_baseline_y hsc_g hsc_r hsc_i "
         "hsc_z hsc_y decam_g decam_r decam_i decam_z acs_wfc_f606w acs_wfc_f775w "
         "acs_wfc_f814w acs_wfc_f850lp wfc3_ir_f105w wfc3_ir_f125w wfc3_ir_f140w wfc3_ir_f160w "
         "twomass_Ks jwst_f150w jwst_f200w jwst_f277w jwst_f356w jwst_f444w spitzer_irac_ch1 "
         "spitzer_irac_ch2 spitzer_irac_ch3 spitzer_irac_ch4 wise_w1 wise_w2 wise_w3 wise_w4 "
         "spitzer_mips_24 herschel_pacs_100 herschel_pacs_160 herschel_spire_250 "
         "herschel_spire_350").split()


@pytest.fixture(scope="module")
def sps():
    return EmbeddedSPS(filters=BANDS)


def domain_vectors(model, n_random=14, seed=2024):
    """20 vectors: 14 from the (thick-tailed) training distribution, 6 on the domain's edges."""
    rng = np.random.default_rng(seed)
    theta = model.training_distribution().sample(rng, n_random)
    lo, hi = model.bounds.T
    edges = [lo.copy(), hi.copy()]
    for k in range(4):
        pick = rng.random(model.ndim) < 0.5
        edges.append(np.where(pick, lo, hi))
    theta = np.vstack([theta, edges])
    # keep the objects detectable: the edge masses at 10^6 Msun at z = 10 are all ~35 mag
    theta[n_random:, model.index("logmass")] = [6.0, 12.5, 11.0, 11.5, 10.5, 12.0]
    return theta


def bagpipes_own_photometry(sps, theta):
    """bagpipes' model_galaxy(...).photometry for the same inputs, as arsinh magnitudes.

    bagpipes returns the photon-weighted mean f_λ; f_ν = f̄_λ λ_pivot² / c with its own pivot
    wavelengths. Its distance is interpolated on a 0.01 redshift grid; the exact WMAP9 distance
    is the physical input both sides share, so bagpipes' flux is rescaled to it.
    """
    bp = import_bagpipes()
    out, galaxy = [], None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = write_filter_files(sps.filters, Path(tmp))
        for row in theta:
            comp = bagpipes_components(row, sps.model.names)
            if galaxy is None:
                galaxy = bp.model_galaxy(comp, filt_list=files)
            else:
                galaxy.update(comp)
            fnu = galaxy.photometry * galaxy.filter_set.eff_wavs ** 2 / 2.99792458e18
            dist = galaxy.lum_flux / (4 * np.pi * cosmology.luminosity_distance_cm(comp["redshift"])
                                      ** 2)
            out.append(arsinh_mag(fnu / 3631e-23 * dist))
    return np.array(out)


def test_matches_bagpipes_photometry(sps):
    """≥ 40 bands agree within 0.002 mag for each of 20 vectors; wherever they differ by more
    (bands at a Lyman break or a sharp filter edge), sedhpc is the one closer to a 10× finer
    integration of the same spectrum, i.e. the difference is bagpipes' R = 100 filter sampling."""
    model = sps.model
    theta = domain_vectors(model)
    mags, log_mfrac = sps.photometry(theta)
    ref = bagpipes_own_photometry(sps, theta)
    assert len(BANDS) >= 40 and mags.shape == (20, len(BANDS))
    diff = np.abs(mags - ref)
    agree = (diff < 0.002).sum(axis=1)
    assert agree.min() >= 40, f"bands within 0.002 mag per vector: {agree}"
    assert np.median(diff) < 3e-4
    fine = FilterSet(BANDS, resolution=20000)
    for i, j in zip(*np.nonzero(diff >= 0.002)):
        wave, flam, _ = sps.spectrum(theta[i])
        exact = arsinh_mag(fine.maggies_from_flambda(wave, flam))[j]
        assert abs(mags[i, j] - exact) < abs(ref[i, j] - exact), (BANDS[j], theta[i])
    assert np.all(np.isfinite(mags)) and np.all(mags < 36)
    assert np.all((log_mfrac < 0) & (log_mfrac > np.log10(0.3)))
    assert mags[15].min() < 25  # logmass 12.5 at the upper edges is bright somewhere


def test_projection_converges_with_resolution(sps):
    """sedhpc's filter matrix (R = 2000) agrees with a 10× finer one to 1e-3 mag."""
    theta = domain_vectors(sps.model)[:8]
    fine = FilterSet(BANDS, resolution=20000)
    for row in theta:
        wave, flam, _ = sps.spectrum(row)
        a = arsinh_mag(sps.filters.maggies_from_flambda(wave, flam))
        b = arsinh_mag(fine.maggies_from_flambda(wave, flam))
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_dl07_umin_fix():
    """bagpipes 1.3.6 lists U = 10 in umin_vals but its grid has no U = 10 column, so umin = 12
    returned the U = 15 template. With the fix, umin = 12 is the U = 12 column, and the dust
    SED moves monotonically to shorter wavelengths as umin rises."""
    bp = import_bagpipes()
    cfg = bp.config
    assert cfg.umin_vals.size == cfg.dust_grid_umin_only[1].shape[1] - 1 == 22
    assert 10.0 not in cfg.umin_vals
    wav = cfg.dust_grid_umin_only[1][:, 0]
    emission = bp.models.dust_emission_model.dust_emission(wav)
    qpah_index = int(np.flatnonzero(cfg.qpah_vals == 2.50)[0]) + 1
    raw = cfg.dust_grid_umin_only[qpah_index]
    col12 = 1 + int(np.flatnonzero(cfg.umin_vals == 12.0)[0])
    expect = raw[:, col12] / np.trapezoid(raw[:, col12], x=wav)
    np.testing.assert_allclose(emission.spectrum(2.50, 12.0, 0.0), expect, rtol=1e-10)
    col15 = 1 + int(np.flatnonzero(cfg.umin_vals == 15.0)[0])
    assert not np.allclose(expect, raw[:, col15] / np.trapezoid(raw[:, col15], x=wav), rtol=0.01)
    # mean log wavelength of the dust emission (weighted by λ f_λ) falls with umin
    means = []
    for umin in [1.0, 5.0, 8.0, 9.0, 12.0, 15.0, 20.0, 25.0]:
        spec = emission.spectrum(2.5, umin, 0.0)
        w = spec * wav
        means.append(np.sum(w * np.log(wav)) / np.sum(w))
    assert np.all(np.diff(means) < 0), means


def _pah_fraction(spec, wav):
    """Fraction of the dust emission in 5–12 µm (the PAH bands)."""
    band = (wav > 5e4) & (wav < 1.2e5)
    return np.trapezoid(spec[band], wav[band]) / np.trapezoid(spec, wav)


def test_dl07_sequences():
    """bagpipes' qpah axis interleaves SMC, MW3.1 and LMC2 models, so its PAH emission is not
    monotonic in qpah (it dips at the LMC2 nodes 0.75, 1.49, 2.37); the "mw" sequence (MW3.1
    only, as FSPS) rises monotonically from 0.47 to 4.58, equals bagpipes' at the shared MW3.1
    nodes, is the 0.47 model at the lower bound and interpolates linearly (per H) between nodes.
    Selecting a sequence is undone by selecting the other."""
    from sedhpc.sps.embedded import MW_QPAH, _select_dl07

    bp = import_bagpipes()
    cfg = bp.config
    wav = cfg.dust_grid_umin_only[1][:, 0]
    emission = bp.models.dust_emission_model.dust_emission(wav)
    grid = np.union1d(np.linspace(0.47, 4.58, 84), [0.75, 1.49, 2.37])
    frac = {}
    try:
        for name in ("mw", "bagpipes"):
            _select_dl07(cfg, name)
            frac[name] = np.array([_pah_fraction(emission.spectrum(q, 2.0, 0.1), wav)
                                   for q in grid])
            nodes = {q: emission.spectrum(q, 2.0, 0.1) for q in MW_QPAH}
            if name == "mw":
                mw_nodes = nodes
                lo, hi = (cfg.dust_grid_umin_only[k] for k in (2, 3))  # 0.47 and 1.12 models
                umin_col = 1 + int(np.flatnonzero(cfg.umin_vals == 2.0)[0])
                mix = 0.5 * lo[:, umin_col] + 0.5 * hi[:, umin_col]
                np.testing.assert_allclose(  # gamma = 0: the umin-only templates alone
                    emission.spectrum(0.795, 2.0, 0.0), mix / np.trapezoid(mix, wav),
                    rtol=1e-10)
        for q in MW_QPAH:
            np.testing.assert_allclose(nodes[q], mw_nodes[q], rtol=1e-10)
        assert np.all(np.diff(frac["mw"]) > 0), frac["mw"]
        # bagpipes' PAH fraction falls by > 25 % from 0.47 to the LMC2 node 0.75 (MW3.1: +15 %)
        lmc = int(np.flatnonzero(grid == 0.75)[0])
        assert frac["bagpipes"][lmc] < 0.75 * frac["bagpipes"][0], frac["bagpipes"]
        assert frac["mw"][lmc] > 1.1 * frac["mw"][0]
        assert cfg.qpah_vals.size == 11  # the bagpipes sequence is selected again
    finally:
        _select_dl07(cfg, "bagpipes")


def test_dl07_backends_share_a_process():
    """Two embedded backends with different sequences in one process each keep their own:
    interleaved calls give what each gives alone. In F2550W at z = 3 the "mw" magnitudes fall
    monotonically with qpah (more PAH emission); bagpipes' sequence jumps by > 0.5 mag at 0.75."""
    model = get_model("embedded")
    theta = np.array([10.0, -0.5, 0, 0, 0, 0, 0, 0, 0.5, 0.0, 1.0, -0.5, 3.0, 2.0, 2.0, -2.0])
    qs = [0.47, 0.6, 0.75, 0.9, 1.12, 1.49, 1.77, 2.37, 3.19, 4.58]
    rows = np.repeat(theta[None], len(qs), axis=0)
    rows[:, model.index("duste_qpah")] = qs
    mw = get_backend("embedded", ["jwst_f2550w"], dl07="mw")
    bp = get_backend("embedded", ["jwst_f2550w"], dl07="bagpipes")
    alone = {b.dl07: b.photometry(rows)[0][:, 0] for b in (mw, bp)}
    inter = {b.dl07: [] for b in (mw, bp)}
    for row in rows:
        for b in (mw, bp):
            inter[b.dl07].append(b.photometry(row[None])[0][0, 0])
    for k in alone:
        np.testing.assert_array_equal(inter[k], alone[k])
    assert np.all(np.diff(alone["mw"]) < 0), alone["mw"]
    assert alone["bagpipes"][2] - alone["bagpipes"][1] > 0.5, alone["bagpipes"]
    assert alone["mw"][0] == alone["bagpipes"][0]  # the shared MW3.1 0.47 node
    with pytest.raises(ValueError, match="dl07 must be one of"):
        EmbeddedSPS(filters=["sdss_r0"], dl07="lmc")
    with pytest.raises(ValueError, match="MW3.1 models only"):
        get_backend("fsps", ["sdss_r0"], dl07="bagpipes")


def test_grid_edges_are_computed(sps):
    model = sps.model
    base = np.array([10.5, -0.5, 0, 0, 0, 0, 0, 0, 0.5, -0.3, 1.0, -0.5, 1.0, 2.0, 1.0, -2.0])
    cases = {"duste_qpah": (0.47, 4.58), "duste_umin": (0.1, 25.0), "log_duste_gamma": (-4, 0),
             "zred": (0.001, 10.0), "logzsol": (-1.98, 0.19), "gas_logz": (-2.0, 0.5),
             "dust2": (0.0, 4.0), "dust_index": (-1.2, 0.4)}
    rows = []
    for name, values in cases.items():
        for v in values:
            row = base.copy()
            row[model.index(name)] = v
            rows.append(row)
    mags, log_mfrac = sps.photometry(np.array(rows))
    assert np.all(np.isfinite(mags)) and np.all(np.isfinite(log_mfrac))


@pytest.mark.parametrize("name, value, match", [
    ("duste_qpah", 4.6, "'duste_qpah' = 4.6"),
    ("duste_umin", 26.0, "'duste_umin' = 26.0"),
    ("zred", 10.5, "'zred' = 10.5"),
    ("dust2", np.nan, "'dust2' = nan"),
])
def test_out_of_grid_input_raises_clearly(sps, name, value, match):
    theta = domain_vectors(sps.model)[:1].copy()
    theta[0, sps.model.index(name)] = value
    with pytest.raises(ValueError, match=match):
        sps.photometry(theta)


def test_bad_bands_and_model():
    with pytest.raises(ValueError, match="no_such_band"):
        get_backend("embedded", ["sdss_r0", "no_such_band"])
    with pytest.raises(ValueError, match="AGN torus"):
        EmbeddedSPS(model=get_model("prospector_alpha"), filters=["sdss_r0"])
    with pytest.raises(ValueError, match="unknown SPS backend"):
        get_backend("pegase", ["sdss_r0"])


@pytest.mark.skipif(not os.access(Path(import_bagpipes().__file__).parent / "models" / "grids",
                                  os.W_OK), reason="bagpipes grids directory is read-only")
def test_concurrent_first_imports_share_one_igm_table(tmp_path):
    """Three processes importing bagpipes for the first time at once (as MPI ranks do) must
    not race on the IGM table that the first import writes."""
    grids = Path(import_bagpipes().__file__).parent / "models" / "grids"
    igm = grids / "d_igm_grid_inoue14.fits"
    backup = tmp_path / igm.name
    igm.rename(backup)
    try:
        code = ("from sedhpc.sps.embedded import import_bagpipes; bp = import_bagpipes(); "
                "print(bp.config.raw_igm_grid.shape)")
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=240) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        shapes = {o[0].strip().splitlines()[-1] for o in outs}
        assert len(shapes) == 1
        from astropy.io import fits
        with fits.open(igm) as hdul:
            assert len(hdul) == 4
    finally:
        if not igm.exists():
            backup.rename(igm)
