"""``sedhpc calibrate-zp`` and ``sedhpc reweight``: the hierarchical layer (zeropoints per band
and tract; stored posteriors under new population priors)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate-zp", help="zeropoint offsets per band (and tract) from a calibration subset",
        description="Estimate multiplicative zeropoint corrections per band (per tract with "
                    "--tract-column) from the galaxies of CATALOG that have a redshift: the "
                    "offsets and every galaxy's parameters are solved jointly at the posterior "
                    "mode (redshift fixed), outliers clipped, and the mode's bias (the prior's "
                    "pull) measured on --bias-sims simulated calibration sets and removed "
                    "(sedhpc.zeropoints; --method marginal instead moves the offsets toward the "
                    "maximum of the marginal likelihood by sampling the galaxies' posteriors). "
                    "The "
                    "reference band is held at 0. Apply the result with `sedhpc fit "
                    "--zeropoints ZP.ecsv`.")
    p.add_argument("catalog")
    p.add_argument("--config", required=True, help="TOML with the catalog's [fit.columns] map")
    p.add_argument("--emulator", help="emulator file (default: the bundled one)")
    p.add_argument("--out", required=True, help="zeropoint table (.ecsv)")
    p.add_argument("--tract-column")
    p.add_argument("--reference-band", help="band held at 0 (default: the middle band)")
    p.add_argument("--iterations", type=int, default=60, help="most offset steps")
    p.add_argument("--clip", type=float, default=5.0,
                   help="leave out galaxy-bands this many σ from their model")
    p.add_argument("--bias-sims", type=int, default=4,
                   help="simulated calibration sets for the bias correction (default 4; each "
                        "costs as much as the estimate itself; 0: none)")
    p.add_argument("--method", choices=("marginal", "mode"), default="mode",
                   help="mode: the joint mode (default); marginal: the joint mode, then the "
                        "offsets moved toward the maximum of the marginal likelihood "
                        "(calibrators' parameters sampled out; slower)")
    p.add_argument("--sweeps", type=int, default=30,
                   help="stochastic-approximation sweeps of the marginal method")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser(
        "reweight", help="stored posteriors under a new population prior or the SPS itself "
                         "(no refit)",
        description="Importance-weight the stored posterior samples of DIR by new prior / old "
                    "prior (--prior; the old prior is read from the store) and/or by L_sps / "
                    "L_emu (--sps: the likelihood with the SPS's own fluxes over the fit's "
                    "emulator likelihood, one SPS call per sample; the emulator-vs-SPS test), "
                    "resample, and write a fit directory OUT with new summaries, the "
                    "re-weighting ESS per galaxy (in 'ess') and the LOW_ESS flag (2048) where it "
                    "is below --min-ess. Runs on all ranks under mpiexec/srun; an interrupted "
                    "run resumes when started again with the same arguments.")
    p.add_argument("dir")
    p.add_argument("--prior",
                   help="TOML file with a [prior] table: parameter = {type = ..., ...}")
    p.add_argument("--sps", choices=("embedded", "fsps"),
                   help="re-weight to the likelihood of this SPS called directly")
    p.add_argument("--catalog", help="the fit's catalog, if it moved (its hash is checked)")
    p.add_argument("--out", required=True)
    p.add_argument("--min-ess", type=float, default=50.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_cmd_reweight)


def _cmd_reweight(args) -> int:
    from ..reweight import read_prior, reweight

    if not args.prior and not args.sps:
        raise ValueError("give --prior (a new population prior) and/or --sps (the SPS "
                         "itself)")
    s = reweight(args.dir, read_prior(args.prior) if args.prior else None, args.out,
                 args.min_ess, args.seed, sps=args.sps, catalog=args.catalog,
                 progress=args.progress and bool(args.sps))
    if s:
        kept = f"; {s['kept']} chunks kept from before" if s["kept"] else ""
        print(f"{s['out']}: {s['galaxies']} galaxies re-weighted ({s['low_ess']} with ESS < "
              f"{args.min_ess:g}, flagged LOW_ESS) in {s['chunks']} chunks{kept}")
    return 0


def _cmd_calibrate(args) -> int:
    import sys
    import tomllib

    import numpy as np

    from .. import zeropoints
    from ..catalog import CatalogSpec, read_catalog
    from ..emulator import Emulator, default_path
    from ..model import get_model
    from ..provenance import provenance

    with open(args.config, "rb") as f:
        table = tomllib.load(f).get("fit", {})
    columns = dict(table.get("columns", {}))
    if args.tract_column:
        columns["tract_column"] = args.tract_column
    emu_path = args.emulator or table.get("emulator") or default_path()
    emu0 = Emulator(emu_path, xp="numpy")
    spec = CatalogSpec.from_dict(columns)
    if not spec.redshift_column:
        raise ValueError("calibration needs redshifts: map columns.redshift_column")
    cat = read_catalog(args.catalog, spec, known_bands=emu0.bands, zrange=emu0.zrange)
    use = cat.fit_rows()
    if use.size == 0:
        raise ValueError(f"{args.catalog}: no galaxy with a usable redshift and photometry")
    emu = Emulator(emu_path, bands=cat.bands)
    res = zeropoints.calibrate(
        get_model("embedded"), emu, cat.flux[use], cat.err[use], cat.zred[use], cat.mask[use],
        None if cat.tract is None else cat.tract[use], args.reference_band, args.iterations,
        floor=float(table.get("floor", 0.05)), clip=args.clip, bias_sims=args.bias_sims,
        method=args.method, sweeps=args.sweeps, seed=args.seed)
    config = {"catalog": args.catalog, "columns": columns, "emulator": str(emu_path),
              "iterations": args.iterations, "clip": args.clip, "bias_sims": args.bias_sims,
              "method": args.method, "sweeps": args.sweeps,
              "mc_spread_mag": float(res["mc_spread"]),
              "seed": args.seed, "floor": float(table.get("floor", 0.05)),
              "reference": res["reference"], "galaxies": int(use.size),
              "converged": bool(res["converged"])}
    zeropoints.write(res, args.out, provenance("zeropoints", 1, config))
    print(f"{args.out}: offsets for {len(res['tracts'])} tract(s) × {len(res['bands'])} bands "
          f"from {use.size} galaxies after {res['iterations']} steps"
          f"{'' if res['converged'] else ' (NOT converged: raise --iterations)'}; largest "
          f"|offset| {np.max(np.abs(res['offset'])):.3f} mag (reference {res['reference']})")
    warn = zeropoints.large_offset_warning(res)
    if warn:
        print(warn, file=sys.stderr)
    return 0
