"""FSPS backend: SPS_HOME checks (run before python-fsps is imported), parameter mapping, tabular
SFH, and (with real FSPS data only) end-to-end photometry."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sedhpc.cosmology import age_yr
from sedhpc.model import get_model, sfh
from sedhpc.sps.fsps import (FSPS_SETTINGS, PER_METALLICITY, FSPSDataError, check_sps_home,
                             fsps_params, required_files, sfh_table)

MODEL = get_model("prospector_alpha")
NAMES = MODEL.names
# Index tables written into fake trees: row formats as FSPS reads them.
FAKE_TABLES = {
    "ISOCHRONES/MIST/zlegend.dat": [f"{t} {v:6.2f}" for t, v in zip(
        ["m400", "m350", "m300", "m250", "m200", "m175", "m150", "m125", "m100", "m075", "m050",
         "m025", "p000"], np.linspace(-4, 0, 13))],
    "SPECTRA/MILES/zlegend.dat": ["0.0008", "0.0031", "0.0096", "0.0190", "0.0300"],
    "SPECTRA/Hot_spectra/WMBASIC_zlegend.dat": [f"{z:.4f}" for z in np.geomspace(1e-4, 0.04, 12)],
}

_CHECK_SCRIPT = """
import json, sys
from sedhpc.sps.fsps import FSPSDataError, check_sps_home
try:
    check_sps_home()
    out = {"ok": True, "msg": ""}
except FSPSDataError as e:
    out = {"ok": False, "msg": str(e)}
