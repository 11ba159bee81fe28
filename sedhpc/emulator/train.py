"""Emulator training with PyTorch (Mathews et al. 2023, Section 2.2). PyTorch is imported only
here.

Mass normalisation (default): photometry is exactly proportional to the mass formed, so each
network emulates the arsinh magnitudes of every draw scaled to the top of the training
distribution's logmass range, without logmass among its inputs; the kernel scales the fluxes
back (:func:`sedhpc.emulator.kernel.scale_mass`). The network then spends nothing on a 16-mag
linear trend (same training: ~25 % smaller test-set residuals and a third smaller log mfrac
residuals, docs/BENCHMARKS.md).

Recipe: inputs normalised by the training mean and standard deviation; ``depth`` hidden layers
of ``width`` with GELU (tanh approximation); a linear output per band plus one for log10 mfrac,
de-normalised by the training mean with σ fixed to 1 (every band weighs the same); RMSE loss;
NAdam; a schedule of (learning rate, batch size) steps, each with a fresh random 10 % validation
split, stopping when the validation loss has not improved for ``patience`` epochs or after
``max_epochs``, and keeping the best weights. A fixed 10 % of the set (seeded) is held out as
the test set for the residual statistics stored with the emulator. Training is checkpointed
after every epoch (atomically) and resumes from the checkpoint. Stitched emulators train one
network per redshift window on the draws inside it.

``log_inputs`` (default zred) enter as log10(θ + offset) (``log_offsets``, default 0): inputs
on which magnitudes depend logarithmically. dust2 is one that reaches 0: the absorbed light,
hence the far-IR flux, is ∝ dust2 at small dust2, so far-IR magnitudes run as −2.5 log10(dust2)
down to ≈ 1e−4 (the embedded SPS at z = 1: SPIRE 350 µm 19.6 / 16.8 / 14.4 / 12.2 mag at
dust2 = 0 / 1e−3 / 1e−2 / 0.1); ``log_inputs = ["zred", "dust2"]``, ``log_offsets = [0, 1e-4]``.

``init`` continues from the networks of an existing emulator file (its normalisation, weights
and test split: the same training set, seed and test fraction are required, so that the stored
test-set statistics stay out of sample), e.g. a further (learning rate, batch) schedule after
the first has levelled off (a warm restart: the first step may start at a higher learning rate);
when the new schedule ends above the given network on the last step's validation draws, the
given network is kept.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .. import config as cfgmod
from ..trainset import load as load_trainset
from . import io

CKPT_VERSION = 1


@dataclasses.dataclass
class TrainConfig:
    """Settings of ``sedhpc train`` (also the ``[train]`` table of a TOML file)."""
    trainset: str
    out: str
    width: int = 256
    depth: int = 5
    lr: list[float] = dataclasses.field(default_factory=lambda: [1e-3, 1e-4, 1e-5])
    batch: list[int] = dataclasses.field(default_factory=lambda: [1024, 8192, 65536])
    patience: int = 20
    max_epochs: int = 500
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    windows: list[list[float]] | None = None
    bands: list[str] | None = None
    limit: int | None = None
    log_inputs: list[str] = dataclasses.field(default_factory=lambda: ["zred"])
    log_offsets: list[float] = dataclasses.field(default_factory=list)
    mass_normalise: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    init: str | None = None

    def validate(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise cfgmod.ConfigError(f"width and depth must be ≥ 1; got {self.width}, "
                                     f"{self.depth}")
        if len(self.lr) != len(self.batch) or not self.lr:
            raise cfgmod.ConfigError(f"lr {self.lr} and batch {self.batch} must be schedules "
                                     "of equal, non-zero length")
        for f in (self.val_fraction, self.test_fraction):
            if not 0 < f < 0.5:
                raise cfgmod.ConfigError(f"validation/test fractions must be in (0, 0.5); got {f}")
        if self.log_offsets and (len(self.log_offsets) != len(self.log_inputs)
                                 or min(self.log_offsets) < 0):
            raise cfgmod.ConfigError(f"log_offsets {self.log_offsets} must be one value ≥ 0 per "
                                     f"log input {self.log_inputs} (or none: all 0)")
        if self.windows is not None:
            w = [tuple(map(float, x)) for x in self.windows]
            if any(len(x) != 2 or x[0] >= x[1] for x in w) or any(
                    w[k + 1][0] <= w[k][0] or w[k + 1][0] > w[k][1] for k in range(len(w) - 1)):
                raise cfgmod.ConfigError(f"windows must be increasing [zlo, zhi] pairs, each "
                                         f"overlapping or touching the next; got {self.windows}")
            for k in range(len(w) - 2):
                if w[k + 2][0] < w[k][1]:
                    raise cfgmod.ConfigError("at most two windows may overlap at any redshift; "
                                             f"windows {k} and {k + 2} overlap")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("training needs PyTorch: pip install 'sedhpc[train]' (for the CPU "
                          "build: pip install torch==2.13.0 first)") from None
    return torch


def build_network(nin: int, nout: int, width: int, depth: int):
    torch = _torch()
    layers, n = [], nin
    for _ in range(depth):
        layers += [torch.nn.Linear(n, width), torch.nn.GELU(approximate="tanh")]
        n = width
    layers.append(torch.nn.Linear(n, nout))
    return torch.nn.Sequential(*layers)


def file_hash(path, limit: int = 1 << 26) -> str:
    """sha256 of a file's first ``limit`` bytes and its size (cheap provenance of a set)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(limit))
    h.update(str(os.path.getsize(path)).encode())
    return h.hexdigest()[:32]


