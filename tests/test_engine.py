"""The catalog engine end to end through the CLI: one process vs 3 MPI ranks vs a 3-task array
job give the same stored summaries; SIGKILL of one rank or of all ranks at random moments,
then a rerun, loses and duplicates nothing; settings mismatches are refused; bad rows are
flagged without stopping the run; the compressed posteriors keep their quantiles.

The emulator is a small random network (tests/test_emulator.py) written to a file, so each fit
takes seconds; the sampler runs with a short step cap (most galaxies end 'not converged',
which the store records like any other result)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

from sedhpc import store
from sedhpc.catalog import Flags
from sedhpc.emulator import io
from sedhpc.model import get_model
from test_emulator import BANDS, emu_file, mock_emulator, mock_photometry, random_net
from test_trainset import MPIEXEC, env, needs_mpi

N = 36
FAST = {"nslots": 6, "max_steps": 100, "min_steps": 50, "check_every": 50, "init_draws": 64}
TIMEOUT = 300


def make_catalog(path, n=N, seed=3, bad=True, frac=0.05):
    """Mock catalog in nJy with an id and a redshift column; with ``bad``, rows 1–6 carry one
    defect each (NO_BANDS, BAD_ERROR, duplicate id, redshift out of range, missing redshift,
    one band 20 times too bright: BAD_CHI2)."""
    model = get_model("embedded")
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.05, 2.5, n)
    theta = model.sample(rng, n, z[:, None])
    flux, err = mock_photometry(mock_emulator(), theta, rng, frac)
    t = Table()
    t["id"] = [f"gal{i:04d}" for i in range(n)]
    t["z"] = z
    for j, b in enumerate(BANDS):
        t[f"f_{b}"], t[f"e_{b}"] = flux[:, j] * 3.631e12, err[:, j] * 3.631e12
    if bad:
        for b in BANDS:
            t[f"f_{b}"][1] = np.nan
        t[f"e_{BANDS[0]}"][2] = -1.0
        t["id"][3] = t["id"][0]
        t["z"][4] = 7.5
        t["z"][5] = np.nan
        t[f"f_{BANDS[4]}"][6] *= 20
    t.write(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    emu = d / "emu.h5"
    net = random_net(np.random.default_rng(21), 32)
    net.residuals = np.zeros((len(BANDS) + 1, 11))
    net.residual_cov = np.eye(len(BANDS) + 1)
    io.write(emu, emu_file([net]))
    cat = make_catalog(d / "cat.ecsv")
    cfg = d / "fit.toml"
    bands = "\n".join(f'{b} = ["f_{b}", "e_{b}"]' for b in BANDS)
    opts = "\n".join(f"{k} = {v}" for k, v in FAST.items())
    cfg.write_text(f'[fit]\nchunk = 4\nseed = 5\nemulator = "{emu}"\n[fit.columns]\n'
                   f'units = "nJy"\nid_column = "id"\nredshift_column = "z"\n'
                   f"[fit.columns.bands]\n{bands}\n[fit.sampler_options]\n{opts}\n")
    ref = d / "single"
    res = sedhpc("fit", cat, "--config", cfg, "--out", ref)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"dir": d, "cat": cat, "cfg": cfg, "ref": ref}


def sedhpc(*args, ranks=None, extra_env=None, timeout=TIMEOUT):
    cmd = [sys.executable, "-m", "sedhpc", *map(str, args), "--no-progress"] \
        if args[0] == "fit" else [sys.executable, "-m", "sedhpc", *map(str, args)]
    if ranks:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    e = env()
    e.update(extra_env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


def summaries(directory):
    """Stored results without the timing column, in row order."""
    data = store.read(directory)
    return {k: v for k, v in data.items() if k not in ("runtime", "quantities")}


def assert_same(a_dir, b_dir, n=N):
    a, b = summaries(a_dir), summaries(b_dir)
    assert list(a["row"]) == list(range(n)) and list(b["row"]) == list(range(n))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_single_process_fit_flags_and_stores(setup, tmp_path):
    ref = setup["ref"]
    data = store.read(ref, samples=True)
    assert list(data["row"]) == list(range(N))
    flags = data["flags"]
    assert flags[1] & Flags.NO_BANDS and flags[2] & Flags.BAD_ERROR
    assert flags[3] & Flags.DUPLICATE_ID and flags[4] & Flags.Z_OUT_OF_RANGE
    assert flags[5] & Flags.NO_REDSHIFT and not flags[0] & (Flags.DUPLICATE_ID | Flags.NO_BANDS)
    skipped = np.isin(np.arange(N), [1, 3, 4, 5])
    assert np.all(np.isnan(data["percentiles"][skipped]))
    assert np.all(np.isfinite(data["percentiles"][~skipped]))
    assert data["nbands"][2] == len(BANDS) - 1
    assert flags[6] & Flags.BAD_CHI2 and not np.any(flags[7:] & Flags.BAD_CHI2)
    # the 20-times-too-bright band is also a colour no training SED has
    assert flags[6] & Flags.COLOUR_OOD and not np.any(flags[7:] & Flags.COLOUR_OOD)
    # compression fidelity: quantiles of the stored (uint16) samples vs those of the exact
    # samples (stored percentiles were taken before quantisation): within 1 % of the 16–84 width
    pc = data["percentiles"][~skipped]
    q = np.percentile(data["samples"][~skipped], store.PERCENTILES, axis=1).transpose(1, 2, 0)
    width = pc[:, :, 3] - pc[:, :, 1]
    assert np.all(np.abs(q - pc) <= 0.01 * width[:, :, None] + 1e-12)
    # every file records its provenance and settings
    meta = json.loads((ref / "fit.json").read_text())
    assert meta["provenance"]["git_hash"] and meta["identity"]["seed"] == 5
    shard = next((ref / "shards").glob("*.h5"))
    with h5py.File(shard) as f:
        assert f.attrs["sedhpc_format_version"] == store.FORMAT_VERSION
        assert json.loads(f.attrs["config_json"])["chunk"] == 4
    out = sedhpc("status", ref)
    assert f"{N - 4} fitted, 4 not fitted (flagged), 0 pending" in out.stdout, out.stdout
    assert f"attempt 1 (1 rank(s)): {N} galaxies in " in out.stdout, out.stdout
    assert sedhpc("check", ref).returncode == 0
    res = sedhpc("merge", ref, "--out", tmp_path / "s.fits", "--posteriors", tmp_path / "p.h5")
    assert res.returncode == 0, res.stderr
    t = Table.read(tmp_path / "s.fits")
    assert len(t) == N and "logmass_p50" in t.colnames and "log_sfr100_p84" in t.colnames
    np.testing.assert_array_equal(t["logmass_p50"], data["percentiles"][:, 0, 2].astype("f4"))
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["samples"].shape == (N, 256, len(data["quantities"]))


def test_out_of_range_flag_when_the_posterior_piles_up_at_a_training_edge():
    from types import SimpleNamespace

    from sedhpc.ood import OOD

    model = get_model("embedded")
    b = model.bounds.copy()
    lo, hi = b[:, 0].copy(), b[:, 1].copy()
    k = model.index("dust2")
    hi[k] = 2.0  # the emulator was trained on dust2 ≤ 2 only; the prior goes to 4
    ood = OOD(model, SimpleNamespace(lo=lo, hi=hi))
    rng = np.random.default_rng(0)
    s = model.sample(rng, 256, np.full((256, 1), 0.5))
    ok = SimpleNamespace(samples=s, chi2_best=5.0)
    assert ood.flags(ok, 9) == 0
    s2 = s.copy()
    s2[:100, k] = rng.uniform(1.97, 2.0, 100)
    assert ood.flags(SimpleNamespace(samples=s2, chi2_best=5.0), 9) == Flags.OUT_OF_RANGE
    assert ood.flags(SimpleNamespace(samples=s, chi2_best=40.0), 9) == Flags.BAD_CHI2


def test_rerun_of_a_finished_fit_does_nothing_and_other_settings_are_refused(setup, tmp_path):
    out = tmp_path / "again"
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out)
    assert res.returncode == 0
    before = sorted(p.name for p in (out / "shards").glob("*.h5"))
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out)
    assert res.returncode == 0 and "0 galaxies fitted" in res.stdout
    assert sorted(p.name for p in (out / "shards").glob("*.h5")) == before
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out, "--seed", "6")
    assert res.returncode == 2 and "other settings" in res.stderr and "seed" in res.stderr
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out, "--seed", "6",
                 "--new-run")
    assert res.returncode == 0 and list(out.glob("superseded-*/shards"))
    assert json.loads((out / "fit.json").read_text())["identity"]["seed"] == 6


@needs_mpi
def test_three_ranks_equal_one_process_on_300_galaxies(setup, tmp_path):
    cat = make_catalog(tmp_path / "cat300.ecsv", n=300, seed=4)
    for out, ranks in ((tmp_path / "one", None), (tmp_path / "mpi", 3)):
        res = sedhpc("fit", cat, "--config", setup["cfg"], "--out", out, ranks=ranks)
        assert res.returncode == 0, res.stderr[-3000:]
        assert sedhpc("check", out).returncode == 0
    logs = "".join(p.read_text() for p in (tmp_path / "mpi" / "logs").glob("*.log"))
    assert logs.count("written") == 75 and all(f"rank {r}/3" in logs for r in range(3))
    # (the tests' environment sets OMP/OPENBLAS_NUM_THREADS: the ranks respect it)
    assert logs.count("BLAS threads as set by the user") == 3
    shards = list((tmp_path / "mpi" / "shards").glob("*.h5"))
    assert len(shards) == 3  # every rank fitted (rank 0 too)
    assert_same(tmp_path / "one", tmp_path / "mpi", n=300)


def test_array_job_of_three_shards_plus_merge_equals_single_run(setup, tmp_path):
    out = tmp_path / "array"
    for task in range(3):
        res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out,
                     extra_env={"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "3"})
        assert res.returncode == 0, res.stderr[-3000:]
        if task == 0:
            st = sedhpc("status", out).stdout
            assert "shard 1: chunks 0/3" in st and "pending" in st
            assert "attempt 1 (1 rank(s)): 12 galaxies in" in st and "need ≈" not in st, st
            rep = sedhpc("report", out, "--out", tmp_path / "rep")
            assert "8 galaxies (the run is not finished: 24 catalog rows pending" in rep.stdout
            assert json.loads((tmp_path / "rep" / "summary.json").read_text())["pending"] == 24
            assert sedhpc("merge", out, "--out", tmp_path / "x.fits").returncode == 2
    assert sedhpc("check", out).returncode == 0
    for d, name in ((out, "a.fits"), (setup["ref"], "b.fits")):
        assert sedhpc("merge", d, "--out", tmp_path / name).returncode == 0
    a, b = Table.read(tmp_path / "a.fits"), Table.read(tmp_path / "b.fits")
    for c in a.colnames:
        if c != "runtime":
            np.testing.assert_array_equal(a[c], b[c], err_msg=c)


def _wait_gone(pids, timeout=20.0):
    """Wait until the processes ``pids`` have exited: a SIGKILLed rank inside a system call
    (a rename, an fsync) finishes it first, so its last chunk can land after the launcher is
    reaped; the store must be scanned only when no rank can still write."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"ranks {alive} still running {timeout} s after the kill")


