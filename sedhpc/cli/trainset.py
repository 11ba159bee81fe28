"""``sedhpc generate``: training sets."""

from __future__ import annotations

from . import add_dl07_option


def register(sub) -> None:
    _add_generate(sub)


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
    add_dl07_option(p)
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
    from .. import config
    from ..trainset import GenerateConfig, finalize, generate, load_config

    if args.finalize:
        path = finalize(load_config(args.finalize))
        print(f"finalized {path}")
        return 0
    bands = [b.strip() for b in args.bands.split(",") if b.strip()] if args.bands else None
    cfg = config.load(GenerateConfig, "generate", args.config, {
        "model": args.model, "dl07": args.dl07, "bands": bands, "bands_file": args.bands_file,
        "n": args.n, "zrange": args.zrange, "seed": args.seed, "mix": args.mix, "chunk": args.chunk,
        "out": args.out, "progress": False if args.no_progress else None})
    summary = generate(cfg)
    if summary:
        print(f"{summary['path']}: {cfg.n} draws ({summary['draws']} computed now on "
              f"{summary['ranks']} rank(s) in {summary['wall_s']:.1f} s incl. start-up), "
              f"{summary['failed']} failed"
              + (f" {summary['failures']}" if summary["failed"] else ""))
    return 0
