"""Training-set generation: determinism across ranks, kill -9 and resume, config refusal,
recorded SPS failures, a rank that dies silently (all on the real embedded SPS)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from gen_helpers import FlakySPS
from sedhpc.config import ConfigError
from sedhpc.sps import resolve_dl07
from sedhpc.trainset import GenerateConfig, draw, finalize, generate, load
from sedhpc.trainset.store import scan

BANDS = ["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0", "twomass_Ks", "wise_w1",
         "wise_w2"]
N, CHUNK, SEED = 288, 12, 17
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install -e '.[mpi]')")
TIMEOUT = 600


def config(out, **kw):
    args = dict(out=str(out), n=N, bands=list(BANDS), zrange=[0.01, 3.0], seed=SEED,
                chunk=CHUNK, progress=False)
    args.update(kw)
    cfg = GenerateConfig(**args)
    cfg.validate()
    return cfg


def cli(out, *extra):
    return [sys.executable, "-m", "sedhpc", "generate", "--bands", ",".join(BANDS), "-n", str(N),
            "--zrange", "0.01", "3", "--seed", str(SEED), "--chunk", str(CHUNK), "--out",
            str(out), "--no-progress", *extra]


def mpi(n, cmd):
    return [MPIEXEC, "-n", str(n), *cmd]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).parent) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return e


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("ref")
    summary = generate(config(out), comm=None)
    return load(out), summary


def same_set(a, b):
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.phot, b.phot)
    np.testing.assert_array_equal(a.log_mfrac, b.log_mfrac)
    np.testing.assert_array_equal(a.ok, b.ok)


def test_single_process_set_contents(reference):
    ts, summary = reference
    assert ts.theta.shape == (N, 16) and ts.phot.shape == (N, len(BANDS))
    assert ts.ok.all() and summary["failed"] == 0 and summary["draws"] == N
    assert ts.band_names == BANDS and ts.param_names[0] == "logmass"
    z = ts.theta[:, ts.param_names.index("zred")]
    assert z.min() >= 0.01 and z.max() <= 3.0
    assert np.all(np.isfinite(ts.phot)) and np.all(ts.log_mfrac < 0)
    a = ts.attrs
    for key in ("sedhpc_version", "git_hash", "config_json", "distribution", "seed",
                "sedhpc_format_version", "model"):
        assert key in a
    assert json.loads(a["config_json"])["seed"] == SEED and a["model"] == "embedded"
    assert json.loads(a["distribution"])["priors"][8]["type"] == "mixture"
    # draw i depends only on (seed, i)
    d = config("/unused").n
    from sedhpc.trainset.generate import training_distribution
    _, dist = training_distribution(config("/unused"))
    np.testing.assert_array_equal(draw(dist, SEED, 100, 5), ts.theta[100:105])
    assert d == N


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_give_identical_sets(reference, tmp_path, ranks):
    out = tmp_path / f"mpi{ranks}"
    res = subprocess.run(mpi(ranks, cli(out)), capture_output=True, text=True, timeout=TIMEOUT,
                         env=env())
    assert res.returncode == 0, res.stderr[-3000:]
    same_set(load(out), reference[0])
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == [f"a001-r{r:04d}.log" for r in range(ranks)]
    assert scan(out).duplicates == 0


def _procs_on(out) -> list[int]:
    """Live (non-zombie) processes whose command line names ``out``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if str(out).encode() not in (d / "cmdline").read_bytes():
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