def _ranks_pids(out, attempt):
    pids = []
    for log in (out / "logs").glob(f"a{attempt:03d}-*.log"):
        for line in log.read_text().splitlines():
            if " pid " in line:
                pids.append(int(line.split(" pid ")[1].split()[0]))
    return pids


@needs_mpi
@pytest.mark.parametrize("victims", ["one", "all"])
def test_sigkill_at_random_moments_then_resume(setup, tmp_path, victims):
    """Kill when a random number of chunks (1 … all but four) is stored, plus a random delay
    under half the time between the last two chunks, so trials die mid-run and mid-chunk at
    whatever speed the machine runs.  The chunks here take tens of milliseconds, as long as a
    look at the store, so a trial may still see the run finish first; that must resume to the
    same results too (nothing to do), and most trials must stop short.  When one rank dies
    holding no claim, the survivor may legitimately finish every chunk before the launcher
    takes it down."""
    rng = np.random.default_rng({"one": 1, "all": 2}[victims])
    nchunks = -(-N // 4)
    partial = 0
    for trial in range(5):
        out = tmp_path / f"t{trial}"
        cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "sedhpc", "fit", str(setup["cat"]),
               "--config", str(setup["cfg"]), "--out", str(out), "--no-progress"]
        p = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        target = int(rng.integers(1, nchunks - 3))
        seen, last, gap, pids = 0, time.perf_counter(), 0.05, []
        while p.poll() is None and seen < target:
            time.sleep(0.01)
            n = len(store.scan(out, verify=False).chunks) if (out / "shards").exists() else 0
            if n > seen:  # the pace of chunks on this machine, now
                now = time.perf_counter()
                gap, last, seen = (now - last if seen else gap), now, n
                pids = pids or _ranks_pids(out, 1)  # each rank logs its pid before any chunk
        assert len(pids) == 2 and p.poll() is None, "the run ended before the kill"
        time.sleep(rng.uniform(0, min(gap, 0.3) / 2))  # somewhere inside the next chunk
        if victims == "all":  # Hydra starts each rank in its own session: kill them by pid
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            os.killpg(p.pid, signal.SIGKILL)
        else:
            os.kill(pids[rng.integers(2)], signal.SIGKILL)
        try:
            p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:  # the launcher did not notice: take all down
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        assert p.returncode != 0
        _wait_gone(pids)
        stored = len(store.scan(out).chunks)
        assert 0 < stored <= nchunks
        partial += stored < nchunks
        print(f"trial {trial}: killed after {target}+ of {nchunks} chunks, {stored} stored")
        res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out, ranks=2)
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"{nchunks - stored} chunks" in "".join(
            p_.read_text() for p_ in (out / "logs").glob("a002-*.log")) or stored == nchunks
        chk = sedhpc("check", out)
        assert chk.returncode == 0, chk.stdout
        assert_same(setup["ref"], out)
    assert partial >= (4 if victims == "all" else 3)


