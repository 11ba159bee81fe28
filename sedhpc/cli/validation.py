"""``sedhpc mock`` (mock catalogs from the SPS itself, with truth tables) and ``sedhpc report``
(recovery, coverage, discrepancy and photo-z metrics of a fit directory)."""

from __future__ import annotations

from . import add_dl07_option


def register(sub) -> None:
    _add_mock(sub)
    p = sub.add_parser(
        "report", help="recovery, coverage, D statistics and photo-z metrics of a fit",
        description="Validate the fits in DIR: with --truth (a mock's truth table) recovery "
                    "(bias, 68th percentile |median − truth|) and coverage with rank "
                    "histograms; with --reference DIR2 (the same catalog fitted another way) "
                    "the discrepancy statistic D per galaxy (ECDF plot, catastrophic rate); "
                    "photo-z metrics when redshift was free (σ_NMAD, bias, outliers); corner "
                    "plots of chosen galaxies. Writes OUT/summary.json and PNGs.")
    p.add_argument("dir")
    p.add_argument("--truth", help="truth table (e.g. CATALOG_truth.ecsv from `sedhpc mock`)")
    p.add_argument("--reference", help="a second fit directory of the same catalog")
    p.add_argument("--galaxy", type=int, action="append", default=[],
                   help="catalog row to draw a corner plot for (repeat)")
    p.add_argument("--where", action="append", default=[], metavar="'COLUMN OP VALUE'",
                   help="report only galaxies whose truth-table COLUMN meets the condition "
                        "(OP: < <= > >= == !=; repeat to combine), e.g. "
                        "--where 'obs_snr_lsst_baseline_i > 10' (observed S/N of a mock)")
    p.add_argument("--out", required=True, help="report directory")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from ..report import make_report

    try:
        s = make_report(args.dir, args.out, args.truth, args.reference, args.galaxy,
                        where=args.where)
    except ValueError as exc:
        print(f"sedhpc report: {exc}")
        return 2
    print(f"{args.out}/summary.json: {s['fitted']} galaxies"
          + (f" with {' and '.join(args.where)}" if args.where else "")
          + (f" (the run is not finished: {s['pending']} catalog rows pending; these numbers "
             "are for the rows done so far)" if s.get("pending") else ""))
    for name, v in s.get("recovery", {}).items():
        print(f"  {name}: bias {v['bias']:+.3f}, 68th pct |Δ| {v['p68_abs_error']:.3f}, "
              f"coverage 68 % {v['in68']:.2f}, 95 % {v['in95']:.2f}")
    for name, v in s.get("discrepancy", {}).items():
        if isinstance(v, dict):
            print(f"  D {name}: median {v['median_D']:.2f}, catastrophic "
                  f"{v['catastrophic']:.1%}")
    for key, what in (("photoz", "median"), ("photoz_peak", "peak of p(z)")):
        if key in s:
            p = s[key]
            print(f"  photo-z ({what}): σ_NMAD {p['sigma_nmad']:.4f}, bias {p['bias']:+.4f}, "
                  f"outliers {p['outliers']:.1%}"
                  + (f"; z inside 68 % {p['in68']:.2f}, 95 % {p['in95']:.2f}"
                     if "in68" in p else ""))
    return 0


def _add_mock(sub) -> None:
    p = sub.add_parser(
        "mock", help="mock catalog made with the SPS directly, with a truth table",
        description="Draw parameters (prior, training distribution or a table), compute their "
                    "photometry with the SPS (MPI-parallel and resumable like `generate`: run it "
                    "under mpiexec/srun), add noise, and write CATALOG (readable by `sedhpc "
                    "fit`), CATALOG_truth (parameters and derived quantities) and CATALOG_fit"
                    ".toml (its column map). Settings may also come from --config ([mock]).")
    p.add_argument("--config", help="TOML file with a [mock] table")
    p.add_argument("--model", choices=["embedded", "fsps"])
    add_dl07_option(p)
    p.add_argument("-n", type=int, help="number of galaxies (prior / training draws)")
    p.add_argument("--bands", help="comma-separated band specs")
    p.add_argument("--source", help="prior (default), training, or a parameter table")
    p.add_argument("--zrange", nargs=2, type=float, metavar=("ZMIN", "ZMAX"))
    p.add_argument("--seed", type=int)
    p.add_argument("--depth", help="5σ AB depth: one value or one per band, comma-separated "
                                   "(default 26)")
    p.add_argument("--snr", type=float, help="constant signal-to-noise instead of depths")
    p.add_argument("--floor", type=float, help="fractional error added in quadrature (0)")
    p.add_argument("--missing", type=float, help="fraction of band entries dropped (0)")
    p.add_argument("--nondetect", type=float, metavar="K",
                   help="report fluxes below K σ as missing (non-detections)")
    p.add_argument("--units", help="catalog flux units (nJy)")
    p.add_argument("--out", help="catalog file (.ecsv, .fits, .parquet, .csv, .hdf5)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_mock)


def _cmd_mock(args) -> int:
    from .. import config
    from ..mock import MockConfig, make_mock

    split = (lambda s: [v.strip() for v in s.split(",") if v.strip()])
    cfg = config.load(MockConfig, "mock", args.config, {
        "model": args.model, "dl07": args.dl07, "n": args.n,
        "bands": split(args.bands) if args.bands else None,
        "source": args.source, "zrange": args.zrange, "seed": args.seed,
        "depth": [float(v) for v in split(args.depth)] if args.depth else None,
        "snr": args.snr, "floor": args.floor, "missing": args.missing,
        "nondetect": args.nondetect, "units": args.units, "out": args.out,
        "progress": False if args.no_progress else None})
    s = make_mock(cfg)
    if s:
        print(f"{s['catalog']}: {s['n']} mock galaxies ({s['sps_failed']} SPS failures "
              f"dropped); truth: {s['truth']}; fit with `sedhpc fit {s['catalog']} --config "
              f"{s['config']} --out DIR`")
    return 0
