"""Emulator validation against a test set: per-band bias, σ, quantiles and tail fractions,
residual correlations, evaluation time; PNG plots and a JSON summary
(``sedhpc validate-emulator``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..provenance import json_text
from ..trainset import load as load_trainset
from . import io
from .kernel import Emulator

TAILS = (0.05, 0.1, 0.2)  # |residual| thresholds [mag] for the tail fractions


def time_per_evaluation(emu: Emulator, theta: np.ndarray, batch: int, repeats: int = 5) -> float:
    """Median seconds per evaluation at ``batch`` rows (single call when batch = 1)."""
    x = np.resize(theta, (batch, theta.shape[1]))
    emu.predict(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        emu.predict(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / batch


def set_residuals(emu: Emulator, ts):
    """Emulator − SPS on a finalized set ``ts`` (a :class:`~sedhpc.trainset.TrainingSet`):
    θ (n, d), band residuals (n, nbands) [mag] and log10 mfrac residuals (n,) of the good draws
    inside the emulator's ranges with finite outputs, and ``inside`` over all draws. Raises
    naming the problem when the set's parameters or bands do not fit the emulator."""
    if ts.param_names != emu.param_names:
        raise ValueError(f"set parameters {ts.param_names} differ from the emulator's "
                         f"{emu.param_names}")
    missing = [b for b in emu.bands if b not in ts.band_names]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"the set lacks {len(missing)} of the emulator's {len(emu.bands)} "
                         f"bands: {missing[:5]}{more}")
    if ts.dl07 != emu.file.dl07:
        raise ValueError(f"the set was made with the DL07 sequence dl07 = {ts.dl07!r}, the "
                         f"emulator emulates dl07 = {emu.file.dl07!r}: their mid/far-IR "
                         "photometry differ; use a set made with the emulator's")
    cols = [ts.band_names.index(b) for b in emu.bands]
    pred = emu.predict(ts.theta)
    mags, inside = np.asarray(pred.mags), np.asarray(pred.inside)
    phot = ts.phot[:, cols]
    use = (ts.ok.astype(bool) & inside & np.all(np.isfinite(mags), axis=1)
           & np.all(np.isfinite(phot), axis=1))
    return (ts.theta[use], mags[use] - phot[use],
            np.asarray(pred.log_mfrac)[use] - ts.log_mfrac[use], inside)


def validate(emulator, testset, out, floor: float = 0.05) -> dict:
    """Compare ``emulator`` (path) with the SPS photometry of ``testset`` (a finalized training
    set made with another seed); write ``summary.json``, ``precision.png`` and
    ``correlation.png`` to the directory ``out``. Returns the summary."""
    emu = Emulator(emulator, xp="numpy")
    ts = load_trainset(testset)
    theta, res, res_mf, inside = set_residuals(emu, ts)
    if len(res) < 10:
        raise ValueError(f"only {len(res)} test draws lie inside the emulator's ranges")
    stats = io.residual_stats(res)
    sigma = stats[:, -1]
    floor_mag = 2.5 * np.log10(1 + floor)
    per_band = {b: {"bias": float(stats[i, -2]), "sigma": float(sigma[i]),
                    "sigma68": float((stats[i, 5] - stats[i, 3]) / 2),
                    "median": float(stats[i, 4]),
                    "quantiles": dict(zip(io.RESIDUAL_COLUMNS[:9], map(float, stats[i, :9]))),
                    "tails": {f">{t:g}": float(np.mean(np.abs(res[:, i]) > t)) for t in TAILS}}
                for i, b in enumerate(emu.bands)}
    corr = np.corrcoef(res, rowvar=False)
    timing = {f"batch_{b}": time_per_evaluation(emu, theta, b) for b in (1, 64, 4096)}
    summary = {
        "emulator": str(emulator), "testset": str(testset), "n_test": len(res),
        "n_outside": int((~inside).sum()),
        "floor": floor, "floor_mag": floor_mag,
        "sigma_median": float(np.median(sigma)), "sigma_max": float(sigma.max()),
        "sigma68_median": float(np.median((stats[:, 5] - stats[:, 3]) / 2)),
        "worst_band": emu.bands[int(sigma.argmax())],
        "bands_below_floor": int((sigma < floor_mag).sum()), "n_bands": len(emu.bands),
        "log_mfrac": {"bias": float(res_mf.mean()), "sigma": float(res_mf.std())},
        "seconds_per_evaluation": timing, "per_band": per_band}
    if emu.has_sigma_model:  # the parameter-dependent σ (sedhpc.emulator.errors) on this set
        from .errors import judge

        summary["sigma_model"] = judge(emu.file, ts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json_text(summary))
    np.save(out / "correlation.npy", corr)
    _plots(out, emu.bands, stats, corr, floor_mag)
    return summary


def _plots(out: Path, bands, stats, corr, floor_mag) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(bands))
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(bands) + 3), 4))
    ax.fill_between(x, stats[:, 3], stats[:, 5], alpha=0.3, label="16–84 %")
    ax.plot(x, stats[:, -1], "o-", ms=3, label="σ")
    ax.plot(x, stats[:, -2], "s", ms=3, label="bias")
    ax.axhline(floor_mag, color="k", ls="--", label=f"error floor {floor_mag:.3f} mag")
    ax.axhline(-floor_mag, color="k", ls="--")
    ax.set_xticks(x)
    ax.set_xticklabels(bands, rotation=90, fontsize=6)
    ax.set_ylabel("emulator − SPS [arsinh mag]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "precision.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax, label="residual correlation")
    ax.set_xlabel("band index")
    ax.set_ylabel("band index")
    fig.tight_layout()
    fig.savefig(out / "correlation.png", dpi=120)
    plt.close(fig)