def test_file_level_problem_stops_before_any_work(setup, tmp_path):
    out = tmp_path / "bad"
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out, "--units", "ABmag")
    assert res.returncode == 2 and "ABmag" in res.stderr
    assert not (out / "shards").exists()
    res = sedhpc("fit", setup["cat"], "--config", setup["cfg"], "--out", out, "--threads", "0")
    assert res.returncode == 2 and "threads must be ≥ 1" in res.stderr, res.stderr[-2000:]
    cut = tmp_path / "cut.fits"
    Table.read(setup["cat"]).write(cut)
    cut.write_bytes(cut.read_bytes()[:4000])
    res = sedhpc("fit", cut, "--config", setup["cfg"], "--out", out)
    assert res.returncode == 2 and "complete" in res.stderr, res.stderr


def test_job_templates_and_example_config_are_valid():
    from sedhpc import config
    from sedhpc.scheduler import FitConfig

    root = Path(__file__).resolve().parents[1]
    for script in sorted((root / "jobs").glob("fit*")) + [root / "jobs" / "merge.slurm"]:
        if script.suffix in (".slurm", ".sh"):
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
    cfg = config.load(FitConfig, "fit", root / "jobs" / "fit.toml", env={})
    assert cfg.spec.units == "nJy" and len(cfg.spec.bands) == 6
    ex = config.load(FitConfig, "fit", root / "sedhpc" / "data" / "dc2_example.toml",
                     {"catalog": "x", "out": "y"}, env={})
    assert ex.spec.units == "ABmag"