out["fsps_imported"] = "fsps" in sys.modules
print(json.dumps(out))
"""


def fake_tree(root, drop=()):
    """A complete fake SPS_HOME under ``root`` (empty data files), minus paths in ``drop``."""
    for table, rows in FAKE_TABLES.items():
        (root / table).parent.mkdir(parents=True, exist_ok=True)
        (root / table).write_text("\n".join(rows) + "\n")
    files, problems = required_files(root)
    assert not problems
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(b"")
    for rel in drop:
        (root / rel).unlink()
    return root


def run_check(sps_home):
    """Run check_sps_home in a fresh interpreter with SPS_HOME = ``sps_home`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "SPS_HOME"}
    if sps_home is not None:
        env["SPS_HOME"] = str(sps_home)
    res = subprocess.run([sys.executable, "-c", _CHECK_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["fsps_imported"], "python-fsps was imported by the check"
    return out


# ------------------------------------------------------------------------------ SPS_HOME check
@pytest.mark.parametrize("case, expect", [
    ("unset", "is not set"), ("empty", "is empty"), ("missing", "does not exist"),
    ("file", "is not a directory"), ("emptydir", "whole folder missing")])
def test_bad_sps_home_raises_before_fsps_import(tmp_path, case, expect):
    value = {"unset": None, "empty": "", "missing": tmp_path / "nope",
             "file": tmp_path / "a_file", "emptydir": tmp_path}[case]
    (tmp_path / "a_file").write_text("x")
    out = run_check(value)
    assert not out["ok"]
    assert expect in out["msg"]
    assert "git clone https://github.com/cconroy20/fsps" in out["msg"]
    assert "export SPS_HOME" in out["msg"]


@pytest.mark.parametrize("drop", [
    "ISOCHRONES/MIST/zlegend.dat",
    "ISOCHRONES/MIST/isoc_feh_m150_afe_p0_vvcrit0.4_full.dat",
    "SPECTRA/MILES/imiles_z0.0190.spectra.bin",
    "SPECTRA/MILES/miles.lambda",
    "nebular/ZAU_ND_mist.lines",
    "dust/dustem/DL07_MW3.1_30.dat",
    "dust/Nenkova08_y010_torusg_n10_q2.0.dat",
    "data/emlines_info.dat",
])
def test_partial_install_names_missing_file(tmp_path, drop):
    out = run_check(fake_tree(tmp_path, drop=[drop]))
    assert not out["ok"]
    assert drop in out["msg"]
    assert "SPS_SETUP ERROR" in out["msg"]  # says why we refuse


def test_complete_tree_passes(tmp_path):
    home = fake_tree(tmp_path)
    assert check_sps_home({"SPS_HOME": str(home)}) == home
    assert run_check(home)["ok"]


def test_missing_folder_named_once_and_short_table(tmp_path):
    home = fake_tree(tmp_path)
    for f in (home / "nebular").iterdir():
        f.unlink()
    (home / "nebular").rmdir()
    (home / "SPECTRA/MILES/zlegend.dat").write_text("0.0190\n")
    with pytest.raises(FSPSDataError) as err:
        check_sps_home({"SPS_HOME": str(home)})
    msg = str(err.value)
    assert "nebular/ (whole folder missing)" in msg and "ZAU_ND_mist.cont" not in msg
    assert "SPECTRA/MILES/zlegend.dat has 1 rows, FSPS reads 5" in msg


def test_per_metallicity_names_follow_fsps_formats():
    mist, miles, wmb = (entry[2] for entry in PER_METALLICITY)
    assert mist("m025 -0.25") == "ISOCHRONES/MIST/isoc_feh_m025_afe_p0_vvcrit0.4_full.dat"
    assert miles("0.019") == "SPECTRA/MILES/imiles_z0.0190.spectra.bin"
    assert wmb("  0.0004") == "SPECTRA/Hot_spectra/WMBASIC_z0.0004.spec"


def test_library_mismatch_is_refused(tmp_path):
    """With a complete (fake) tree, a python-fsps built with other than MIST + MILES + DL07 is
    refused before any StellarPopulation is built (never build one on fake data)."""
    if importlib.util.find_spec("fsps") is None:  # locates python-fsps without importing it
        pytest.skip("python-fsps is not installed")
    script = """
import os, sys
from fsps.fsps import driver
libs = tuple(s.decode().strip().lower() for s in driver.get_libraries())
if libs == ("mist", "miles", "dl07"):
    print("SKIP"); sys.exit(0)
from sedhpc.photometry import FilterSet
from sedhpc.sps.fsps import FSPSBackend, FSPSDataError
try:
    FSPSBackend(filters=FilterSet(["sdss_r0"]))
except FSPSDataError as e:
    print("REFUSED", e)
"""
    env = dict(os.environ, SPS_HOME=str(fake_tree(tmp_path)))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    if res.stdout.startswith("SKIP"):
        pytest.skip("installed python-fsps is built with MIST + MILES + DL07")
    assert res.stdout.startswith("REFUSED") and "-DMILES=1" in res.stdout, res.stdout


# ------------------------------------------------------------------------------ mapping
def _theta(**over):
    row = dict(logmass=10.0, logzsol=-0.3, dust2=0.6, dust_index=-0.4, dust1_fraction=0.8,
               log_fagn=-2.0, log_agn_tau=1.5, gas_logz=-0.5, zred=1.2, duste_qpah=2.5,
               duste_umin=3.0, log_duste_gamma=-1.5)
    row.update({f"logsfr_ratios_{i}": 0.1 * i - 0.3 for i in range(1, 7)}, **over)
    return np.array([row[n] for n in NAMES])


def test_fsps_params_mapping():
    p = fsps_params(_theta(), NAMES)
    assert p["dust1"] == pytest.approx(0.8 * 0.6)
    assert p["fagn"] == pytest.approx(1e-2)
    assert p["agn_tau"] == pytest.approx(10 ** 1.5)
    assert p["duste_gamma"] == pytest.approx(10 ** -1.5)
    assert (p["logzsol"], p["dust2"], p["dust_index"], p["gas_logz"]) == (-0.3, 0.6, -0.4, -0.5)
    assert (p["duste_qpah"], p["duste_umin"], p["zred"]) == (2.5, 3.0, 1.2)
    assert not set(p) & set(FSPS_SETTINGS)


def test_fsps_params_follow_names_order():
    perm = np.random.default_rng(1).permutation(len(NAMES))
    names = [NAMES[i] for i in perm]
    assert fsps_params(_theta()[perm], names) == fsps_params(_theta(), NAMES)


def test_constant_settings_match_model_md():
    assert FSPS_SETTINGS == dict(
        zcontinuous=1, imf_type=1, dust_type=4, dust1_index=-1.0, dust_tesc=7.0,
        add_dust_emission=True, add_neb_emission=True, add_neb_continuum=True,
        nebemlineinspec=True, add_agn_dust=True, add_igm_absorption=True,
        add_agb_dust_model=True, pmetals=-99, sfh=3, gas_logu=-1.0)


# ------------------------------------------------------------------------------ tabular SFH
@pytest.mark.parametrize("z", [0.5, 2.0, 5.0])
def test_sfh_table_mass_and_ratios(z):
    ratios = np.array([0.4, -0.7, 1.3, 0.0, -2.1, 0.9])
    theta = _theta(zred=z, logmass=10.3, **{f"logsfr_ratios_{i + 1}": r
                                            for i, r in enumerate(ratios)})
    age, sfr = sfh_table(theta, NAMES)
    assert age.shape == sfr.shape == (14,)
    assert np.all(np.diff(age) > 0) and np.all(sfr > 0)
    tuniv = age_yr(z) / 1e9
    assert age[0] == 0.0 and age[-1] == pytest.approx(tuniv - 1e-9, abs=1e-12)
    # trapezoid over the table (FSPS interpolates linearly) = total mass formed
    mass = np.sum(0.5 * (sfr[1:] + sfr[:-1]) * np.diff(age)) * 1e9
    assert mass == pytest.approx(10 ** 10.3, rel=1e-9)
    # constant within bins: the interpolated SFR at bin mid-points, youngest first
    edges = (tuniv - 10 ** sfh.bin_edges([z])[0][::-1] / 1e9)
    edges[0] = 0.0
    mid = 0.5 * (edges[1:] + edges[:-1])
    rate = np.interp(mid, age, sfr)[::-1]
    assert np.log10(rate[:-1] / rate[1:]) == pytest.approx(ratios, abs=1e-9)
    widths = sfh.bin_widths([z])[0]
    assert rate * widths == pytest.approx(sfh.bin_masses([10.3], [ratios], [z])[0], rel=1e-9)


# ------------------------------------------------------------------------------ end to end
def _fsps_ready():
    try:
        check_sps_home()
    except FSPSDataError as e:
        return f"no valid FSPS data: {str(e).splitlines()[0][:200]}"
    try:
        from fsps.fsps import driver
    except Exception as e:  # noqa: BLE001 - any import failure means skip
        return f"python-fsps cannot be imported: {e!r}"
    libs = tuple(s.decode().strip().lower() for s in driver.get_libraries())
    if libs != ("mist", "miles", "dl07"):
        return f"python-fsps is built with {libs}, not MIST + MILES + DL07"
    return ""


@pytest.mark.fsps
def test_fsps_photometry_end_to_end():
    reason = _fsps_ready()
    if reason:
        pytest.skip(reason)
    from sedhpc.photometry import FilterSet, ab_mag
    from sedhpc.sps.fsps import FSPSBackend

    backend = FSPSBackend(MODEL, FilterSet(["sdss_g0", "sdss_r0"]))
    theta = MODEL.sample(np.random.default_rng(42), 3, fixed_values=[[0.5]])
    theta[:, NAMES.index("logmass")] = 10.5
    x, logmf = backend.maggies(theta)
    assert x.shape == (3, 2) and np.all(np.isfinite(x)) and np.all(x > 0)
    mags = ab_mag(x)
    assert np.all((mags > 14) & (mags < 35)), mags  # 10^10.5 Msun at z = 0.5
    assert np.all((10 ** logmf > 0.3) & (10 ** logmf < 1.0)), logmf


class _FakeSP:
    """Stands in for fsps.StellarPopulation: flat L_ν = 1 Lsun/Hz per ``formed_mass``."""

    def __init__(self, formed):
        self.params, self.formed_mass, self.stellar_mass = {}, formed, 0.6 * formed

    def set_tabular_sfh(self, age, sfr):
        self.table = (age, sfr)

    def get_spectrum(self, tage, peraa):
        self.tage = tage
        return np.geomspace(100.0, 1e6, 50), np.ones(50)


@pytest.mark.parametrize("z", [0.1, 3.0])
def test_spectrum_units_and_redshift(z):
    """Observed f_λ from a rest-frame L_ν: f_ν,obs = (1+z) L_ν / (4π D_L²) at λ(1+z)."""
    from sedhpc.cosmology import luminosity_distance_cm
    from sedhpc.sps.fsps import LSUN_FSPS, FSPSBackend

    backend = object.__new__(FSPSBackend)  # no FSPS set-up: the fake replaces it
    backend.model = MODEL
    backend.sp = _FakeSP(formed=2 * 10 ** 10.0)  # FSPS's mass formed differs: rescaled
    wave, flam, logmf = backend.spectrum(_theta(zred=z, logmass=10.0))
    assert wave == pytest.approx(np.geomspace(100.0, 1e6, 50) * (1 + z))
    fnu = flam * wave ** 2 / 2.99792458e18
    expect = 0.5 * (1 + z) * LSUN_FSPS / (4 * np.pi * luminosity_distance_cm(z) ** 2)
    assert fnu == pytest.approx(np.full(50, expect), rel=1e-12)
    assert logmf == pytest.approx(np.log10(0.6))
    assert backend.sp.tage == pytest.approx(age_yr(z) / 1e9)
    assert backend.sp.params["zred"] == z and backend.sp.params["dust1"] == pytest.approx(0.48)
    assert backend.sp.table[0].shape == (14,)
