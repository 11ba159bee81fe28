"""``sedhpc mock``: mock catalogs made with the SPS itself (not an emulator), for validation.

Parameters come from the model's prior, its training distribution, or a table. Photometry is
computed by :func:`sedhpc.trainset.generate` (so it is MPI-parallel and resumable: the SPS
work lives in ``<out>.sps/``), then rank 0 adds noise and writes three files:

- ``<out>`` — the catalog: ``id``, ``redshift`` and per band ``f_<band>`` / ``e_<band>`` in
  ``units`` (nJy by default); a missing band or a non-detection is NaN;
- ``<out stem>_truth.<ext>`` — all parameters, log10 mfrac, log10 M*, SFR over 100 Myr
  [Msun/yr], mass-weighted age [Gyr], the noiseless fluxes ``true_<band>`` (maggies) and
  their S/N ``snr_<band>`` (noiseless flux / error; NaN where the band is missing), and
  ``obs_snr_<band>``, the catalog flux / error (select subsets on this one: a cut on the data
  keeps Bayesian coverage nominal, a cut on the noiseless S/N is a cut on θ and need not);
- ``<out stem>_fit.toml`` — the ``[fit.columns]`` map for ``sedhpc fit --config``.

Noise model, per band: σ² = (5σ depth in maggies / 5)² + (floor · x)², or σ = x / SNR with a
constant ``snr``; a fraction ``missing`` of the (galaxy, band) entries is dropped at random; with
``nondetect = k`` a measured flux below k σ is reported as missing (a non-detection). The noise
draws come from ``SeedSequence(seed, spawn_key=(2**31,))``, apart from the parameter draws.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import config as cfgmod
from .photometry import from_maggies
from .provenance import provenance

FORMAT_VERSION = 1


@dataclasses.dataclass
class MockConfig:
    """Settings of ``sedhpc mock`` (also the ``[mock]`` table of a TOML file)."""
    out: str
    n: int = 0
    bands: list[str] = dataclasses.field(default_factory=list)
    model: str = "embedded"
    dl07: str | None = None  # DL07 qpah sequence (GenerateConfig.dl07)
    source: str = "prior"  # "prior", "training" or a parameter table
    zrange: list[float] | None = None
    seed: int = 0
    depth: list[float] = dataclasses.field(default_factory=lambda: [26.0])  # 5σ AB per band
    snr: float | None = None
    floor: float = 0.0
    missing: float = 0.0
    nondetect: float | None = None
    units: str = "nJy"
    chunk: int = 64
    progress: bool = True

    def validate(self) -> None:
        if not self.bands:
            raise cfgmod.ConfigError("give the mock's bands")
        if self.source in ("prior", "training") and self.n <= 0:
            raise cfgmod.ConfigError(f"n must be positive; got {self.n}")
        if self.source not in ("prior", "training") and not Path(self.source).exists():
            raise cfgmod.ConfigError(f"source must be 'prior', 'training' or an existing "
                                     f"parameter table; got {self.source!r}")
        if len(self.depth) not in (1, len(self.bands)):
            raise cfgmod.ConfigError(f"give one depth or one per band ({len(self.bands)}); got "
                                     f"{len(self.depth)}")
        if self.snr is not None and self.snr <= 0:
            raise cfgmod.ConfigError(f"snr must be positive; got {self.snr}")
        if not 0 <= self.missing < 1 or self.floor < 0:
            raise cfgmod.ConfigError("need 0 ≤ missing < 1 and floor ≥ 0")
        from_maggies(1.0, 1.0, self.units)  # refuses an unknown unit
        from .sps import resolve_dl07

        try:
            self.dl07 = resolve_dl07(self.model, self.dl07)
        except ValueError as err:
            raise cfgmod.ConfigError(str(err)) from None


def add_noise(x, rng, depth=(26.0,), snr=None, floor=0.0, missing=0.0, nondetect=None):
    """Noisy fluxes and errors (maggies) for noiseless fluxes ``x`` (n, nbands) [maggies];
    NaN where a band is missing or not detected. See the module docstring for the model."""
    x = np.asarray(x, float)
    if snr is not None:
        err = np.abs(x) / snr
    else:
        sig = 10.0 ** (-0.4 * np.broadcast_to(np.asarray(depth, float), x.shape[1:])) / 5.0
        err = np.sqrt(sig ** 2 + (floor * x) ** 2)
    flux = x + err * rng.standard_normal(x.shape)
    drop = rng.random(x.shape) < missing
    if nondetect is not None:
        drop |= flux < nondetect * err
    return np.where(drop, np.nan, flux), np.where(drop, np.nan, err)


def _photometry(cfg: MockConfig, comm):
    """(theta, maggies, log_mfrac, band names) on rank 0 (None elsewhere)."""
    from .trainset import GenerateConfig, generate
    from .trainset.store import load

    if cfg.source in ("prior", "training"):
        work = Path(str(cfg.out) + ".sps")
        gcfg = cfgmod.load(GenerateConfig, "generate", overrides=dict(
            out=str(work), n=cfg.n, bands=list(cfg.bands), model=cfg.model, dl07=cfg.dl07,
            zrange=cfg.zrange,
            seed=cfg.seed, mix=1.0 if cfg.source == "prior" else 0.5, chunk=cfg.chunk,
            progress=cfg.progress), env={})
        summary = generate(gcfg, comm=comm)
        if not summary:
            return None
        ts = load(summary["path"])
        ok = ts.ok.astype(bool)
        from .photometry import arsinh_to_maggies
        return (ts.theta[ok], arsinh_to_maggies(ts.phot[ok]), ts.log_mfrac[ok].astype(float),
                ts.band_names)
    if comm is not None and comm.Get_rank() != 0:
        return None
    from astropy.table import Table

    from .model import get_model
    from .photometry import FilterSet
    from .sps import get_backend, model_for

    model = get_model(model_for(cfg.model))
    theta = model.from_columns(Table.read(cfg.source), what=cfg.source)
    filters = FilterSet(cfg.bands)
    x, logmf = get_backend(cfg.model, filters, cfg.dl07).maggies(theta)
    return theta, x, logmf, filters.names


def make_mock(cfg: MockConfig, comm="world") -> dict:
    """Write the mock catalog, its truth table and its fit config; every rank calls this.
    Returns {catalog, truth, config, n} on rank 0, {} elsewhere."""
    from astropy.table import Table

    from .model import get_model
    from .parallel import world
    from .samplers import derived_quantities
    from .sps import model_for

    if comm == "world":
        comm = world()[0]
    res = _photometry(cfg, comm)
    if res is None:
        return {}
    theta, x, logmf, bands = res
    model = get_model(model_for(cfg.model))
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2 ** 31,)))
    flux, err = add_noise(x, rng, cfg.depth, cfg.snr, cfg.floor, cfg.missing, cfg.nondetect)
    out = Path(cfg.out)
    ids = [f"mock{i:07d}" for i in range(len(theta))]
    prov = provenance("mock", FORMAT_VERSION, cfgmod.as_dict(cfg))
    cat = Table(meta=dict(prov))
    cat["id"] = ids
    cat["redshift"] = theta[:, model.index("zred")]
    for j, b in enumerate(bands):
        f, e = from_maggies(flux[:, j], err[:, j], cfg.units)
        cat[f"f_{b}"], cat[f"e_{b}"] = f, e
    truth = Table(meta=dict(prov))
    truth["id"] = ids
    for k, name in enumerate(model.names):
        truth[name] = theta[:, k]
    truth["log_mfrac"] = logmf
    for k, v in derived_quantities(model, theta, logmf).items():
        truth[k] = v
    for j, b in enumerate(bands):
        truth[f"true_{b}"] = x[:, j]
    for j, b in enumerate(bands):  # noiseless S/N (NaN where missing or not detected)
        truth[f"snr_{b}"] = x[:, j] / err[:, j]
    for j, b in enumerate(bands):  # S/N of the catalog's noisy flux: select on this, the data
        truth[f"obs_snr_{b}"] = flux[:, j] / err[:, j]
    truth_path = out.with_name(f"{out.stem}_truth{out.suffix}")
    cat.write(out, overwrite=True)
    truth.write(truth_path, overwrite=True)
    fit_path = out.with_name(f"{out.stem}_fit.toml")
    lines = ["# column map of the mock catalog " + out.name + " for `sedhpc fit --config`",
             "[fit.columns]", f'units = "{cfg.units}"', 'id_column = "id"',
             'redshift_column = "redshift"', "", "[fit.columns.bands]"]
    lines += [f'{b} = ["f_{b}", "e_{b}"]' for b in bands]
    fit_path.write_text("\n".join(lines) + "\n")
    return {"catalog": str(out), "truth": str(truth_path), "config": str(fit_path),
            "n": len(ids), "sps_failed": max(cfg.n - len(ids), 0) if cfg.n else 0}
