"""A reproducible subset of a catalog, for validation runs that cannot afford every row:
every K-th row (``--every``; on a catalog sorted by redshift this keeps the redshift
distribution) or N rows drawn without replacement with a seed (``--random``). Reads anything
``sedhpc fit`` reads; writes any astropy format (by the output's extension) with the source,
selection and provenance in the table's metadata.

    python tools/subset_catalog.py CATALOG --every 40 --out subset.ecsv
    python tools/subset_catalog.py CATALOG --random 500 --seed 1 --out subset.fits
"""

from __future__ import annotations

import argparse

import numpy as np

from sedhpc import provenance
from sedhpc.catalog import CatalogError, read_table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("catalog")
    ap.add_argument("--format", default=None, help="astropy format of CATALOG (default: by "
                    "extension)")
    pick = ap.add_mutually_exclusive_group(required=True)
    pick.add_argument("--every", type=int, help="keep rows 0, K, 2K, …")
    pick.add_argument("--random", type=int, help="keep N random rows (sorted)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        t = read_table(a.catalog, a.format)
    except CatalogError as exc:
        ap.error(str(exc))
    if a.every is not None:
        if a.every < 1:
            ap.error("--every must be ≥ 1")
        rows = np.arange(0, len(t), a.every)
    else:
        if not 0 < a.random <= len(t):
            ap.error(f"--random must be in 1..{len(t)}")
        rng = np.random.default_rng(a.seed)
        rows = np.sort(rng.choice(len(t), a.random, replace=False))
    sub = t[rows]
    sub.meta.update({"subset_of": str(a.catalog), "subset_rows": len(rows),
                     "subset_of_rows": len(t)})
    sub.meta.update(provenance.provenance("subset-catalog", 1, vars(a)))
    sub.write(a.out, overwrite=True)
    print(f"{a.out}: {len(rows)} of {len(t)} rows of {a.catalog}")


if __name__ == "__main__":
    main()
