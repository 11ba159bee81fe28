"""Science validation of stored fits (``sedhpc report``): recovery of mock truths, coverage
and rank (PIT) histograms, the discrepancy statistic D between two runs of the same galaxies,
photo-z metrics, and per-galaxy plots.

- recovery per quantity: bias = median(posterior median − truth) and the 68th percentile of
  |posterior median − truth|;
- coverage: the fraction of truths inside the central 68 % / 95 % intervals of the stored
  samples, and the rank of the truth among them (uniform when the posteriors are calibrated);
- D (MODEL.md, seed eq. 10): |median_A − median_B| / sqrt(w_A² + w_B²), w the 16–84 %
  half-width; catastrophic when D > 3;
- photo-z: Δ = (z_phot − z_true)/(1 + z_true) with z_phot the posterior median (``photoz``,
  which also has the coverage of z_true) or the peak of p(z) (``photoz_peak``); σ_NMAD =
  1.4826 · median|Δ − median Δ|, bias = median Δ, outliers |Δ| > 0.15.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store
from .catalog import SKIP, Flags
from .provenance import json_text

#: quantities reported by default (stored name → truth-table column, transform of the truth)
QUANTITIES = {"logmass": ("logmass", None), "logzsol": ("logzsol", None),
              "dust2": ("dust2", None), "log_sfr100": ("sfr100", "log10"),
              "mwa_gyr": ("mwa_gyr", None), "logmstar": ("logmstar", None),
              "zred": ("zred", None)}


def load(directory) -> dict:
    """Fitted galaxies of a fit directory: ids, rows, samples (n, N, P), percentiles,
    quantity names, flags (galaxies not fitted are left out)."""
    store.read_meta(directory)
    d = store.read(directory, samples=True)
    if not len(d["row"]):
        raise ValueError(f"{directory} holds no fitted galaxies yet")
    ok = (d["flags"] & (SKIP | Flags.FIT_FAILED)) == 0
    out = {k: (v[ok] if isinstance(v, np.ndarray) else v) for k, v in d.items()}
    out["names"] = list(d["quantities"])
    out["stored"] = int(len(d["row"]))  # rows with a result (fitted or flagged)
    return out


def _truth_rows(run: dict, truth) -> np.ndarray:
    """Truth-table rows of ``run``'s galaxies (matched by id); every one must be there."""
    index = {str(i): k for k, i in enumerate(truth["id"])}
    missing = [i for i in run["id"] if i not in index]
    if missing:
        raise ValueError(f"{len(missing)} fitted galaxies are not in the truth table (e.g. "
                         f"{missing[:3]}); give the truth table of this catalog")
    return np.array([index[i] for i in run["id"]], int)


def truth_values(run: dict, truth, names) -> dict:
    """name → (n,) truths aligned with ``run``'s galaxies (by id), for names the table has."""
    rows = _truth_rows(run, truth)
    out = {}
    for name in names:
        col, how = QUANTITIES.get(name, (name, None))
        if col in truth.colnames:
            v = np.asarray(truth[col], float)[rows]
            out[name] = np.log10(np.maximum(v, 1e-30)) if how == "log10" else v
    return out


def recovery_and_coverage(run: dict, truth: dict) -> dict:
    """Per quantity: n, bias, p68 |Δ|, coverage at 68 / 95 % and the truth's ranks."""
    out = {}
    for name, t in truth.items():
        if name not in run["names"]:
            continue
        j = run["names"].index(name)
        s = run["samples"][:, :, j]
        med = np.median(s, axis=1)
        lo68, hi68, lo95, hi95 = np.percentile(s, [16, 84, 2.5, 97.5], axis=1)
        out[name] = {"n": int(len(t)), "bias": float(np.median(med - t)),
                     "p68_abs_error": float(np.percentile(np.abs(med - t), 68)),
                     "in68": float(np.mean((t >= lo68) & (t <= hi68))),
                     "in95": float(np.mean((t >= lo95) & (t <= hi95))),
                     "ranks": np.mean(s < t[:, None], axis=1).tolist()}
    return out


