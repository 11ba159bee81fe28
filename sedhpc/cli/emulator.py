"""``sedhpc train``, ``sedhpc emulate`` and ``sedhpc validate-emulator``."""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train an emulator (PyTorch) from a training set",
        description="Train an MLP emulator (Mathews et al. 2023): normalised inputs, DEPTH GELU "
                    "layers of WIDTH, linear outputs (bands + log10 mfrac), RMSE loss, NAdam, a "
                    "(learning rate, batch size) schedule with early stopping. Resumes from "
                    "OUT.net<k>.ckpt after an interruption. --windows trains a stitched "
                    "emulator, one network per redshift window. Settings may also come from "
                    "--config FILE ([train] table) and SEDHPC_TRAIN_* variables.")
    p.add_argument("trainset", nargs="?", help="training-set directory or trainset.h5")
    p.add_argument("--config", help="TOML file with a [train] table")
    p.add_argument("--out", help="emulator file to write (.h5)")
    p.add_argument("--width", type=int, help="hidden-layer width (default 256)")
    p.add_argument("--depth", type=int, help="hidden layers (default 5)")
    p.add_argument("--lr", help="learning rates per step, comma-separated (1e-3,1e-4,1e-5)")
    p.add_argument("--batch", help="batch sizes per step, comma-separated (1024,8192,65536)")
    p.add_argument("--patience", type=int, help="epochs without improvement before a step ends")
    p.add_argument("--max-epochs", type=int, help="epoch cap per step (default 500)")
    p.add_argument("--windows", nargs="+", metavar="ZLO,ZHI",
                   help="redshift windows of a stitched emulator, e.g. 0,2.25 1.75,4.25")
    p.add_argument("--bands", help="emulate only these bands of the set (comma-separated)")
    p.add_argument("--limit", type=int, help="use only the first LIMIT good draws")
    p.add_argument("--seed", type=int, help="seed of splits, initialisation and shuffling")
    p.add_argument("--device", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    p.add_argument("--no-mass-normalise", action="store_true",
                   help="take logmass as an ordinary input instead of emulating a reference "
                        "mass and scaling the fluxes (the default)")
    p.add_argument("--log-inputs", metavar="P[:OFFSET],...",
                   help="parameters the network takes as log10(P + OFFSET) (default zred; "
                        "e.g. zred,dust2:1e-4; 'none' for all linear)")
    p.add_argument("--init", metavar="EMU.h5",
                   help="continue from the networks of this emulator (same training set, "
                        "seed, windows, width and depth) instead of random weights, e.g. a "
                        "further schedule on a bundled emulator")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("stitch", help="combine per-window emulators into a stitched one",
                       description="Combine emulators trained one per redshift window (e.g. "
                                   "each from its own training set with `sedhpc train SET "
                                   "--windows ZLO,ZHI`) into one stitched emulator with "
                                   "sin²/cos² weights in the overlaps.")
    p.add_argument("emulators", nargs="+", help="emulator files, one or more windows each")
    p.add_argument("--out", required=True, help="stitched emulator file to write")
    p.add_argument("--replace", action="store_true",
                   help="a window of an earlier file replaces the same window of a later one "
                        "(e.g. a retrained window into a stitched emulator); refit the σ(θ) "
                        "model afterwards (emulator-sigma)")
    p.set_defaults(func=_cmd_stitch)

    p = sub.add_parser("emulate", help="emulator predictions for a table of parameters",
                       description="Predict arsinh magnitudes, maggies and log10 mfrac for a "
                                   "table of parameters (columns named as in `sedhpc models`); "
                                   "rows outside the emulator's training ranges get "
                                   "inside = False.")
    p.add_argument("--emulator", help="emulator file (default: the bundled one)")
    p.add_argument("--theta", required=True, help="input table (any astropy-readable format)")
    p.add_argument("--bands", help="comma-separated subset of the emulator's bands")
    p.add_argument("--xp", choices=["numpy", "cupy"], help="array module (default: CuPy when a "
                                                          "GPU is usable)")
    p.add_argument("--out", required=True, help="output table")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_emulate)

    p = sub.add_parser("validate-emulator", help="test an emulator against an SPS test set",
                       description="Per-band bias, σ, quantiles, tail fractions and residual "
                                   "correlations of an emulator on a test set made with "
                                   "`sedhpc generate` (another seed), timing per evaluation; "
                                   "writes summary.json, precision.png, correlation.png.")
    p.add_argument("emulator", help="emulator file")
    p.add_argument("--testset", required=True, help="test-set directory or trainset.h5")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--floor", type=float, default=0.05, help="error floor (fraction of flux) "
                                                              "drawn in the plot (default 0.05)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "emulator-sigma", help="fit a parameter-dependent emulator-error model",
        description="Fit log σ² per band as a quadratic function of the inputs, per window, to "
                    "the emulator − SPS residuals of a calibration set (`sedhpc generate` "
                    "with its own seed, not the training or the test set), and write a copy "
                    "of the emulator with it; the likelihood then uses σ(θ) instead of one σ "
                    "per band (sedhpc.emulator.errors).")
    p.add_argument("emulator", help="emulator file")
    p.add_argument("--calset", required=True, help="calibration set (directory or trainset.h5)")
    p.add_argument("--out", required=True, help="emulator file to write (.h5)")
    p.add_argument("--ridge", type=float, default=1e-3, help="ridge penalty (default 1e-3)")
    p.add_argument("--testset", help="a held-out set to judge the model on (optional)")
    p.set_defaults(func=_cmd_sigma)


def _floats(text, kind=float):
    return None if text is None else [kind(v) for v in text.split(",") if v.strip()]


