"""``sedhpc reweight``: stored posteriors under a new population prior, or under the SPS called
directly instead of the emulator, without refitting.

Each galaxy's N stored samples θ_i (equal weight under the prior p_old and the likelihood L_old
they were fitted with) get importance weights

    w_i ∝ p_new(θ_i) / p_old(θ_i)                     (``prior``: overrides of the old prior)
        × L_sps(θ_i) / L_emu(θ_i)                      (``sps``: the SPS backend's own fluxes)

over the free parameters; the effective sample size ESS = 1 / Σ w_i² (normalised w) says how
far the result can be trusted: galaxies with ESS < ``min_ess`` are flagged ``LOW_ESS``. The
output is a fit directory like the input (same chunks, one shard per rank and attempt): N
samples resampled with the weights (galaxy g seeds ``SeedSequence(seed, spawn_key=(g,))``),
their percentiles, and the re-weighting ESS in ``ess``. All galaxies of a chunk are weighted in
one vectorised call; chunks are spread over MPI ranks. A killed run resumes: chunks already in
``out`` are kept, the rest are done in a new attempt (same settings required).

The new prior is a TOML table ``[prior]`` of overrides, parameter → spec as in
``sedhpc models`` (e.g. ``logmass = {type = "normal", mu = 10.0, sigma = 0.5, lo = 6,
hi = 12.5}``); parameters not named keep their old prior.

With ``sps`` (:class:`SPSRatio`) the fit's own likelihood is rebuilt — its catalog (checked
against the recorded hash), zeropoints, error floor and emulator with its σ model — and
L_emu is recomputed at every sample, L_sps with the SPS backend's fluxes at the same θ and no
emulator-error term (:class:`sedhpc.sps.direct.DirectSPS`): N SPS calls per galaxy (a few ms
each for the embedded SPS) instead of the 10⁴–10⁵ of a direct fit. The result is the posterior
under the SPS itself, exactly in the limit of many samples, provided the emulator's posterior
covers it — which the ESS measures (the emulator's σ widens its posterior, which helps). The
stellar mass (``logmstar``) of the resampled samples is recomputed with the SPS's surviving
mass fraction. This is the emulator-vs-SPS posterior test of docs/VALIDATION.md (a).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import numpy as np

from . import store
from .catalog import SKIP, Flags
from .model.parameters import Distribution
from .model.priors import from_spec
from .photometry import arsinh_to_maggies
from .provenance import provenance

LOW_ESS = int(Flags.LOW_ESS)


def read_prior(path) -> dict:
    """The ``[prior]`` table of a TOML file: parameter → spec."""
    with open(path, "rb") as f:
        table = tomllib.load(f).get("prior")
    if not table:
        raise ValueError(f"{path}: no [prior] table (parameter = {{type = ..., ...}})")
    return {k: dict(v) for k, v in table.items()}


def full_theta(samples, names, zred, params) -> np.ndarray:
    """(n·N, d) parameter vectors in the order ``params`` from stored ``samples`` (n, N, P) of
    quantities ``names``; a parameter not stored (redshift held fixed) takes ``zred`` (n,)."""
    n, N, _ = samples.shape
    theta = np.zeros((n * N, len(params)))
    for k, name in enumerate(params):
        if name in names:
            theta[:, k] = samples[:, :, names.index(name)].reshape(-1)
        elif name == "zred":
            theta[:, k] = np.repeat(zred, N)
    return theta


def normalise(logw) -> tuple[np.ndarray, np.ndarray]:
    """Normalised weights (n, N) and ESS (n,) from log weights (n, N); −inf/NaN weigh 0 and a
    galaxy with no finite weight gets all-zero weights and ESS 0."""
    logw = np.where(np.isnan(logw), -np.inf, logw)
    top = np.max(logw, axis=1, keepdims=True)
    w = np.exp(logw - np.where(np.isfinite(top), top, 0.0))
    w = np.where(np.isfinite(w), w, 0.0)
    tot = w.sum(axis=1, keepdims=True)
    w = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    ess = np.where(tot[:, 0] > 0, 1.0 / np.maximum(np.sum(w ** 2, axis=1), 1e-300), 0.0)
    return w, ess


def log_prior_ratio(samples, names, zred, old: Distribution, new: Distribution):
    """log p_new − log p_old (n, N) over the free parameters of stored ``samples``."""
    n, N, _ = samples.shape
    theta = full_theta(samples, names, zred, old.names)
    free = [k for k, name in enumerate(old.names) if name in names]
    return (new.log_prob(theta, free) - old.log_prob(theta, free)).reshape(n, N)


def weights(samples, names, zred, old: Distribution, new: Distribution):
    """Normalised importance weights (n, N) and ESS (n,) for stored ``samples`` (n, N, P) of
    quantities ``names`` (free parameters among them) from prior ``old`` to ``new``; ``zred``
    (n,) the fixed redshifts (NaN when redshift was a free parameter)."""
    return normalise(log_prior_ratio(samples, names, zred, old, new))


def _resolve(recorded, base: Path, what: str, given=None) -> Path:
    """The file a fit recorded (absolute, or relative to where it ran): ``given`` if set, else
    the recorded path as it stands, else relative to the fit directory's parent."""
    if given:
        return Path(given)
    p = Path(recorded)
    for cand in (p, base.parent / p):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"the fit's {what} {recorded} is not found (from here or from "
                            f"{base.parent}); give its path")


