"""``sedhpc reweight``: stored posteriors under a new population prior, without refitting.

Each galaxy's N stored samples θ_i (equal weight under the prior p_old they were fitted with,
read from the store) get importance weights w_i ∝ p_new(θ_i) / p_old(θ_i) over the free
parameters; the effective sample size ESS = 1 / Σ w_i² (normalised w) says how far the new
prior can be trusted: galaxies with ESS < ``min_ess`` are flagged ``LOW_ESS``. The output is a
fit directory like the input (same chunks, one shard per rank): N samples resampled with the
weights (galaxy g seeds ``SeedSequence(seed, spawn_key=(g,))``), their percentiles, and the
re-weighting ESS in ``ess``. All galaxies of a chunk are weighted in one vectorised call;
chunks are spread over MPI ranks.

The new prior is a TOML table ``[prior]`` of overrides, parameter → spec as in
``sedhpc models`` (e.g. ``logmass = {type = "normal", mu = 10.0, sigma = 0.5, lo = 6,
hi = 12.5}``); parameters not named keep their old prior.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np

from . import store
from .catalog import SKIP, Flags
from .model.parameters import Distribution
from .model.priors import from_spec
from .provenance import provenance

LOW_ESS = int(Flags.LOW_ESS)


def read_prior(path) -> dict:
    """The ``[prior]`` table of a TOML file: parameter → spec."""
    with open(path, "rb") as f:
        table = tomllib.load(f).get("prior")
    if not table:
        raise ValueError(f"{path}: no [prior] table (parameter = {{type = ..., ...}})")
    return {k: dict(v) for k, v in table.items()}


def weights(samples, names, zred, old: Distribution, new: Distribution):
    """Normalised importance weights (n, N) and ESS (n,) for stored ``samples`` (n, N, P) of
    quantities ``names`` (free parameters among them); ``zred`` (n,) the fixed redshifts (NaN
    when redshift was a free parameter)."""
    n, N, _ = samples.shape
    theta = np.zeros((n * N, old.ndim))
    free = []
    for k, name in enumerate(old.names):
        if name in names:
            theta[:, k] = samples[:, :, names.index(name)].reshape(-1)
            free.append(k)
        elif name == "zred":
            theta[:, k] = np.repeat(zred, N)
    logw = (new.log_prob(theta, free) - old.log_prob(theta, free)).reshape(n, N)
    top = np.max(logw, axis=1, keepdims=True)
    w = np.exp(logw - np.where(np.isfinite(top), top, 0.0))
    w = np.where(np.isfinite(w), w, 0.0)
    tot = w.sum(axis=1, keepdims=True)
    w = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    ess = np.where(tot[:, 0] > 0, 1.0 / np.maximum(np.sum(w ** 2, axis=1), 1e-300), 0.0)
    return w, ess


def reweight(directory, prior: dict, out, min_ess: float = 50.0, seed: int = 0,
             comm="world") -> dict:
    """Re-weight the fit in ``directory`` to the prior overrides ``prior`` into ``out``;
    every rank calls this. Returns counts on rank 0."""
    from .parallel import world

    if comm == "world":
        comm, rank, size = world()
    else:
        rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    src, out = Path(directory), Path(out)
    meta = json.loads((src / "fit.json").read_text())
    sc = store.scan(src)
    if rank == 0:
        (out / "shards").mkdir(parents=True, exist_ok=True)
        new_meta = dict(meta, reweighted_from=str(src.resolve()), reweight_prior=prior,
                        provenance=provenance("reweight", store.FORMAT_VERSION,
                                              {"prior": prior, "min_ess": min_ess,
                                               "seed": seed, "from": str(src)}))
        new_meta["identity"] = dict(meta["identity"], prior={**meta["identity"].get(
            "prior", {}), **prior})
        (out / "fit.json").write_text(json.dumps(new_meta, indent=1, default=str))
    if comm is not None:
        comm.Barrier()
    mine = sorted(sc.chunks)[rank::size]
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
            x = data["samples"]
            w, ess = weights(np.nan_to_num(x[fitted]), names, data["zred"][fitted], old, new)
            N = x.shape[1]
            res = np.array(x)
            for j, k in enumerate(np.flatnonzero(fitted)):
                rng = np.random.default_rng(np.random.SeedSequence(
                    seed, spawn_key=(int(data["row"][k]),)))
                if ess[j] > 0:
                    res[k] = x[k][rng.choice(N, size=N, p=w[j])]
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
                a = {**attrs, **provenance("reweight-shard", store.FORMAT_VERSION,
                                           {"prior": prior, "from": str(src)}),
                     "prior": json.dumps(new.spec(), default=float), "rank": rank}
                a.pop("quantities", None)
                writer = store.ShardWriter(out / "shards" / f"a001-s0000-r{rank:04d}.h5", N,
                                           names, a)
            writer.append(c, rows)
            counts += (int(fitted.sum()), int(low.sum()), 1)
    finally:
        if writer:
            writer.close()
    if comm is not None:
        counts = comm.reduce(counts, root=0)
    if rank != 0:
        return {}
    return {"galaxies": int(counts[0]), "low_ess": int(counts[1]), "chunks": int(counts[2]),
            "out": str(out)}
