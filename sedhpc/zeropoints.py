"""Photometric zeropoint calibration (seed 003, step 2): one multiplicative offset per band
(and per tract) from a calibration subset with known redshifts.

Method — alternate, to convergence:
1. fit every calibration galaxy (redshift fixed) with the current offsets applied to its
   fluxes and errors;
2. per galaxy and band, the residual δ = 2.5 log10(x_obs / x_model) [mag] of the corrected
   flux against the posterior-median model flux (bands with S/N ≥ ``min_snr``), i.e. the
   further correction that galaxy asks for;
3. per (tract, band) the offset moves by the median δ; its uncertainty is 1.2533 σ_MAD / √n.
The overall scale is degenerate with stellar mass, so the offsets of one reference band (the
middle band by default) are held at 0 in every tract.

Why iterate rather than sample a joint hierarchical posterior: the per-galaxy fits stay the
engine's independent, batched fits, each iteration is one batch call over the subset, and the
median is robust to the outliers (AGN, blends, bad photometry) a calibration subset contains.
Offsets absorbed by galaxy parameters are recovered over the iterations because they are common
to all galaxies of a tract while parameters are not.

Output table (ECSV): ``tract``, ``band``, ``offset_mag`` (the correction: corrected flux =
flux × 10^(−0.4 offset_mag)), ``error_mag``, ``n``; read by ``sedhpc fit --zeropoints``.
"""

from __future__ import annotations

import numpy as np

from .photometry import A, B, U0


def factors(offset_mag) -> np.ndarray:
    """Multiplicative flux corrections of offsets in magnitudes."""
    return 10.0 ** (-0.4 * np.asarray(offset_mag, float))


def calibrate(model, emulator, flux, err, zred, mask, tract=None, reference: str | None = None,
              iterations: int = 8, tol_mag: float = 1e-3, min_snr: float = 5.0, seed: int = 0,
              floor: float = 0.05, log=print, **sampler_options) -> dict:
    """Offsets (ntract, nbands) [mag] with errors, for galaxies ``flux``, ``err`` (G, nbands)
    maggies in the emulator's bands, ``zred`` (G,), ``mask`` (G, nbands); ``tract`` (G,) labels
    (default: one tract). Returns {tracts, bands, offset, error, n, iterations}."""
    from .samplers import fit_batch
    from .samplers.ensemble import _host

    G, nb = flux.shape
    tract = np.zeros(G, int) if tract is None else np.asarray(tract)
    labels, t_idx = np.unique(tract, return_inverse=True)
    ref = emulator.bands.index(reference) if reference else nb // 2
    offset = np.zeros((len(labels), nb))
    error, count = np.zeros_like(offset), np.zeros(offset.shape, int)
    for it in range(1, iterations + 1):
        f = factors(offset)[t_idx]
        fits = fit_batch(model, emulator, flux * f, err * f, zred=zred, mask=mask, floor=floor,
                         seed=seed, **sampler_options)
        xm = np.full((G, nb), np.nan)
        for r in fits:
            if r.error is None:
                u = _host(emulator.predict(r.samples).mags).astype(float)
                xm[r.galaxy] = np.median(2 * B * np.sinh((U0 - u) / A), axis=0)
        xo = flux * f
        good = mask & (xo > min_snr * err * f) & (xm > 0) & np.isfinite(xm)
        # the correction that would bring each observed flux onto the model
        delta = np.where(good, 2.5 * np.log10(np.where(good, xo / xm, 1.0)), np.nan)
        step = np.zeros_like(offset)
        for t in range(len(labels)):
            d = delta[t_idx == t]
            count[t] = np.sum(np.isfinite(d), axis=0)
            med = np.nanmedian(d, axis=0)
            mad = np.nanmedian(np.abs(d - med), axis=0) * 1.4826
            step[t] = np.where(count[t] > 0, med, 0.0)
            error[t] = 1.2533 * mad / np.sqrt(np.maximum(count[t], 1))
        step -= step[:, ref:ref + 1]  # the reference band anchors the scale
        offset += step
        log(f"iteration {it}: largest change {np.max(np.abs(step)):.4f} mag")
        if np.max(np.abs(step)) < tol_mag:
            break
    error[:, ref] = 0.0
    return {"tracts": labels, "bands": list(emulator.bands), "offset": offset, "error": error,
            "n": count, "iterations": it, "reference": emulator.bands[ref]}


def write(result: dict, path, meta: dict | None = None) -> None:
    from astropy.table import Table

    rows = [(str(t), b, result["offset"][i, j], result["error"][i, j], int(result["n"][i, j]))
            for i, t in enumerate(result["tracts"]) for j, b in enumerate(result["bands"])]
    t = Table(rows=rows, names=("tract", "band", "offset_mag", "error_mag", "n"))
    t.meta.update(meta or {})
    t.meta["reference_band"] = result["reference"]
    t.write(path, overwrite=True)


def read(path, bands) -> dict:
    """tract (str) → (nbands,) multiplicative factors for ``bands`` (bands missing from the
    table get 1). A table without tracts (one 'tract' value) applies to every galaxy."""
    from astropy.table import Table

    t = Table.read(path)
    missing = {"band", "offset_mag"} - set(t.colnames)
    if missing:
        raise ValueError(f"{path}: zeropoint table needs columns band, offset_mag (and tract); "
                         f"missing {sorted(missing)}")
    tracts = [str(v) for v in t["tract"]] if "tract" in t.colnames else ["0"] * len(t)
    out: dict = {}
    for tr, b, off in zip(tracts, t["band"], t["offset_mag"]):
        f = out.setdefault(tr, np.ones(len(bands)))
        if str(b) in bands:
            f[bands.index(str(b))] = factors(off)
    return out