def test_reweight_to_a_new_prior_agrees_with_fitting_under_it(setup, tmp_path):
    """Prior A (default) → B (dust2 ~ N(1.5, 0.3)): re-weighted A agrees with a direct fit
    under B (median D < 0.3), while A and B themselves differ."""
    from sedhpc.report import discrepancy, load

    cat = make_catalog(tmp_path / "c.ecsv", n=16, seed=8, bad=False, frac=0.5)  # faint
    dust2 = 'dust2 = {type = "normal", mu = 1.5, sigma = 0.3, lo = 0.0, hi = 4.0}\n'
    (tmp_path / "b.toml").write_text("[prior]\n" + dust2)
    (tmp_path / "fitb.toml").write_text(setup["cfg"].read_text().replace(
        "[fit.columns]", "[fit.prior]\n" + dust2 + "[fit.columns]"))
    long = ["--option", "max_steps=1500", "--option", "min_steps=300", "--seed", "9"]
    for name, cfg in (("a", setup["cfg"]), ("b", tmp_path / "fitb.toml")):
        res = sedhpc("fit", cat, "--config", cfg, "--out", tmp_path / name, *long)
        assert res.returncode == 0, res.stderr[-3000:]
    res = sedhpc("reweight", tmp_path / "a", "--prior", tmp_path / "b.toml", "--out",
                 tmp_path / "ab")
    assert res.returncode == 0, res.stderr[-3000:]
    assert sedhpc("check", tmp_path / "ab").returncode == 0
    a, b, ab = (load(tmp_path / n) for n in ("a", "b", "ab"))
    assert np.all(ab["ess"] > 20)
    d_ab_b = discrepancy(ab, b, ["dust2", "logmass", "logzsol"])
    d_a_b = discrepancy(a, b, ["dust2"])
    assert d_a_b["dust2"]["median_D"] > 0.5  # the new prior matters
    for name in ("dust2", "logmass", "logzsol"):
        assert d_ab_b[name]["median_D"] < 0.3, (name, d_ab_b[name]["median_D"])


