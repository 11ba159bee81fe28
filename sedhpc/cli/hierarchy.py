"""``sedhpc reweight``: the hierarchical layer on stored posteriors."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "reweight", help="stored posteriors under a new population prior (no refit)",
        description="Importance-weight the stored posterior samples of DIR by new prior / old "
                    "prior (the old prior is read from the store), resample, and write a fit "
                    "directory OUT with new summaries, the re-weighting ESS per galaxy (in "
                    "'ess') and the LOW_ESS flag (2048) where it is below --min-ess. Runs on "
                    "all ranks under mpiexec/srun.")
    p.add_argument("dir")
    p.add_argument("--prior", required=True,
                   help="TOML file with a [prior] table: parameter = {type = ..., ...}")
    p.add_argument("--out", required=True)
    p.add_argument("--min-ess", type=float, default=50.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_reweight)


def _cmd_reweight(args) -> int:
    from ..reweight import read_prior, reweight

    s = reweight(args.dir, read_prior(args.prior), args.out, args.min_ess, args.seed)
    if s:
        print(f"{s['out']}: {s['galaxies']} galaxies re-weighted ({s['low_ess']} with ESS < "
              f"{args.min_ess:g}, flagged LOW_ESS) in {s['chunks']} chunks")
    return 0
