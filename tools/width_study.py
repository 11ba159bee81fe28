"""Width study (Mathews et al. 2023, Section 3.1): train emulators of widths 32 … 512 on one
training set and fit σ ∝ N^α (median test-set σ over bands) and time ∝ N^β (kernel time per
evaluation at batch 4096, numpy, one thread). The paper finds α ≈ −1 and β ≈ 2 (N ≳ 100).

    python tools/width_study.py TRAINSET [--widths 32,64,128,256,512] [--limit 30000]
        [--bands 20] [--zmax 2.25] [--epochs 40,15]

Writes docs/width_study.png and the ``width`` section of docs/BENCHMARKS.md. All widths get the
same data, schedule and epoch caps, so wide networks are the least converged: α measured under
a fixed budget is an upper bound on the fully trained slope.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

import numpy as np  # noqa: E402
from report import write_section  # noqa: E402

from sedhpc.emulator import Emulator  # noqa: E402
from sedhpc.emulator.train import TrainConfig, train  # noqa: E402
from sedhpc.trainset import load  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def kernel_time(path, theta) -> float:
    emu = Emulator(path, xp="numpy")
    x = np.resize(theta, (4096, theta.shape[1]))
    emu.predict(x)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        emu.predict(x)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) / 4096


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trainset")
    ap.add_argument("--widths", default="32,64,128,256,512")
    ap.add_argument("--limit", type=int, default=30000)
    ap.add_argument("--bands", type=int, default=20, help="number of bands (spread over the set)")
    ap.add_argument("--zmax", type=float, default=2.25)
    ap.add_argument("--epochs", default="40,15", help="epoch caps of the two schedule steps")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ts = load(args.trainset)
    bands = ts.band_names[::max(1, len(ts.band_names) // args.bands)][:args.bands]
    zlo = float(ts.theta[:, ts.param_names.index("zred")].min())
    widths = [int(w) for w in args.widths.split(",")]
    caps = [int(e) for e in args.epochs.split(",")]
    rows, sig, tim, ntrain = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for w in widths:
            cfg = TrainConfig(trainset=args.trainset, out=f"{tmp}/w{w}.h5", width=w, depth=5,
                              lr=[1e-3, 1e-4], batch=[1024, 8192], patience=10,
                              max_epochs=max(caps), windows=[[zlo, args.zmax]], bands=bands,
                              limit=args.limit, threads=args.threads, progress=False)
            cfg.validate()
            t0 = time.perf_counter()
            path = train(cfg, log=lambda m: None)
            secs = time.perf_counter() - t0
            emu = Emulator(path, xp="numpy")
            s = float(np.median(emu.sigma()))
            t = kernel_time(path, ts.theta[:4096])
            sig.append(s)
            tim.append(t)
            net = emu.file.nets[0]
            ntrain = int(net.attrs["n_train"])
            rows.append(f"| {w} | {s:.4f} | {float(emu.sigma().max()):.4f} | {t * 1e6:.2f} | "
                        f"{int(net.attrs['epochs'])} | {secs:.0f} |")
            print(rows[-1], flush=True)
    lw = np.log(widths)
    alpha = np.polyfit(lw, np.log(sig), 1)[0]
    big = np.array(widths) >= 100
    beta = np.polyfit(lw[big], np.log(np.array(tim)[big]), 1)[0] if big.sum() >= 2 else np.nan
    _plot(widths, sig, tim, alpha, beta)
    body = (f"Training set `{args.trainset}`: of its first {args.limit} draws the {ntrain} "
            f"training draws with {zlo:.3g} ≤ z ≤ {args.zmax:g}, {len(bands)} bands; depth 5, schedule (1e-3, 1024) then (1e-4, 8192) "
            f"capped at {caps} epochs (patience 10), {args.threads} training threads. σ: median "
            "over bands of the test-set residual σ (10 % held out); time: numpy kernel, batch "
            "4096, OMP_NUM_THREADS as set for the run.\n\n| width | median σ [mag] | max σ [mag] | µs/eval | epochs "
            "| train s |\n|---|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\nFits: σ ∝ N^α with **α = {alpha:.2f}**; time ∝ N^β (N ≥ 128) with "
            f"**β = {beta:.2f}** (paper: α ≈ −1, β ≈ 2). Plot: `docs/width_study.png`. Under a "
            "fixed budget of data and epochs the widest networks are the least converged, and "
            "once σ is limited by the number of training draws it stops falling with width, "
            "so α here is an upper bound on the converged, data-rich slope.\n")
    write_section("width", "Emulator width study (issue 4)", body,
                  "python tools/width_study.py " + " ".join(sys.argv[1:]), modules=("numpy",
                                                                                  "torch"))


def _plot(widths, sig, tim, alpha, beta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    w = np.array(widths, float)
    axes[0].loglog(w, sig, "o-")
    axes[0].loglog(w, sig[0] * (w / w[0]) ** -1.0, "k:", label="∝ N⁻¹")
    axes[0].set(xlabel="width N", ylabel="median test σ [mag]", title=f"α = {alpha:.2f}")
    axes[1].loglog(w, np.array(tim) * 1e6, "o-")
    axes[1].loglog(w, tim[-1] * 1e6 * (w / w[-1]) ** 2.0, "k:", label="∝ N²")
    axes[1].set(xlabel="width N", ylabel="µs per evaluation", title=f"β = {beta:.2f}")
    for ax in axes:
        ax.set_xticks(w)
        ax.set_xticklabels([str(int(v)) for v in w])
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    DOCS.mkdir(exist_ok=True)
    fig.savefig(DOCS / "width_study.png", dpi=120)


if __name__ == "__main__":
    main()
