"""The emulator file: HDF5, readable without PyTorch.

Layout (format version 2; version 1, without ``mass_ref``, is read too)::

    /                    attrs: provenance (sedhpc_kind='emulator', format, version, git hash,
                         config_json), kind ('single' | 'stitched'), param_names, band_names,
                         outputs (band names + 'log_mfrac'), model, sps, distribution, trainset
                         (path and content hash), windows (stitched: [[zlo, zhi], ...])
    /net<k>/W<i>, b<i>   weights (in, out) and biases of layer i, float32 (k = 0 … K−1)
    /net<k>/x_mean, x_std, y_mean      input normalisation, output de-normalisation (σ = 1)
    /net<k>/lo, hi       parameter ranges trained on (per parameter)
    /net<k>/residuals    (n_outputs, 11) test-set residual statistics [mag]: quantiles at
                         −4σ … +4σ (9 values incl. the median), mean, standard deviation
    /net<k>/residual_cov (n_outputs, n_outputs) test-set residual covariance
    /net<k>/sigma_coef   optional (n_bands, 1 + 2d): the parameter-dependent σ model of
                         :mod:`sedhpc.emulator.errors` (root attr sigma_model: how it was fitted)
    /net<k> attrs        zrange, width, depth, activation, n_train, n_test, train_seconds;
                         optional mass_ref: the network emulates the photometry of mass
                         formed 10^mass_ref Msun (its logmass weights are zero) and the kernel
                         scales the fluxes by 10^(logmass − mass_ref): photometry is exactly
                         proportional to the mass formed, so the network need not learn it;
                         log_inputs (JSON list of parameter columns the network takes as
                         log10(θ + offset)) and optional log_offsets (JSON list, zeros if absent)

A single emulator is a stitched one with one window.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..provenance import provenance

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SIGMAS = (-4, -3, -2, -1, 0, 1, 2, 3, 4)
RESIDUAL_COLUMNS = [f"q{s:+d}sigma" if s else "median" for s in SIGMAS] + ["mean", "std"]


@dataclass
class Network:
    """One MLP: weights[i] (in, out), biases[i] (out,), normalisation, ranges, statistics."""
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    zrange: tuple[float, float]
    residuals: np.ndarray | None = None
    residual_cov: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    sigma_coef: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def depth(self) -> int:
        return len(self.weights) - 1

    @property
    def log_inputs(self) -> tuple[list[int], list[float]]:
        """Columns the network takes as log10(θ + offset), and their offsets."""
        cols = json.loads(str(self.attrs.get("log_inputs", "[]")))
        offsets = json.loads(str(self.attrs.get("log_offsets", "null"))) or [0.0] * len(cols)
        return cols, [float(o) for o in offsets]

    @property
    def mass_ref(self) -> float | None:
        """log10 of the mass formed the network emulates (None: mass is an ordinary input)."""
        v = self.attrs.get("mass_ref")
        return None if v is None else float(v)


@dataclass
class EmulatorFile:
    """Everything in an emulator file."""
    nets: list[Network]
    param_names: list[str]
    band_names: list[str]
    attrs: dict

    @property
    def outputs(self) -> list[str]:
        return self.band_names + ["log_mfrac"]

    @property
    def windows(self) -> list[tuple[float, float]]:
        return [n.zrange for n in self.nets]

    @property
    def dl07(self) -> str:
        """The DL07 qpah sequence of the SPS it emulates (sedhpc.sps.embedded)."""
        from ..sps import recorded_dl07

        return recorded_dl07(str(self.attrs.get("sps") or "embedded"), self.attrs.get("dl07"))


def to_log(x, cols, offsets, xp=np):
    """``x`` with columns ``cols`` replaced, in place, by log10(x + offset) (``offsets``: one
    per column, or None for 0), floored at 1e-6 before the log: the networks' input transform
    (:attr:`Network.log_inputs`)."""
    if cols:
        v = x[:, cols] if offsets is None else x[:, cols] + xp.asarray(offsets, dtype=x.dtype)
        x[:, cols] = xp.log10(xp.maximum(v, 1e-6))
    return x


def residual_stats(res: np.ndarray) -> np.ndarray:
    """The 11 statistics per column of residuals ``res`` (n, k): (k, 11)."""
    from scipy.special import ndtr

    levels = ndtr(np.array(SIGMAS, float)) * 100
    q = np.percentile(res, levels, axis=0).T
    return np.column_stack([q, res.mean(axis=0), res.std(axis=0)])


def write(path, emu: EmulatorFile, config: dict | None = None) -> Path:
    """Write ``emu`` to ``path`` (temporary name, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in provenance("emulator", FORMAT_VERSION, config).items():
            f.attrs[k] = v
        f.attrs["kind"] = "single" if len(emu.nets) == 1 else "stitched"
        f.attrs["param_names"] = json.dumps(emu.param_names)
        f.attrs["band_names"] = json.dumps(emu.band_names)
        f.attrs["outputs"] = json.dumps(emu.outputs)
        f.attrs["windows"] = json.dumps([list(map(float, w)) for w in emu.windows])
        f.attrs["residual_columns"] = json.dumps(RESIDUAL_COLUMNS)
        for k, v in emu.attrs.items():
            if k not in f.attrs:
                f.attrs[k] = str(v) if isinstance(v, str) else v if isinstance(v, (int, float)) else json.dumps(v)
        for k, net in enumerate(emu.nets):
            g = f.create_group(f"net{k}")
            for i, (w, b) in enumerate(zip(net.weights, net.biases)):
                g[f"W{i}"] = np.asarray(w, np.float32)
                g[f"b{i}"] = np.asarray(b, np.float32)
            for name in ("x_mean", "x_std", "y_mean", "lo", "hi"):
                g[name] = np.asarray(getattr(net, name), np.float64)
            if net.residuals is not None:
                g["residuals"] = net.residuals
                g["residual_cov"] = net.residual_cov
            if net.sigma_coef is not None:
                g["sigma_coef"] = np.asarray(net.sigma_coef, np.float64)
            g.attrs["zrange"] = np.asarray(net.zrange, float)
            g.attrs["width"], g.attrs["depth"] = net.width, net.depth
            g.attrs["activation"] = "gelu_tanh"
            for a, v in net.attrs.items():
                g.attrs[a] = v
    tmp.replace(path)
    return path


def read(path) -> EmulatorFile:
    """Read an emulator file (raises naming the problem for a file that is not one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no emulator file at {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not a sedhpc emulator file (not HDF5)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("sedhpc_kind") != "emulator":
            raise ValueError(f"{path} is not a sedhpc emulator file "
                             f"(kind {f.attrs.get('sedhpc_kind')!r})")
        version = int(f.attrs["sedhpc_format_version"])
        if version not in READABLE_VERSIONS:
            raise ValueError(f"{path}: emulator format {version}; this sedhpc reads "
                             f"{READABLE_VERSIONS} (a newer sedhpc wrote it: upgrade)")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        nets = []
        k = 0
        while f"net{k}" in f:
            g = f[f"net{k}"]
            depth = int(g.attrs["depth"])
            nets.append(Network(
                [g[f"W{i}"][()] for i in range(depth + 1)],
                [g[f"b{i}"][()] for i in range(depth + 1)],
                g["x_mean"][()], g["x_std"][()], g["y_mean"][()], g["lo"][()], g["hi"][()],
                tuple(float(v) for v in g.attrs["zrange"]),
                g["residuals"][()] if "residuals" in g else None,
                g["residual_cov"][()] if "residual_cov" in g else None,
                {a: g.attrs[a] for a in g.attrs if a not in ("zrange", "width", "depth")},
                g["sigma_coef"][()] if "sigma_coef" in g else None))
            k += 1
    return EmulatorFile(nets, json.loads(attrs["param_names"]), json.loads(attrs["band_names"]),
                        attrs)


def stitch(files, check=True, replace=False) -> EmulatorFile:
    """Combine emulators trained one per redshift window (e.g. each from its own training set)
    into one stitched emulator. They must share parameters and bands; windows are sorted and
    must overlap or touch, with at most two overlapping at any redshift. With ``replace``, a
    window given by an earlier file replaces the same window of a later one (a retrained
    window into a stitched emulator). A σ(θ) model is kept only if every window has one."""
    parts = [f if isinstance(f, EmulatorFile) else read(f) for f in files]
    if not parts:
        raise ValueError("nothing to stitch")
    first = parts[0]
    for p, name in zip(parts[1:], list(files)[1:]):
        if p.param_names != first.param_names or p.band_names != first.band_names:
            raise ValueError(f"{name}: parameters or bands differ from {list(files)[0]}")
        if (p.attrs.get("sps"), p.dl07) != (first.attrs.get("sps"), first.dl07):
            what = [f"{f} emulates SPS {e.attrs.get('sps') or 'embedded'!r} with dl07 = "
                    f"{e.dl07!r}" for f, e in ((list(files)[0], first), (name, p))]
            raise ValueError("; ".join(what) + ": windows of one emulator must share the SPS")
    nets = [n for p in parts for n in p.nets]
    if replace:
        kept = []
        for n in nets:
            if not any(np.allclose(n.zrange, m.zrange, rtol=0, atol=1e-9) for m in kept):
                kept.append(n)
        nets = kept
    nets = sorted(nets, key=lambda n: n.zrange[0])
    if any(n.sigma_coef is None for n in nets):
        nets = [dataclasses.replace(n, sigma_coef=None) for n in nets]
    w = [n.zrange for n in nets]
    for k in range(len(w) - 1):
        if not w[k][0] < w[k + 1][0] <= w[k][1] < w[k + 1][1]:
            raise ValueError(f"windows {w[k]} and {w[k + 1]} must overlap or touch, in order")
        if k + 2 < len(w) and w[k + 2][0] < w[k][1]:
            raise ValueError(f"windows {w[k]} and {w[k + 2]} overlap: at most two may")
    attrs = {k: v for k, v in first.attrs.items()
             if k in ("model", "sps", "dl07", "distribution", "prior", "torch_version")}
    if all(n.sigma_coef is not None for n in nets) and "sigma_model" in first.attrs:
        attrs["sigma_model"] = first.attrs["sigma_model"]
    for key in ("trainset", "trainset_hash", "trainset_git_hash", "git_hash"):
        values = sorted({str(p.attrs.get(key, "")) for p in parts})
        attrs[key if key != "git_hash" else "parts_git_hash"] = (
            values[0] if len(values) == 1 else json.dumps(values))
    attrs["dl07"] = first.dl07
    attrs["stitched_from"] = json.dumps([str(f) for f in files])
    return EmulatorFile(nets, first.param_names, first.band_names, attrs)