class SPSRatio:
    """log L_sps − log L_emu at stored samples of the fit in ``directory`` (its metadata
    ``meta``): the fit's catalog (``catalog`` overrides the recorded path; its hash must match),
    zeropoints, floor and emulator, with the SPS backend ``sps`` computing fluxes directly."""

    def __init__(self, directory, meta: dict, sps: str, catalog=None):
        from .catalog import CatalogSpec, read_catalog
        from .emulator import Emulator
        from .likelihood import Likelihood, Observations
        from .scheduler import FitConfig, apply_zeropoints, sha256
        from .sps.direct import DirectSPS

        src = Path(directory)
        rec = dict(meta["config"])
        ident = meta["identity"]
        if rec.get("sps"):
            raise ValueError(f"{src} was fitted with the SPS directly (sps = {rec['sps']!r}): "
                             "nothing to re-weight")
        known = {f.name for f in dataclasses.fields(FitConfig)}
        cfg = FitConfig(**{k: v for k, v in rec.items() if k in known})
        path = _resolve(cfg.catalog, src, "catalog", catalog)
        if sha256(path) != ident["catalog_sha256"]:
            raise ValueError(f"{path} is not the catalog {src} was fitted on (its SHA-256 "
                             "differs from the one recorded in fit.json)")
        emu_path = _resolve(meta["emulator"], src, "emulator")
        if sha256(emu_path) != ident["emulator_sha256"]:
            raise ValueError(f"{emu_path} is not the emulator {src} was fitted with (SHA-256 "
                             "differs from fit.json)")
        cat = read_catalog(path, CatalogSpec.from_dict(cfg.columns), zrange=None)
        if cfg.zeropoints:
            zp = _resolve(cfg.zeropoints, src, "zeropoint table")
            if sha256(zp) != ident.get("zeropoints_sha256"):
                raise ValueError(f"{zp} is not the zeropoint table {src} was fitted with")
            apply_zeropoints(cat, zp)
        self.emulator = Emulator(emu_path, bands=cat.bands, xp="numpy")
        # the embedded SPS with the DL07 sequence the emulator was trained on (FSPS: its own)
        self.direct = DirectSPS(sps, cat.bands,
                                self.emulator.file.dl07 if sps == "embedded" else None)
        if list(self.direct.param_names) != list(self.emulator.param_names):
            raise ValueError(f"the {sps} SPS's parameters {self.direct.param_names} differ "
                             f"from the emulator's {self.emulator.param_names}")
        obs = Observations.build(cat.flux, cat.err, cat.mask)
        self.lik_emu = Likelihood(self.emulator, obs, floor=cfg.floor)
        self.lik_sps = Likelihood(self.direct, obs, floor=cfg.floor)
        self.params = list(self.emulator.param_names)

    def __call__(self, theta, rows) -> tuple[np.ndarray, np.ndarray]:
        """``theta`` (n, d) in :attr:`params` order for catalog rows ``rows`` (n,) →
        (log L_sps − log L_emu (n,): −inf where the SPS fails or θ is outside the prior,
        log10 surviving mass fraction from the SPS (n,))."""
        rows = np.asarray(rows, np.int64)
        pred = self.direct.predict(theta)
        x = arsinh_to_maggies(pred.mags)
        zero = np.zeros_like(x)
        ll_sps = self.lik_sps.loglike_from(np.nan_to_num(x), pred.inside, zero, rows)
        ll_emu = self.lik_emu(theta, rows)
        with np.errstate(invalid="ignore"):
            d = np.where(np.isfinite(ll_sps) & np.isfinite(ll_emu), ll_sps - ll_emu, -np.inf)
        return d, pred.log_mfrac


