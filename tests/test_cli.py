"""The command line: help, models, photometry (embedded SPS), provenance, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from sedhpc.cli import main
from sedhpc.model import get_model
from sedhpc.sps import resolve_dl07


def run(*args):
    return subprocess.run([sys.executable, "-m", "sedhpc", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_documents_commands_and_options():
    out = run("--help")
    assert out.returncode == 0 and "photometry" in out.stdout and "models" in out.stdout
    out = run("photometry", "--help")
    for opt in ("--model", "--bands", "--bands-file", "--theta", "--prior", "--seed", "--out"):
        assert opt in out.stdout


def test_models_lists_parameters(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "prospector_alpha" in text and "embedded" in text and "log_duste_gamma" in text
    assert "massmet" in text and "student_t" in text


@pytest.fixture(scope="module")
def theta_table(tmp_path_factory):
    model = get_model("embedded")
    theta = model.sample(np.random.default_rng(4), 3, np.full((3, 1), 0.3))
    theta[:, model.index("logmass")] = 10.5
    path = tmp_path_factory.mktemp("cli") / "theta.ecsv"
    Table(theta, names=model.names).write(path)
    return path, theta


def test_photometry_from_table(theta_table, tmp_path):
    path, theta = theta_table
    out = tmp_path / "phot.ecsv"
    assert main(["photometry", "--bands", "sdss_g0,sdss_r0,wise_w1", "--theta", str(path),
                 "--out", str(out)]) == 0
    tab = Table.read(out)
    assert len(tab) == 3
    np.testing.assert_allclose(tab["dust2"], theta[:, get_model("embedded").index("dust2")])
    for band in ("sdss_g0", "sdss_r0", "wise_w1"):
        mag = np.asarray(tab[f"{band}_asinh_mag"])
        x = np.asarray(tab[f"{band}_maggies"])
        assert np.all((mag > 10) & (mag < 30))
        np.testing.assert_allclose(mag, -2.5 * np.log10(x), atol=1e-6)
    assert np.all(tab["logmstar"] < 10.5) and np.all(tab["sfr100"] >= 0)
    assert tab.meta["sedhpc_kind"] == "photometry" and tab.meta["sedhpc_format_version"] == 1
    assert "git_hash" in tab.meta and "sedhpc_version" in tab.meta
    assert json.loads(tab.meta["config_json"])["bands"] == ["sdss_g0", "sdss_r0", "wise_w1"]
    assert json.loads(tab.meta["config_json"])["dl07"] == resolve_dl07("embedded")
    # the MW3.1-only qpah sequence: recorded; optical bands see no dust emission
    out_mw = tmp_path / "phot_mw.ecsv"
    assert main(["photometry", "--bands", "sdss_g0,sdss_r0,wise_w1", "--theta", str(path),
                 "--dl07", "mw", "--out", str(out_mw)]) == 0
    mw = Table.read(out_mw)
    assert json.loads(mw.meta["config_json"])["dl07"] == "mw"
    np.testing.assert_allclose(mw["sdss_r0_asinh_mag"], tab["sdss_r0_asinh_mag"], atol=1e-6)


def test_photometry_prior_draws_fits(tmp_path):
    out = tmp_path / "phot.fits"
    res = run("photometry", "--bands", "sdss_r0", "--prior", "4", "--seed", "3", "--zred", "1.2",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    tab = Table.read(out)
    assert len(tab) == 4 and np.all(tab["zred"] == 1.2)


def test_photometry_bad_input_is_reported(theta_table, tmp_path, capsys):
    path, theta = theta_table
    tab = Table.read(path)
    tab.remove_column("dust2")
    broken = tmp_path / "broken.ecsv"
    tab.write(broken)
    assert main(["photometry", "--bands", "sdss_r0", "--theta", str(broken),
                 "--out", str(tmp_path / "o.ecsv")]) == 2
    assert "dust2" in capsys.readouterr().err
    tab = Table.read(path)
    tab["duste_umin"][1] = 40.0
    tab.write(broken, overwrite=True)
    assert main(["photometry", "--bands", "sdss_r0", "--theta", str(broken),
                 "--out", str(tmp_path / "o.ecsv")]) == 2
    assert "'duste_umin' = 40.0" in capsys.readouterr().err
    assert main(["photometry", "--bands", "sdss_r0,not_a_band", "--theta", str(path),
                 "--out", str(tmp_path / "o.ecsv")]) == 2
    assert "not_a_band" in capsys.readouterr().err


def test_photometry_fsps_without_sps_home_is_a_clear_error(theta_table, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SPS_HOME"}
    res = subprocess.run([sys.executable, "-m", "sedhpc", "photometry", "--model", "fsps",
                          "--bands", "sdss_r0", "--prior", "2", "--out", str(tmp_path / "o.ecsv")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2
    assert "SPS_HOME" in res.stderr and "not set" in res.stderr
