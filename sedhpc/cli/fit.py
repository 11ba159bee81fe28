"""``sedhpc fit / status / check / merge``: the catalog engine and its result directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import add_dl07_option


def register(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit a photometric catalog (one process, MPI ranks or a SLURM array)",
        description="Fit every galaxy of CATALOG with the emulator likelihood into DIR. One "
                    "process by default; `mpiexec -n K python -m sedhpc fit ...` or srun use all "
                    "ranks; --shard i/n (default from SLURM_ARRAY_TASK_ID/COUNT) takes one "
                    "slice for array jobs. Rerunning the same command resumes; other settings "
                    "on an existing DIR are refused (--new-run sets the old results aside). "
                    "Settings may come from --config FILE ([fit] table; [fit.columns] maps "
                    "catalog columns), SEDHPC_FIT_* variables and these options.")
    p.add_argument("catalog", nargs="?", help="catalog file (FITS, HDF5, Parquet, CSV/ECSV, "
                                               "ASCII)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--example", action="store_true",
                   help="fit the bundled example catalog (200 cosmoDC2 galaxies, LSST ugrizy, "
                        "true redshifts) with its column map")
    p.add_argument("--config", help="TOML file with a [fit] table")
    p.add_argument("--emulator", help="emulator file (default: the bundled one)")
    p.add_argument("--sps", choices=["embedded", "fsps"],
                   help="call this SPS directly instead of an emulator (validation reference; "
                        "minutes to hours per galaxy: use dynesty with a small nlive and MPI)")
    add_dl07_option(p)
    p.add_argument("--sampler", choices=["ensemble", "dynesty"])
    p.add_argument("--photoz", action="store_true", default=None,
                   help="redshift free (uniform prior over the emulator's range, or --zprior)")
    p.add_argument("--zprior", help="two-column (z, p) table of the redshift prior")
    p.add_argument("--zeropoints", help="zeropoint table of `sedhpc calibrate-zp` to apply")
    p.add_argument("--tract-column", help="catalog column of the zeropoints' tract labels")
    p.add_argument("--band", action="append", metavar="BAND=FLUX,ERR",
                   help="map a band to its flux and error columns (repeat per band)")
    p.add_argument("--units", help="flux units: maggies, nJy, uJy, mJy, Jy, ABmag or zp:<ZP>")
    p.add_argument("--id-column")
    p.add_argument("--z-column", help="redshift column (fixed redshift per galaxy)")
    p.add_argument("--seed", type=int)
    p.add_argument("--nsamples", type=int, help="posterior samples stored per galaxy (256)")
    p.add_argument("--floor", type=float, help="fractional error floor (0.05)")
    p.add_argument("--chunk", type=int, help="galaxies per chunk = checkpoint unit (32)")
    p.add_argument("--shard", help="i/n: fit the i-th of n slices (0-based)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"])
    p.add_argument("--threads", type=int,
                   help="BLAS threads per rank while fitting (default 1, or the "
                        "OMP/OPENBLAS_NUM_THREADS you set; run one rank per core instead)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="sampler option, e.g. nslots=128, max_steps=3000, nlive=400")
    p.add_argument("--new-run", action="store_true", default=None,
                   help="set results made with other settings aside and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("status", help="done / failed / pending galaxies of a fit directory, "
                                      "the pace of its latest attempt and the time to go")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("check", help="integrity of a fit directory: every galaxy exactly once, "
                                     "readable, consistent (exit 1 on a problem)")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("merge", help="one summary table (+ merged posteriors) of a fit directory")
    p.add_argument("dir")
    p.add_argument("--out", required=True, help="summary table (.fits, .parquet, .h5, .ecsv)")
    p.add_argument("--posteriors", help="also write all posterior samples to this HDF5 file")
    p.add_argument("--plot", help="also draw an overview PNG (stellar mass, SFR, widths, χ²)")
    p.add_argument("--partial", action="store_true", help="merge even if galaxies are pending")
    p.set_defaults(func=_cmd_merge)


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _cmd_fit(args) -> int:
    import tomllib

    from .. import config
    from ..scheduler import FitConfig, fit

    columns, options = {}, {}
    if args.example:
        data = Path(__file__).resolve().parents[1] / "data"
        if args.catalog:
            raise ValueError("give either CATALOG or --example")
        args.catalog = str(data / "dc2_example.ecsv")
        args.config = args.config or str(data / "dc2_example.toml")
    if not args.catalog:
        raise ValueError("give a CATALOG (or --example)")
    if not Path(args.catalog).is_file():
        raise ValueError(f"no catalog file at {args.catalog}")
    if args.config:  # sub-tables merge with the CLI's column map and options
        with open(args.config, "rb") as f:
            table = tomllib.load(f).get("fit", {})
        columns, options = dict(table.get("columns", {})), dict(table.get("sampler_options", {}))
    for spec in args.band or []:
        name, _, cols = spec.partition("=")
        parts = [c.strip() for c in cols.split(",")]
        if not name or len(parts) != 2 or not all(parts):
            raise ValueError(f"--band {spec!r}: expected BAND=FLUXCOLUMN,ERRORCOLUMN")
        columns.setdefault("bands", {})[name.strip()] = parts
    for key, val in (("units", args.units), ("id_column", args.id_column),
                     ("redshift_column", args.z_column), ("tract_column", args.tract_column)):
        if val is not None:
            columns[key] = val
    for spec in args.option or []:
        k, _, v = spec.partition("=")
        options[k.strip()] = _value(v.strip())
    cfg = config.load(FitConfig, "fit", args.config, {
        "catalog": args.catalog, "out": args.out, "emulator": args.emulator, "sps": args.sps,
        "dl07": args.dl07,
        "sampler": args.sampler, "photoz": args.photoz, "zprior": args.zprior,
        "zeropoints": args.zeropoints,
        "seed": args.seed, "nsamples": args.nsamples, "floor": args.floor, "chunk": args.chunk,
        "shard": args.shard, "device": args.device, "threads": args.threads,
        "new_run": args.new_run,
        "progress": False if args.no_progress else None,
        "columns": columns or None, "sampler_options": options or None})
    s = fit(cfg)
    if s:
        print(f"{s['out']}: {s['done']} galaxies fitted, {s['failed']} not fitted (flagged) "
              f"in {s['wall_s']:.1f} s on {s['ranks']} rank(s). Results: {s['out']}/shards "
              f"(one HDF5 file per rank). Read them with `sedhpc merge {s['out']} --out "
              f"{s['out']}/summary.fits --plot {s['out']}/summary.png` (a table of "
              "percentiles per galaxy and quantity, plus an overview plot), or in Python "
              f"with sedhpc.store.read('{s['out']}', samples=True).")
    return 0


def inventory(directory) -> dict:
    """What a fit directory holds: settings, valid chunks, and per array shard the chunks and
    galaxies done / not fitted / pending."""
    from .. import store
    from ..catalog import SKIP, Flags
    from ..scheduler import shard_chunks

    directory = Path(directory)
    meta = store.read_meta(directory)
    chunk, nrows, nshards = meta["config"]["chunk"], meta["nrows"], meta["identity"]["nshards"]
    sc = store.scan(directory)
    data = store.read(directory, sc)
    bad = (data["flags"] & (SKIP | Flags.FIT_FAILED)) != 0 if len(data["row"]) else []
    failed_rows = set(np.asarray(data["row"])[bad].tolist()) if len(data["row"]) else set()
    shards = []
    for i in range(nshards):
        mine = shard_chunks(nrows, chunk, i, nshards)
        rows_total = sum(min((c + 1) * chunk, nrows) - c * chunk for c in mine)
        done = [c for c in mine if c in sc.chunks]
        rows_done = sum(sc.chunks[c][2] for c in done)
        nfail = sum(1 for r in failed_rows if mine.start * chunk <= r < mine.stop * chunk)
        shards.append({"shard": i, "chunks": len(mine), "chunks_done": len(done),
                       "fitted": rows_done - nfail, "not_fitted": nfail,
                       "pending": rows_total - rows_done})
    return {"meta": meta, "scan": sc, "data": data, "shards": shards}


def _duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pace(directory, shard: int, pending: int, now=None) -> str | None:
    """The pace of the latest attempt on array shard ``shard`` from its ranks' logs: galaxies
    written and the time since the ranks were ready, the age of the last chunk written, and
    at that pace the time the ``pending`` galaxies need. None without logs. (Log times are the
    cluster's local time, as ``datetime.now()`` here.)"""
    import datetime
    import re

    logs: dict[int, list[Path]] = {}
    for path in Path(directory, "logs").glob(f"a*-s{shard:04d}-r*.log"):
        m = re.fullmatch(r"a(\d+)-s\d+-r\d+\.log", path.name)
        if m:
            logs.setdefault(int(m.group(1)), []).append(path)
    if not logs:
        return None
    attempt = max(logs)
    stamp = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (.*)")
    written = re.compile(r"chunk \d+: rows (\d+)-(\d+) written")
    ready, last, rows = [], None, 0
    for path in logs[attempt]:
        for line in path.read_text(errors="replace").splitlines():
            m = stamp.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() \
                + int(m.group(2)) / 1000
            if " ready after " in m.group(3):
                ready.append(t)
            w = written.match(m.group(3))
            if w:
                rows += int(w.group(2)) - int(w.group(1)) + 1
                last = t if last is None else max(last, t)
    now = datetime.datetime.now().timestamp() if now is None else now
    text = f"attempt {attempt} ({len(logs[attempt])} rank(s)): "
    if last is None:
        since = f"ready {_duration(now - min(ready))} ago, " if ready else ""
        return text + f"{since}no chunk written yet"
    span = last - min(ready) if ready else 0.0
    text += (f"{rows} galaxies in {_duration(span)}, the last chunk written "
             f"{_duration(now - last)} ago")
    if pending and span > 0:
        text += f"; at that pace the {pending} pending need ≈ {_duration(pending * span / rows)}"
    return text


def _cmd_status(args) -> int:
    inv = inventory(args.dir)
    tot = {k: sum(s[k] for s in inv["shards"]) for k in ("fitted", "not_fitted", "pending")}
    print(f"{args.dir}: {inv['meta']['nrows']} galaxies: {tot['fitted']} fitted, "
          f"{tot['not_fitted']} not fitted (flagged), {tot['pending']} pending; "
          f"{len(inv['scan'].shards)} shard file(s), {inv['scan'].attempts} attempt(s)")
    for s in inv["shards"]:
        print(f"  shard {s['shard']}: chunks {s['chunks_done']}/{s['chunks']}, fitted "
              f"{s['fitted']}, not fitted {s['not_fitted']}, pending {s['pending']}")
        line = pace(args.dir, s["shard"], s["pending"])
        if line:
            print(f"    {line}")
    for p in inv["scan"].problems:
        print(f"  problem: {p}")
    return 0


def check(directory) -> tuple[list[str], list[str]]:
    """(problems, notes) of a fit directory. No problems: every catalog row is stored exactly
    once in a chunk that reads back with a valid checksum, percentiles are finite and ordered
    for fitted galaxies and absent for the others. Notes: left-overs of killed runs (shards or
    chunk records that do not read back) whose chunks were redone."""
    from ..catalog import SKIP, Flags

    inv = inventory(directory)
    meta, data, sc = inv["meta"], inv["data"], inv["scan"]
    problems, notes = [], list(sc.problems)
    rows = np.asarray(data["row"])
    want = np.arange(meta["nrows"])
    if len(np.unique(rows)) != len(rows):
        problems.append(f"{len(rows) - len(np.unique(rows))} galaxies stored more than once")
    missing = np.setdiff1d(want, rows)
    if missing.size:
        problems.append(f"{missing.size} galaxies missing (first rows {missing[:5].tolist()}); "
                        "rerun the fit command to finish")
    extra = np.setdiff1d(rows, want)
    if extra.size:
        problems.append(f"rows {extra[:5].tolist()} are not in the catalog")
    if len(rows):
        fitted = (data["flags"] & (SKIP | Flags.FIT_FAILED)) == 0
        pc = data["percentiles"][fitted]
        if not np.all(np.isfinite(pc)):
            problems.append("fitted galaxies with non-finite percentiles")
        elif np.any(np.diff(pc, axis=-1) < -1e-6 * (1 + np.abs(pc[..., 1:]))):
            problems.append("percentiles out of order")
        if np.any(np.isfinite(data["percentiles"][~fitted])):
            problems.append("galaxies flagged as not fitted carry results")
    return problems, notes


def _cmd_check(args) -> int:
    problems, notes = check(args.dir)
    for p in notes:
        print(f"note: {p}")
    for p in problems:
        print(f"problem: {p}")
    print(f"{args.dir}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def _cmd_merge(args) -> int:
    import warnings

    import h5py
    from astropy.utils.exceptions import AstropyWarning

    from .. import store
    from ..provenance import provenance

    inv = inventory(args.dir)
    pending = sum(s["pending"] for s in inv["shards"])
    if pending and not args.partial:
        raise RuntimeError(f"{args.dir}: {pending} galaxies pending; finish the fit (rerun "
                           "it) or pass --partial")
    meta = inv["meta"]
    prov = provenance("fit-summary", store.FORMAT_VERSION, meta["config"])
    t = store.summary_table(inv["data"], prov)
    out = Path(args.out)
    kw = {"path": "summary", "serialize_meta": True} if out.suffix in (".h5", ".hdf5") else {}
    with warnings.catch_warnings():  # long FITS keywords become HIERARCH cards: fine
        warnings.simplefilter("ignore", AstropyWarning)
        t.write(out, overwrite=True, **kw)
    print(f"{out}: {len(t)} galaxies, {len(inv['data']['quantities'])} quantities × "
          f"percentiles {store.PERCENTILES}")
    if args.posteriors:
        data = store.read(args.dir, inv["scan"], samples=True)
        code, lo, step = store.quantise(np.nan_to_num(data["samples"]))
        with h5py.File(args.posteriors, "w") as f:
            f["row"], f["id"] = data["row"], data["id"].astype(object)
            f.create_dataset("samples", data=code, compression="gzip", shuffle=True,
                             chunks=(min(64, max(len(code), 1)), *code.shape[1:]))
            f["qlo"], f["qstep"], f["flags"] = lo, step, data["flags"]
            for k, v in prov.items():
                f.attrs[k] = v
            f.attrs["quantities"] = json.dumps(data["quantities"])
            f.attrs["note"] = "samples = qlo[:, None, :] + samples * qstep[:, None, :]"
        print(f"{args.posteriors}: posterior samples of {len(code)} galaxies")
    if args.plot:
        overview_plot(t, args.plot)
        print(f"{args.plot}: overview plot")
    return 0


def overview_plot(t, path) -> None:
    """Four panels of a summary table: stellar mass vs redshift, SFR vs stellar mass, the
    posterior 16–84 % half-width of log M*, and best-fit χ² per band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..catalog import SKIP, Flags

    ok = (np.asarray(t["flags"]) & (SKIP | Flags.FIT_FAILED)) == 0
    conv = ok & ((np.asarray(t["flags"]) & Flags.NOT_CONVERGED) == 0)
    t = t[ok]
    z = t["zred_p50"] if "zred_p50" in t.colnames else t["zred"]
    z = None if not np.isfinite(z).any() else z
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.8))
    m, lo, hi = t["logmstar_p50"], t["logmstar_p16"], t["logmstar_p84"]
    if z is not None:
        ax[0].errorbar(z, m, [m - lo, hi - m], fmt=".", ms=3, lw=0.5)
        ax[0].set_xlabel("redshift")
    else:
        ax[0].hist(m, bins=30)
        ax[0].set_xlabel("log M* median")
    ax[0].set_ylabel("log10 M* [Msun]")
    s = t["log_sfr100_p50"]
    ax[1].errorbar(m, s, [s - t["log_sfr100_p16"], t["log_sfr100_p84"] - s], fmt=".", ms=3,
                   lw=0.5)
    ax[1].set_xlabel("log10 M* [Msun]")
    ax[1].set_ylabel("log10 SFR(100 Myr) [Msun/yr]")
    ax[1].set_ylim(max(np.nanmin(s) - 0.5, -6), np.nanmax(s) + 0.5)
    ax[2].hist((hi - lo) / 2, bins=30)
    ax[2].set_xlabel("log M*: 16–84 % half-width [dex]")
    ax[3].hist(np.clip(t["chi2"] / np.maximum(t["nbands"], 1), 0, 10), bins=30)
    ax[3].set_xlabel("best-fit χ² / bands")
    fig.suptitle(f"{len(t)} galaxies fitted; {conv.sum()} passed the sampler's convergence "
                 "test (the others reached its step cap: flag NOT_CONVERGED, samples kept)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)