def _split(n: int, frac: float, rng: np.random.Generator):
    perm = rng.permutation(n)
    k = max(1, int(round(frac * n)))
    return perm[k:], perm[:k]


def _fit(x, y, cfg: TrainConfig, seed: int, ckpt_path: Path, label: str, key: str, log,
         init=None):
    """Train one network on (x, y) numpy arrays; resumes from ``ckpt_path`` when it was written
    for the same ``key`` (settings, window, data size). ``init`` (weights, biases, x_mean,
    x_std, y_mean) starts from a trained network instead of a random one, with its
    normalisation; it is returned unchanged when the schedule ends above it."""
    torch = _torch()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" \
        else cfg.device
    torch.manual_seed(seed)
    if init is None:
        x_mean, x_std = x.mean(axis=0), x.std(axis=0)
        x_std[x_std == 0] = 1.0
        y_mean = y.mean(axis=0)
    else:
        x_mean, x_std, y_mean = (np.asarray(a, dtype=np.float64) for a in init[2:])
    xt = torch.as_tensor((x - x_mean) / x_std, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y - y_mean, dtype=torch.float32, device=device)
    net = build_network(x.shape[1], y.shape[1], cfg.width, cfg.depth).to(device)
    state = {"step": 0, "epoch": 0, "best": float("inf"), "stale": 0, "history": [],
             "seconds": 0.0}
    init_sd = None
    if init is not None:
        layers = [m for m in net if hasattr(m, "weight")]
        with torch.no_grad():
            for m, w, b in zip(layers, init[0], init[1]):
                m.weight.copy_(torch.as_tensor(np.asarray(w).T, dtype=torch.float32))
                m.bias.copy_(torch.as_tensor(np.asarray(b), dtype=torch.float32))
        init_sd = copy.deepcopy(net.state_dict())
        net.eval()
        with torch.no_grad():
            va = _split(len(xt), cfg.val_fraction, np.random.default_rng([seed, 0]))[1]
            r0 = _rmse(net, xt, yt, torch.as_tensor(va, device=device))
        log(f"{label}: starting from the given network, validation RMSE {r0:.5f}")
    opt = torch.optim.NAdam(net.parameters(), lr=cfg.lr[0])
    best = copy.deepcopy(net.state_dict())
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck.get("version") == CKPT_VERSION and ck.get("key") == key:
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            best, state = ck["best"], ck["state"]
            log(f"{label}: resumed at step {state['step']} epoch {state['epoch']}")
    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(desc=label, unit="epoch", initial=len(state["history"]))
    t0, spent = time.perf_counter(), float(state.get("seconds", 0.0))  # (time before a kill)
    while state["step"] < len(cfg.lr):
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = cfg.lr[step]
        rng = np.random.default_rng([seed, step])
        tr, va = _split(len(xt), cfg.val_fraction, rng)
        tr_t, va_t = torch.as_tensor(tr, device=device), torch.as_tensor(va, device=device)
        bs = min(cfg.batch[step], len(tr))
        while state["epoch"] < cfg.max_epochs and state["stale"] < cfg.patience:
            net.train()
            # the shuffle of each epoch depends only on (seed, step, epoch): resumable exactly
            gen = torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed, step, state["epoch"]]).generate_state(1)[0]))
            order = tr_t[torch.randperm(len(tr_t), generator=gen).to(device)]
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                loss = torch.sqrt(torch.mean((net(xt[idx]) - yt[idx]) ** 2))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                tl = _rmse(net, xt, yt, tr_t[:len(va_t) * 2])
                vl = _rmse(net, xt, yt, va_t)
            state["epoch"] += 1
            state["history"].append((step, state["epoch"], tl, vl))
            if vl < state["best"]:
                state["best"], state["stale"] = vl, 0
                best = copy.deepcopy(net.state_dict())
            else:
                state["stale"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(step=step + 1, train=f"{tl:.4f}", val=f"{vl:.4f}",
                                best=f"{state['best']:.4f}")
            state["seconds"] = spent + time.perf_counter() - t0
            _save(ckpt_path, key, net, opt, best, state)
        log(f"{label}: step {step + 1} (lr {cfg.lr[step]:g}, batch {bs}) ended at epoch "
            f"{state['epoch']}, best validation RMSE {state['best']:.5f}")
        net.load_state_dict(best)
        state.update(step=step + 1, epoch=0, stale=0, best=float("inf"),
                     final=min(state.get("final", float("inf")), state["best"]))
        _save(ckpt_path, key, net, opt, best, state)
    if bar is not None:
        bar.close()
    net.load_state_dict(best)
    if init_sd is not None:
        # the schedule may start above the given network (a warm restart); keep whichever of
        # the two does better on the last step's validation draws
        va = torch.as_tensor(_split(len(xt), cfg.val_fraction, np.random.default_rng(
            [seed, len(cfg.lr) - 1]))[1], device=device)
        net.eval()
        with torch.no_grad():
            r_new = _rmse(net, xt, yt, va)
            net.load_state_dict(init_sd)
            r_init = _rmse(net, xt, yt, va)
        if r_init <= r_new:
            log(f"{label}: the given network stays (validation RMSE {r_init:.5f} ≤ {r_new:.5f})")
            best, state["final"] = init_sd, r_init
        else:
            log(f"{label}: validation RMSE {r_init:.5f} → {r_new:.5f}")
        net.load_state_dict(best)
    ws = [m.weight.detach().cpu().numpy().T.copy() for m in net if hasattr(m, "weight")]
    bs_ = [m.bias.detach().cpu().numpy().copy() for m in net if hasattr(m, "bias")]
    return ws, bs_, x_mean, x_std, y_mean, state, spent + time.perf_counter() - t0, net


def _init_networks(cfg: TrainConfig, ts, windows) -> list:
    """The networks of ``cfg.init``, one per window of this run, checked against its settings."""
    start = io.read(cfg.init)
    if start.param_names != ts.param_names or start.band_names != ts.band_names:
        raise cfgmod.ConfigError(f"{cfg.init} emulates other parameters or bands than this "
                                 "training set (with --bands) provides")
    nets = []
    for lo, hi in windows:
        match = [n for n in start.nets
                 if abs(n.zrange[0] - lo) < 1e-9 and abs(n.zrange[1] - hi) < 1e-9]
        if not match:
            raise cfgmod.ConfigError(f"{cfg.init} has no network for the window [{lo}, {hi}] "
                                     f"(its windows: {start.windows})")
        if (match[0].width, match[0].depth) != (cfg.width, cfg.depth):
            raise cfgmod.ConfigError(f"{cfg.init} has width {match[0].width} × depth "
                                     f"{match[0].depth}, not {cfg.width} × {cfg.depth}")
        nets.append(match[0])
    return nets


def _rmse(net, xt, yt, idx, chunk: int = 65536) -> float:
    torch = _torch()
    tot, n = 0.0, 0
    for s in range(0, len(idx), chunk):
        i = idx[s:s + chunk]
        tot += float(torch.sum((net(xt[i]) - yt[i]) ** 2))
        n += i.numel() * yt.shape[1]
    return (tot / max(n, 1)) ** 0.5


def _save(path: Path, key, net, opt, best, state) -> None:
    torch = _torch()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"version": CKPT_VERSION, "key": key, "net": net.state_dict(),
                "opt": opt.state_dict(), "best": best, "state": state}, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, log=print) -> Path:
    """Train (or resume) an emulator from ``cfg.trainset``; writes ``cfg.out``."""
    torch = _torch()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ts = load_trainset(cfg.trainset)
    if cfg.bands:
        unknown = [b for b in cfg.bands if b not in ts.band_names]
        if unknown:
            raise cfgmod.ConfigError(f"band(s) {unknown} are not in the training set "
                                     f"({ts.band_names})")
        cols = [ts.band_names.index(b) for b in cfg.bands]
        ts.phot, ts.band_names = ts.phot[:, cols], list(cfg.bands)
    good = np.flatnonzero(ts.ok)[:cfg.limit]
    theta, y = ts.theta[good], np.column_stack([ts.phot[good], ts.log_mfrac[good]])
    iz = ts.param_names.index("zred")
    z = theta[:, iz]
    zlo, zhi = float(z.min()), float(z.max())
    windows = [tuple(map(float, w)) for w in cfg.windows] if cfg.windows else [(zlo, zhi)]
    dist = json.loads(ts.attrs["distribution"])
    zspec = dist["priors"][iz]
    if windows[0][0] < zspec["lo"] - 1e-9 or windows[-1][1] > zspec["hi"] + 1e-9:
        raise cfgmod.ConfigError(f"windows {windows} reach outside the training set's redshift "
                                 f"range [{zspec['lo']}, {zspec['hi']}]")
    unknown = [p for p in cfg.log_inputs if p not in ts.param_names]
    if unknown:
        raise cfgmod.ConfigError(f"log_inputs {unknown} are not parameters ({ts.param_names})")
    log_cols = [ts.param_names.index(p) for p in cfg.log_inputs]
    log_offsets = [float(o) for o in cfg.log_offsets] or [0.0] * len(log_cols)
    if np.any(theta[:, log_cols] + np.asarray(log_offsets) <= 0):
        raise cfgmod.ConfigError(f"log_inputs {cfg.log_inputs} plus log_offsets {log_offsets} "
                                 "must be positive in the set")
    im = ts.param_names.index("logmass") if (cfg.mass_normalise and "logmass" in
                                              ts.param_names) else None
    if im is not None:
        from .kernel import scale_mass
        mass_ref = float(dist["priors"][im].get("hi", theta[:, im].max()))
        target = np.column_stack([scale_mass(y[:, :-1].astype(np.float64),
                                             mass_ref - theta[:, im]), y[:, -1]])
    else:
        target = y
    rng = np.random.default_rng(cfg.seed)
    train_idx, test_idx = _split(len(theta), cfg.test_fraction, rng)
    out = Path(cfg.out)
    start = _init_networks(cfg, ts, windows) if cfg.init else None
    nets = []
    for k, (lo, hi) in enumerate(windows):
        sel = train_idx[(z[train_idx] >= lo) & (z[train_idx] <= hi)]
        tsel = test_idx[(z[test_idx] >= lo) & (z[test_idx] <= hi)]
        if len(sel) < 100:
            raise cfgmod.ConfigError(f"window [{lo}, {hi}] holds only {len(sel)} training draws")
        label = f"window {k + 1}/{len(windows)} z∈[{lo:g},{hi:g}]"
        # what the network depends on; how it is run (threads, device, progress bar) may
        # change between a kill and the resume
        settings = {k2: v for k2, v in cfgmod.as_dict(cfg).items()
                    if k2 not in ("threads", "device", "progress")}
        key = json.dumps([settings, k, len(sel)], sort_keys=True)
        ckpt = out.with_name(f"{out.name}.net{k}.ckpt")
        xin = io.to_log(theta[sel].copy(), log_cols, log_offsets)
        keep = [j for j in range(xin.shape[1]) if j != im]
        init = None
        if start is not None:
            net0 = start[k]
            if (net0.attrs.get("n_train"), net0.attrs.get("n_test")) != (len(sel), len(tsel)):
                raise cfgmod.ConfigError(
                    f"{label}: {cfg.init} was trained on {net0.attrs.get('n_train')} draws and "
                    f"tested on {net0.attrs.get('n_test')}, this split has {len(sel)} and "
                    f"{len(tsel)}: continue training on the same training set with the same "
                    "seed, limit and test fraction, or the test draws would include draws "
                    "the network has already been trained on")
            if (net0.mass_ref is None) != (im is None) or (
                    im is not None and abs(net0.mass_ref - mass_ref) > 1e-9) or \
                    net0.log_inputs != (log_cols, log_offsets):
                raise cfgmod.ConfigError(f"{label}: {cfg.init} differs in mass normalisation "
                                         "or log inputs from these settings")
            w_first = np.delete(net0.weights[0], im, axis=0) if im is not None \
                else net0.weights[0]
            init = ([w_first] + list(net0.weights[1:]), net0.biases,
                    np.delete(net0.x_mean, im) if im is not None else net0.x_mean,
                    np.delete(net0.x_std, im) if im is not None else net0.x_std, net0.y_mean)
        ws, bs, xm, xs, ym, state, secs, _ = _fit(xin[:, keep], target[sel], cfg, cfg.seed + k,
                                                   ckpt, label, key, log, init=init)
        attrs = {"n_train": len(sel), "n_test": len(tsel), "train_seconds": secs,
                 "epochs": len(state["history"]), "best_val_rmse": state["final"],
                 "log_inputs": json.dumps(log_cols), "log_offsets": json.dumps(log_offsets),
                 "history_json": json.dumps(state["history"])}
        if start is not None:
            attrs.update(init_emulator=str(Path(cfg.init).resolve()),
                         init_epochs=int(net0.attrs.get("epochs", 0)) + int(
                             net0.attrs.get("init_epochs", 0)),
                         init_train_seconds=float(net0.attrs.get("train_seconds", 0.0)) + float(
                             net0.attrs.get("init_train_seconds", 0.0)))
        if im is not None:  # logmass back as an input with zero weights (the kernel scales)
            ws[0] = np.insert(ws[0], im, 0.0, axis=0)
            xm = np.insert(xm, im, xin[:, im].mean() if init is None else net0.x_mean[im])
            xs = np.insert(xs, im, max(float(xin[:, im].std()), 1e-12) if init is None
                           else net0.x_std[im])
            attrs["mass_ref"] = mass_ref
        th = theta[sel]
        net = io.Network(ws, bs, xm, xs, ym, th.min(axis=0), th.max(axis=0), (lo, hi),
                         attrs=attrs)
        nets.append(net)
    emu = io.EmulatorFile(nets, ts.param_names, ts.band_names, {
        "model": ts.attrs.get("model", ""), "sps": ts.attrs.get("sps", ""), "dl07": ts.dl07,
        "distribution": ts.attrs["distribution"], "prior": ts.attrs.get("prior", "{}"),
        "trainset": str(Path(cfg.trainset).resolve()),
        "trainset_hash": file_hash(Path(cfg.trainset) / "trainset.h5"
                                   if Path(cfg.trainset).is_dir() else cfg.trainset),
        "trainset_git_hash": ts.attrs.get("git_hash", ""),
        "torch_version": torch.__version__})
    # test-set residuals with the inference kernel itself (float32), per window
    from .kernel import Emulator
    for k, (lo, hi) in enumerate(windows):
        tsel = test_idx[(z[test_idx] >= lo) & (z[test_idx] <= hi)]
        single = io.EmulatorFile([nets[k]], emu.param_names, emu.band_names, {})
        pred = Emulator(single, xp="numpy").predict(theta[tsel])
        res = np.column_stack([pred.mags, pred.log_mfrac]) - y[tsel]
        nets[k].residuals = io.residual_stats(res)
        nets[k].residual_cov = np.cov(res, rowvar=False)
    io.write(out, emu, cfgmod.as_dict(cfg))
    for k in range(len(windows)):
        out.with_name(f"{out.name}.net{k}.ckpt").unlink(missing_ok=True)
    return out