def _cmd_train(args) -> int:
    import numpy as np

    from .. import config
    from ..emulator.train import TrainConfig, train

    windows = None if args.windows is None else [_floats(w) for w in args.windows]
    log_inputs = log_offsets = None
    if args.log_inputs is not None:
        items = [] if args.log_inputs.strip().lower() == "none" else [
            i.split(":") for i in args.log_inputs.split(",") if i.strip()]
        try:
            log_inputs = [i[0].strip() for i in items]
            log_offsets = [float(i[1]) if len(i) > 1 else 0.0 for i in items]
        except ValueError:
            raise config.ConfigError(f"--log-inputs {args.log_inputs!r}: expected "
                                     "PARAM[:OFFSET],... (e.g. zred,dust2:1e-4)") from None
    cfg = config.load(TrainConfig, "train", args.config, {
        "log_inputs": log_inputs, "log_offsets": log_offsets,
        "trainset": args.trainset, "out": args.out, "width": args.width, "depth": args.depth,
        "lr": _floats(args.lr), "batch": _floats(args.batch, int), "patience": args.patience,
        "max_epochs": args.max_epochs, "windows": windows, "seed": args.seed,
        "bands": args.bands.split(",") if args.bands else None, "limit": args.limit,
        "device": args.device, "threads": args.threads, "init": args.init,
        "mass_normalise": False if args.no_mass_normalise else None,
        "progress": False if args.no_progress else None})
    t0 = time.perf_counter()
    out = train(cfg)
    from ..emulator import Emulator

    emu = Emulator(out, xp="numpy")
    sig = emu.sigma()
    print(f"wrote {out}: {len(emu.windows)} window(s), width {cfg.width} × {cfg.depth}, "
          f"test σ median {float(np.median(sig)):.4f} / max {sig.max():.4f} mag, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


def _cmd_stitch(args) -> int:
    from ..emulator import io

    emu = io.stitch(args.emulators, replace=args.replace)
    io.write(args.out, emu, {"command": "stitch", "emulators": args.emulators,
                             "replace": args.replace})
    print(f"wrote {args.out}: windows {emu.windows}")
    return 0


def _cmd_emulate(args) -> int:
    import numpy as np
    from astropy.table import Table

    from . import photometry_table
    from ..emulator import Emulator, default_path
    from ..photometry import arsinh_to_maggies
    from ..provenance import provenance

    path = args.emulator or default_path()
    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    emu = Emulator(path, bands=bands, xp=args.xp)
    tab = Table.read(args.theta)
    missing = [n for n in emu.param_names if n not in tab.colnames]
    if missing:
        raise ValueError(f"{args.theta} lacks parameter column(s) {missing} (the emulator needs "
                         f"{emu.param_names})")
    theta = np.column_stack([np.asarray(tab[n], float) for n in emu.param_names])
    bad = ~np.isfinite(theta)
    if bad.any():
        i, k = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{args.theta}: parameter {emu.param_names[k]!r} = {theta[i, k]} "
                         f"(row {i}) is not finite")
    t0 = time.perf_counter()
    pred = emu.predict(theta)
    secs = time.perf_counter() - t0
    asnp = (lambda a: a.get()) if hasattr(pred.mags, "get") else np.asarray
    mags, mfrac, inside = asnp(pred.mags), asnp(pred.log_mfrac), asnp(pred.inside)
    out = photometry_table(emu.param_names, theta, emu.bands, mags,
                           arsinh_to_maggies(mags.astype(float)))
    out["log_mfrac"] = mfrac
    out["inside"] = inside
    out.meta.update(provenance("emulate", 1, {"emulator": str(path), "theta": args.theta,
                                              "bands": emu.bands, "xp": emu.xp.__name__}))
    out.write(args.out, overwrite=args.overwrite)
    print(f"wrote {len(out)} predictions × {len(emu.bands)} bands to {args.out} "
          f"({secs / max(len(out), 1) * 1e6:.1f} µs per evaluation; "
          f"{int((~inside).sum())} outside the training ranges)")
    return 0


def _cmd_sigma(args) -> int:
    from ..emulator import errors, io

    if Path(args.out).resolve() == Path(args.emulator).resolve():
        raise SystemExit("--out must differ from the input emulator")
    if args.ridge < 0:
        raise SystemExit(f"--ridge must be ≥ 0; got {args.ridge}")
    new, summary = errors.fit(io.read(args.emulator), args.calset, ridge=args.ridge)
    if args.testset:
        summary["test"] = errors.judge(new, args.testset)
    io.write(args.out, new, {"command": "emulator-sigma", "emulator": args.emulator,
                             "calset": args.calset, "ridge": args.ridge})
    for w in summary["windows"]:
        print(f"window {w['zrange']}: {w['n']} draws, mean −log L per residual "
              f"{w['nll_per_band']:.3f} (σ per band) → {w['nll_model']:.3f} (σ(θ))")
    if "test" in summary:
        t = summary["test"]
        print(f"test set ({t['n']} draws): mean −log L {t['nll_per_band']:.3f} → "
              f"{t['nll_model']:.3f}; |r| < σ(θ) {t['within_1sigma']:.3f}, "
              f"< 2σ(θ) {t['within_2sigma']:.3f}")
    print(f"wrote {args.out}")
    return 0


def _cmd_validate(args) -> int:
    from ..emulator.validate import validate

    s = validate(args.emulator, args.testset, args.out, args.floor)
    print(json.dumps({k: s[k] for k in ("n_test", "sigma_median", "sigma68_median",
                                        "sigma_max", "worst_band",
                                        "bands_below_floor", "n_bands", "sigma_model")
                      if k in s}, indent=1))
    print(f"plots and summary.json in {args.out}")
    return 0