def test_missing_catalog_and_non_hdf5_emulator_are_named(tmp_path, capsys):
    """A missing catalog is named before the column map is looked at, and a file that is not
    HDF5 given as the emulator is refused by name, not with an h5py traceback."""
    from sedhpc.cli import main

    assert main(["fit", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) != 0
    assert "no catalog file at" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    bogus = tmp_path / "emu.h5"
    bogus.write_text("id,f\n")
    with pytest.raises(ValueError, match="not a sedhpc emulator file .not HDF5"):
        from sedhpc.emulator import io
        io.read(bogus)


def test_status_pace_from_the_ranks_logs(tmp_path):
    """The pace line of ``sedhpc status``: the latest attempt's ranks, galaxies written since
    they were ready, the last chunk's age and the time the pending galaxies need at that pace."""
    import datetime

    from sedhpc.cli.fit import pace

    logs = tmp_path / "logs"
    logs.mkdir()
    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)

    def at(s):
        return (t0 + datetime.timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S,000")

    (logs / "a001-s0000-r0000.log").write_text(f"{at(0)} rank 0/1 pid 1 ready after 1 s\n"
                                               f"{at(50)} chunk 0: rows 0-9 written\n")
    for r in range(2):  # the latest attempt: 2 ranks, 40 galaxies in 200 s
        (logs / f"a002-s0000-r000{r}.log").write_text(
            f"{at(1000)} rank {r}/2 pid 9 ready after 1.5 s (array module numpy)\n"
            f"{at(1100 + 100 * r)} chunk {2 * r + 1}: rows {20 * r + 10}-{20 * r + 19} written\n"
            f"{at(1150 + 50 * r)} chunk {2 * r + 2}: rows {20 * r + 20}-{20 * r + 29} written\n")
    (logs / "a003-s0001-r0000.log").write_text(f"{at(1000)} rank 0/1 pid 9 ready after 1 s\n")
    now = (t0 + datetime.timedelta(seconds=1260)).timestamp()
    line = pace(tmp_path, 0, 400, now=now)
    assert line == ("attempt 2 (2 rank(s)): 40 galaxies in 3 min, the last chunk written 60 s "
                    "ago; at that pace the 400 pending need ≈ 33 min"), line
    assert pace(tmp_path, 1, 10, now=now) == (
        "attempt 3 (1 rank(s)): ready 4 min ago, no chunk written yet")
    assert pace(tmp_path, 2, 10, now=now) is None


def test_damaged_fit_json_gets_a_clear_error(tmp_path):
    """status / check / merge / report / reweight on a directory whose fit.json is cut short
    or not sedhpc's: exit 2 with one line naming the file, no traceback."""
    for text in ("{\"config\": {\"chunk\": 4", "{}"):
        d = tmp_path / f"d{len(text)}"
        d.mkdir()
        (d / "fit.json").write_text(text)
        for cmd in (["status", d], ["check", d], ["merge", d, "--out", tmp_path / "m.fits"],
                    ["report", d, "--out", tmp_path / "r"],
                    ["reweight", d, "--sps", "embedded", "--out", tmp_path / "w"]):
            res = sedhpc(*cmd)
            msg = res.stdout + res.stderr
            assert res.returncode == 2, (cmd, msg)
            assert "fit.json is damaged or not written by sedhpc fit" in msg, (cmd, msg)
            assert "Traceback" not in msg, (cmd, msg)