def d_statistic(a, b, axis: int = -1) -> np.ndarray:
    """D = |median_a − median_b| / √(w_a² + w_b²) (MODEL.md; w the 16–84 % half-width) between
    posterior samples ``a`` and ``b`` along ``axis`` (their sample counts may differ)."""
    qa = np.percentile(a, [16, 50, 84], axis=axis)
    qb = np.percentile(b, [16, 50, 84], axis=axis)
    wa, wb = (qa[2] - qa[0]) / 2, (qb[2] - qb[0]) / 2
    return np.abs(qa[1] - qb[1]) / np.maximum(np.hypot(wa, wb), 1e-12)


def discrepancy(a: dict, b: dict, names=None) -> dict:
    """D per galaxy and quantity between runs ``a`` and ``b`` (galaxies matched by row)."""
    common, ia, ib = np.intersect1d(a["row"], b["row"], return_indices=True)
    out = {"n": int(len(common))}
    for name in names or [n for n in a["names"] if n in b["names"]]:
        ja, jb = a["names"].index(name), b["names"].index(name)
        sa, sb = a["samples"][ia, :, ja], b["samples"][ib, :, jb]
        d = d_statistic(sa, sb, axis=1)
        qa = np.percentile(sa, [16, 50, 84], axis=1)
        dmed = np.abs(qa[1] - np.median(sb, axis=1)) / np.maximum((qa[2] - qa[0]) / 2, 1e-12)
        out[name] = {"median_D": float(np.median(d)), "catastrophic": float(np.mean(d > 3)),
                     "p68_dmedian_over_halfwidth": float(np.percentile(dmed, 68)),
                     "D": d.tolist()}
    return out


_OPS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater,
        "==": np.equal, "!=": np.not_equal}


def parse_where(text: str) -> tuple[str, str, float]:
    """``"COLUMN OP VALUE"`` (OP one of < <= > >= == !=) → (column, op, value)."""
    import re

    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*", text)
    if not m:
        raise ValueError(f"--where {text!r}: expected COLUMN OP VALUE with OP one of "
                         f"{' '.join(_OPS)}, e.g. 'snr_lsst_baseline_i > 10'")
    try:
        value = float(m.group(3))
    except ValueError:
        raise ValueError(f"--where {text!r}: {m.group(3)!r} is not a number") from None
    return m.group(1), m.group(2), value


def select(run: dict, truth, where) -> dict:
    """``run`` restricted to the galaxies whose truth-table row meets every condition of
    ``where`` (strings "COLUMN OP VALUE"; NaN never meets one)."""
    rows = _truth_rows(run, truth)
    keep = np.ones(len(rows), bool)
    for text in where:
        col, op, value = parse_where(text)
        if col not in truth.colnames:
            raise ValueError(f"--where {text!r}: the truth table has no column {col!r}")
        v = np.asarray(truth[col], float)[rows]
        keep &= _OPS[op](v, value)
    n = len(run["row"])
    return {k: (v[keep] if isinstance(v, np.ndarray) and len(v) == n else v)
            for k, v in run.items()}


def z_peak(z_samples, width: float = 0.05) -> np.ndarray:
    """Per galaxy the peak of p(z): the centre of the fullest bin of ``width`` in log(1 + z)
    (bins scale with the photo-z error), for the rows of ``z_samples`` (n, N). With a bimodal
    p(z) the median can fall between the modes; the peak cannot."""
    lz = np.log1p(np.asarray(z_samples, float))
    out = np.empty(lz.shape[0])
    for i, s in enumerate(lz):
        edges = np.arange(s.min(), s.max() + width, width)
        if edges.size < 2:
            out[i] = s[0]
            continue
        h, edges = np.histogram(s, bins=edges)
        k = int(np.argmax(h))
        inside = s[(s >= edges[k]) & (s <= edges[k + 1])]
        out[i] = np.median(inside)
    return np.expm1(out)


def photoz_metrics(z_phot, z_true, bins=None) -> dict:
    """σ_NMAD, bias and outlier fraction overall (and per bin of true redshift), over the
    galaxies with a finite true redshift."""
    z_phot, z_true = np.asarray(z_phot, float), np.asarray(z_true, float)
    known = np.isfinite(z_true)
    z_phot, z_true = z_phot[known], z_true[known]

    def m(zp, zt):
        dz = (zp - zt) / (1 + zt)
        return {"n": int(len(dz)), "sigma_nmad": float(1.4826 * np.median(np.abs(
            dz - np.median(dz)))) if len(dz) else float("nan"),
            "bias": float(np.median(dz)) if len(dz) else float("nan"),
            "outliers": float(np.mean(np.abs(dz) > 0.15)) if len(dz) else float("nan")}
    out = m(z_phot, z_true)
    if bins is not None:
        out["bins"] = [{"zlo": float(lo), "zhi": float(hi), **m(z_phot[sel], z_true[sel])}
                       for lo, hi in zip(bins[:-1], bins[1:])
                       for sel in [(z_true >= lo) & (z_true < hi)]]
    return out