def _fit_settings(prior, sps, min_ess, seed, src) -> dict:
    return {"prior": prior, "sps": sps, "min_ess": min_ess, "seed": seed,
            "from": str(Path(src).resolve())}


def reweight(directory, prior: dict | None, out, min_ess: float = 50.0, seed: int = 0,
             comm="world", sps: str | None = None, catalog=None, progress: bool = False) -> dict:
    """Re-weight the fit in ``directory`` to the prior overrides ``prior`` and/or the likelihood
    of the SPS backend ``sps`` into ``out``; every rank calls this. Resumes an interrupted run
    with the same settings in ``out``. Returns counts on rank 0."""
    from .parallel import world

    if comm == "world":
        comm, rank, size = world()
    else:
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    prior = dict(prior or {})
    if not prior and not sps:
        raise ValueError("nothing to re-weight to: give a new prior and/or an SPS")
    src, out = Path(directory), Path(out)
    if src.resolve() == out.resolve():
        raise ValueError("--out must be a new directory, not the fit itself")
    meta = store.read_meta(src)
    settings = _fit_settings(prior, sps, min_ess, seed, src)
    sc = store.scan(src)
    setup = None
    if rank == 0:
        try:
            setup = ("ok", _start(src, out, meta, prior, sps, settings))
        except Exception as err:  # noqa: BLE001 - every rank raises it
            setup = ("error", err)
    if comm is not None:
        setup = comm.bcast(setup, root=0)
    if setup[0] == "error":
        raise setup[1]
    attempt, done = setup[1]
    mine = [c for c in sorted(sc.chunks) if c not in done][rank::size]
    # (a rank with nothing to do skips the catalog read and its hashing)
    ratio = SPSRatio(src, meta, sps, catalog) if sps and mine else None
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=len(mine), unit="chunk", desc="reweight")
    writer, counts = None, np.zeros(3)  # galaxies, low ESS, chunks
    try:
        for c in mine:
            path, row0, n = sc.chunks[c]
            with store._open_shard(path) as f:
                attrs = dict(f.attrs)
                data = store.read_rows(f, slice(row0, row0 + n))
            names = json.loads(attrs["quantities"])
            old = Distribution.from_spec(json.loads(attrs["prior"]))
            overrides = {k: from_spec(v, old.names) for k, v in prior.items()}
            unknown = sorted(set(overrides) - set(old.names))
            if unknown:
                raise ValueError(f"prior names unknown parameter(s) {unknown}; the model has "
                                 f"{old.names}")
            new = Distribution(old.names, [overrides.get(k, p) for k, p in
                                           zip(old.names, old.priors)])
            fitted = (data["flags"] & (SKIP | Flags.FIT_FAILED)) == 0
            x = np.nan_to_num(data["samples"][fitted])
            N = x.shape[1]
            logw = log_prior_ratio(x, names, data["zred"][fitted], old, new)
            log_mfrac = None
            if ratio is not None and len(x):
                theta = full_theta(x, names, data["zred"][fitted], ratio.params)
                d, log_mfrac = ratio(theta, np.repeat(data["row"][fitted], N))
                logw = logw + d.reshape(logw.shape)
                log_mfrac = log_mfrac.reshape(logw.shape)
            w, ess = normalise(logw)
            res = np.array(data["samples"])
            for j, k in enumerate(np.flatnonzero(fitted)):
                rng = np.random.default_rng(np.random.SeedSequence(
                    seed, spawn_key=(int(data["row"][k]),)))
                if ess[j] > 0:
                    pick = rng.choice(N, size=N, p=w[j])
                    res[k] = data["samples"][k][pick]
                    if log_mfrac is not None and "logmstar" in names:
                        res[k][:, names.index("logmstar")] = (
                            x[j][pick, names.index("logmass")] + log_mfrac[j][pick])
            pc = data["percentiles"].astype(float)
            pc[fitted] = np.percentile(res[fitted], store.PERCENTILES, axis=1).transpose(1, 2, 0)
            flags = data["flags"].astype(np.int64)
            low = np.zeros(len(flags), bool)
            low[np.flatnonzero(fitted)] = ess < min_ess
            flags[low] |= LOW_ESS
            ess_all = np.array(data["ess"], float)
            ess_all[fitted] = ess
            rows = {k: data[k] for k in ("row", "id", *store.SCALARS)}
            rows.update(samples=res, percentiles=pc, flags=flags, ess=ess_all)
            if writer is None:
                a = {**attrs, **provenance("reweight-shard", store.FORMAT_VERSION, settings),
                     "prior": json.dumps(new.spec(), default=float), "rank": rank,
                     "attempt": attempt}
                a.pop("quantities", None)
                writer = store.ShardWriter(
                    out / "shards" / f"a{attempt:03d}-s0000-r{rank:04d}.h5", N, names, a)
            writer.append(c, rows)
            counts += (int(fitted.sum()), int(low.sum()), 1)
            if bar:
                bar.update(1)
    finally:
        if writer:
            writer.close()
        if bar:
            bar.close()
    if comm is not None:
        counts = comm.reduce(counts, root=0)
    if rank != 0:
        return {}
    return {"galaxies": int(counts[0]), "low_ess": int(counts[1]), "chunks": int(counts[2]),
            "kept": len(done), "out": str(out)}


def _start(src: Path, out: Path, meta: dict, prior: dict, sps, settings) -> tuple[int, set]:
    """Create ``out`` (or check that it holds a run of the same settings): (attempt number,
    chunks already done)."""
    previous = out / "fit.json"
    if previous.exists():
        old = json.loads(previous.read_text()).get("reweight")
        if old != settings:
            raise ValueError(f"{out} holds a different re-weighting ({old}); give a new --out")
        sc = store.scan(out)
        return sc.attempts + 1, set(sc.chunks)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not a re-weighting output; give a new --out")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    new_meta = dict(meta, reweighted_from=str(src.resolve()), reweight=settings,
                    provenance=provenance("reweight", store.FORMAT_VERSION, settings))
    ident = dict(meta["identity"], prior={**meta["identity"].get("prior", {}), **prior})
    if sps:
        ident["emulator_sha256"] = f"sps:{sps} (importance-weighted from " \
                                   f"{meta['identity']['emulator_sha256']})"
    new_meta["identity"] = ident
    tmp = out / "fit.json.tmp"
    tmp.write_text(json.dumps(new_meta, indent=1, default=str))
    tmp.replace(previous)
    return 1, set()