@needs_mpi
def test_kill_and_resume_gives_same_set(reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(mpi(2, cli(out)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env(), start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < TIMEOUT:
        if (out / "shards").exists() and len(scan(out).chunks) >= 3:
            break
        time.sleep(0.02)
    # Hydra starts each rank in its own session, so killing the launcher's group does not
    # reach them: kill every process working on this output by pid, and wait until all are gone
    # (one inside a system call finishes it first) before taking stock
    ranks = _procs_on(out)
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    t0 = time.monotonic()
    while _procs_on(out) and time.monotonic() - t0 < 20:
        time.sleep(0.02)
    assert not _procs_on(out), "ranks still running after SIGKILL"
    partial = scan(out)
    assert not (out / "trainset.h5").exists(), "run finished before it could be killed"
    assert 3 <= len(partial.chunks) < N // CHUNK
    res = subprocess.run(cli(out), capture_output=True, text=True, timeout=TIMEOUT, env=env())
    assert res.returncode == 0, res.stderr[-3000:]
    same_set(load(out), reference[0])
    after = scan(out)
    assert after.duplicates == 0 and sorted(after.chunks) == list(range(N // CHUNK))
    # finished chunks were not recomputed: the second attempt did only the rest
    redone = [c for c in after.chunks.values() if c.shard.name.startswith("a002")]
    assert len(redone) == N // CHUNK - len(partial.chunks)


def test_mismatched_config_is_refused(reference, tmp_path):
    out = tmp_path / "cfg"
    generate(config(out, n=24), comm=None)
    with pytest.raises(ConfigError, match=r"seed: 17 \(stored\) → 18 \(now\)"):
        generate(config(out, n=24, seed=18), comm=None)
    with pytest.raises(ConfigError, match="bands"):
        generate(config(out, n=24, bands=BANDS[:3]), comm=None)
    res = subprocess.run(cli(out) + ["--chunk", "6"], capture_output=True, text=True,
                         timeout=TIMEOUT, env=env())
    assert res.returncode == 2 and "chunk: 12 (stored) → 6 (now)" in res.stderr
    with pytest.raises(ConfigError, match="a set can grow, not shrink"):
        generate(config(out, n=12), comm=None)
    # the DL07 qpah sequence is part of a set's identity, the default recorded explicitly
    default = resolve_dl07("embedded")
    other = ({"mw", "bagpipes"} - {default}).pop()
    assert json.loads((out / "generate.json").read_text())["dl07"] == default
    with pytest.raises(ConfigError, match=fr"dl07: '{default}' \(stored\) → '{other}' \(now\)"):
        generate(config(out, n=24, dl07=other), comm=None)
    # a set recorded before dl07 existed was made with bagpipes' grid and resumes under it only
    meta = json.loads((out / "generate.json").read_text())
    del meta["dl07"]
    (out / "generate.json").write_text(json.dumps(meta))
    assert generate(config(out, n=24, dl07="bagpipes"), comm=None)["draws"] == 0
    with pytest.raises(ConfigError, match=r"dl07: 'bagpipes' \(stored\) → 'mw' \(now\)"):
        generate(config(out, n=24, dl07="mw"), comm=None)
    with pytest.raises(ConfigError, match="dl07 must be one of"):
        config(out, dl07="lmc")
    with pytest.raises(ConfigError, match=r"dl07 must be one of \['mw'\] for model 'fsps'"):
        config(out, model="fsps", dl07="bagpipes")
    assert config(tmp_path / "f", model="fsps").dl07 == "mw"
    # settings refused before anything is recorded: the corrected command then runs
    bad = tmp_path / "badz"
    with pytest.raises(ValueError, match="redshift range"):
        generate(config(bad, n=12, zrange=[0.0, 3.0]), comm=None)
    assert not (bad / "generate.json").exists()
    generate(config(bad, n=12), comm=None)


def test_extending_a_set_keeps_its_draws(reference, tmp_path):
    """n may grow: the first draws stay, a short last chunk is redone at full size."""
    out = tmp_path / "grow"
    generate(config(out, n=30), comm=None)  # chunks of 12: the last holds 6
    first = load(out)
    generate(config(out), comm=None)
    grown = load(out)
    same_set(grown, reference[0])
    np.testing.assert_array_equal(grown.phot[:30], first.phot)
    # rerunning a complete set leaves it alone
    stamp = (out / "trainset.h5").stat().st_mtime_ns
    assert generate(config(out), comm=None)["draws"] == 0
    assert (out / "trainset.h5").stat().st_mtime_ns == stamp


def test_injected_sps_failures_are_recorded(tmp_path):
    out = tmp_path / "flaky"
    cfg = config(out, n=96)
    backend = FlakySPS(filters=BANDS)
    summary = generate(cfg, backend=backend, comm=None)
    ts = load(out)
    dust2 = ts.theta[:, ts.param_names.index("dust2")]
    raised, nonfinite = dust2 > 3.5, dust2 < 0.05
    assert raised.any() and nonfinite.any()
    np.testing.assert_array_equal(ts.ok == 0, raised | nonfinite)
    with h5py.File(out / "trainset.h5") as f:
        reasons = f["reason"][()]
    assert all(b"injected SPS failure" in r for r in reasons[raised])
    assert all(b"non-finite" in r for r in reasons[nonfinite])
    assert np.all(np.isnan(ts.phot[~ts.ok.astype(bool)]))
    assert summary["failed"] == int((raised | nonfinite).sum())
    assert summary["failures"] == {"RuntimeError": int(raised.sum()),
                                   "FloatingPointError": int(nonfinite.sum())}


def test_finalize_refuses_incomplete_set(tmp_path):
    out = tmp_path / "partial"
    cfg = config(out, n=24)
    generate(cfg, comm=None)
    (out / "trainset.h5").unlink()
    shard = next((out / "shards").iterdir())
    shard.unlink()
    with pytest.raises(RuntimeError, match="incomplete: 2 of 2 chunks missing"):
        finalize(cfg)


@needs_mpi
def test_silently_dying_rank_is_noticed_and_redone(reference, tmp_path):
    out = tmp_path / "dying"
    helper = Path(__file__).with_name("gen_helpers.py")
    res = subprocess.run(mpi(3, [sys.executable, str(helper), str(out), ",".join(BANDS), str(N),
                                 str(CHUNK), str(SEED)]),
                         capture_output=True, text=True, timeout=TIMEOUT, env=env())
    # the job does not complete (whatever exit code the launcher reports) ...
    assert not (out / "trainset.h5").exists()
    # ... and the same command without the dying rank finishes it, every draw once
    res = subprocess.run(cli(out), capture_output=True, text=True, timeout=TIMEOUT, env=env())
    assert res.returncode == 0, res.stderr[-3000:]
    same_set(load(out), reference[0])
    assert scan(out).duplicates == 0