def make_report(directory, out, truth_path=None, reference=None, galaxies=(),
                catalog_z=None, where=()) -> dict:
    """Write OUT/summary.json and PNGs for the fit ``directory`` (see the module docstring);
    ``reference``: a second fit directory of the same catalog for D statistics; ``galaxies``:
    catalog rows to draw per-galaxy plots for; ``where``: conditions on truth-table columns
    ("COLUMN OP VALUE", all must hold) that restrict the report to a subset, e.g. the
    detected galaxies of a mock ("obs_snr_lsst_baseline_i > 10")."""
    from astropy.table import Table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if where and not truth_path:
        raise ValueError("--where selects on truth-table columns: give --truth")
    for text in where:
        parse_where(text)
    run = load(directory)
    tt = Table.read(truth_path) if truth_path else None
    if where:
        run = select(run, tt, where)
    meta = store.read_meta(directory)
    pending = int(meta["nrows"]) - run["stored"]
    summary = {"fit": str(directory), "fitted": int(len(run["row"])),
               **({"pending": pending} if pending else {}),
               **({"where": list(where)} if where else {}),
               "not_converged": float(np.mean((run["flags"] & Flags.NOT_CONVERGED) != 0))
               if len(run["row"]) else float("nan"),
               "provenance": meta.get("provenance", {})}
    names = [n for n in QUANTITIES if n in run["names"]]
    truth = None
    if truth_path:
        truth = truth_values(run, tt, names)
        summary["recovery"] = recovery_and_coverage(run, truth)
        _rank_plot(summary["recovery"], out / "ranks.png")
    if "zred" in run["names"]:
        zs = run["samples"][:, :, run["names"].index("zred")]
        zp = np.median(zs, axis=1)
        zt = truth["zred"] if truth and "zred" in truth else None
        if zt is None and np.isfinite(run["zred"]).any():
            zt = run["zred"]  # the catalog's (e.g. spectroscopic) redshift
        if zt is not None:
            bins = [0, 0.5, 1, 1.5, 2, 3, 6]
            summary["photoz"] = photoz_metrics(zp, zt, bins=bins)
            summary["photoz_peak"] = photoz_metrics(z_peak(zs), zt, bins=bins)
            known = np.isfinite(zt)
            lo68, hi68, lo95, hi95 = np.percentile(zs[known], [16, 84, 2.5, 97.5], axis=1)
            zk = zt[known]
            summary["photoz"]["in68"] = float(np.mean((zk >= lo68) & (zk <= hi68)))
            summary["photoz"]["in95"] = float(np.mean((zk >= lo95) & (zk <= hi95)))
            _photoz_plot(zp, zt, out / "photoz.png")
    if reference:
        ref = load(reference)
        summary["discrepancy"] = discrepancy(run, ref, names)
        summary["reference"] = str(reference)
        _ecdf_plot(summary["discrepancy"], out / "discrepancy.png")
    for g in galaxies:
        _galaxy_plot(run, int(g), out / f"galaxy_{int(g)}.png", truth)
        _sed_plot(run, int(g), meta, out / f"sed_{int(g)}.png")
    (out / "summary.json").write_text(json_text(summary))
    return summary


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _rank_plot(rec: dict, path) -> None:
    plt = _plt()
    names = list(rec)
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        r, n = rec[name]["ranks"], rec[name]["n"]
        ax.hist(r, bins=10, range=(0, 1))
        sd = np.sqrt(n / 10 * 0.9)
        ax.axhspan(n / 10 - 2 * sd, n / 10 + 2 * sd, color="0.85", zorder=0)
        ax.set_title(f"{name}\n68%: {rec[name]['in68']:.2f} 95%: {rec[name]['in95']:.2f}",
                     fontsize=9)
        ax.set_xlabel("rank of truth")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ecdf_plot(disc: dict, path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, v in disc.items():
        if isinstance(v, dict):
            d = np.sort(v["D"])
            ax.step(d, np.arange(1, len(d) + 1) / len(d), label=f"{name} (med {v['median_D']:.2f})")
    ax.axvline(3, color="k", ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("D")
    ax.set_ylabel("ECDF")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _photoz_plot(zp, zt, path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(zt, zp, ".", ms=2)
    top = max(np.max(zt), np.max(zp)) * 1.05
    x = np.linspace(0, top, 2)
    ax.plot(x, x, "k-", lw=0.8)
    for s in (-1, 1):
        ax.plot(x, x + s * 0.15 * (1 + x), "k:", lw=0.8)
    ax.set_xlabel("z true")
    ax.set_ylabel("z phot (posterior median)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _galaxy_plot(run: dict, row: int, path, truth=None) -> None:
    """Corner plot of up to 5 quantities (+ p(z) when redshift was free) for catalog ``row``."""
    plt = _plt()
    k = int(np.flatnonzero(run["row"] == row)[0]) if row in run["row"] else None
    if k is None:
        raise ValueError(f"catalog row {row} was not fitted in this run")
    names = [n for n in ("logmass", "logzsol", "dust2", "log_sfr100", "mwa_gyr", "zred")
             if n in run["names"]]
    s = run["samples"][k][:, [run["names"].index(n) for n in names]]
    m = len(names)
    fig, axes = plt.subplots(m, m, figsize=(1.8 * m, 1.8 * m))
    for i in range(m):
        for j in range(m):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(s[:, i], bins=25, histtype="step", color="k")
            else:
                ax.plot(s[:, j], s[:, i], ".", ms=1, alpha=0.5)
            if truth is not None and names[j] in truth:
                ax.axvline(truth[names[j]][k], color="r", lw=0.8)
            if i == m - 1:
                ax.set_xlabel(names[j], fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{run['id'][k]} (row {row})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sed_plot(run: dict, row: int, meta: dict, path) -> None:
    """Observed fluxes (± errors) of catalog ``row`` against the posterior model fluxes
    (median and 16–84 % band of the emulator — or SPS — at the stored samples), by pivot
    wavelength."""
    from .catalog import CatalogSpec, read_catalog
    from .photometry import FilterSet, arsinh_to_maggies
    from .scheduler import fit_model, FitConfig
    from . import config as cfgmod

    rec = dict(meta["config"])
    if rec.get("sps"):  # a fit recorded before dl07 existed ran the grid of that time
        from .sps import recorded_dl07
        rec["dl07"] = recorded_dl07(rec["sps"], rec.get("dl07"))
    cfg = cfgmod.load(FitConfig, "fit", overrides=rec, env={})
    cat = read_catalog(cfg.catalog, CatalogSpec.from_dict(cfg.columns))
    if cfg.sps:
        from .sps.direct import DirectSPS
        emu = DirectSPS(cfg.sps, cat.bands, cfg.dl07)
    else:
        from .emulator import Emulator
        emu = Emulator(meta["emulator"], bands=cat.bands, xp="numpy")
    model = fit_model(cfg)
    k = int(np.flatnonzero(run["row"] == row)[0])
    s = run["samples"][k]
    theta = np.zeros((len(s), len(model.names)))
    for j, name in enumerate(model.names):
        theta[:, j] = s[:, run["names"].index(name)] if name in run["names"] else run["zred"][k]
    x = arsinh_to_maggies(np.asarray(emu.predict(theta).mags, float))
    lo, med, hi = np.percentile(x, [16, 50, 84], axis=0) * 3.631e12  # nJy
    wave = np.array([f.pivot for f in FilterSet(cat.bands).filters])
    i = int(np.flatnonzero(cat.rows == row)[0])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.fill_between(wave, lo, hi, color="C0", alpha=0.3, label="model 16–84 %")
    ax.plot(wave, med, "o-", color="C0", ms=3, label="model median")
    use = cat.mask[i]
    ax.errorbar(wave[use], cat.flux[i, use] * 3.631e12, cat.err[i, use] * 3.631e12, fmt="ks",
                ms=3, label="observed")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=max(np.nanmin(np.abs(med)), 1e-3))
    ax.set_xlabel("pivot wavelength [Å]")
    ax.set_ylabel("flux [nJy]")
    ax.set_title(f"{run['id'][k]} (row {row})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
