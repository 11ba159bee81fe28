"""A reproducible subset of a catalog, for validation runs that cannot afford every row:
every K-th row (``--every``; on a catalog sorted by redshift this keeps the redshift
distribution), N rows drawn without replacement with a seed (``--random``), or the rows listed
(``--rows``, 0-based file rows, e.g. galaxies picked for a costly direct-SPS check; the source
rows are kept in a column ``source_row``). Reads anything
``sedhpc fit`` reads; writes any astropy format (by the output's extension) with the source,
selection and provenance in the table's metadata.

    python tools/subset_catalog.py CATALOG --every 40 --out subset.ecsv
    python tools/subset_catalog.py CATALOG --random 500 --seed 1 --out subset.fits
    python tools/subset_catalog.py CATALOG --rows 4,11,37 --out picked.ecsv
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
    pick.add_argument("--rows", help="keep these rows (comma-separated, 0-based)")
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
    elif a.rows is not None:
        try:
            rows = np.unique([int(v) for v in a.rows.split(",") if v.strip()])
        except ValueError:
            ap.error(f"--rows must be comma-separated integers; got {a.rows!r}")
        if not len(rows) or rows[0] < 0 or rows[-1] >= len(t):
            ap.error(f"--rows must name rows in 0..{len(t) - 1}")
    else:
        if not 0 < a.random <= len(t):
            ap.error(f"--random must be in 1..{len(t)}")
        rng = np.random.default_rng(a.seed)
        rows = np.sort(rng.choice(len(t), a.random, replace=False))
    sub = t[rows]
    if a.rows is not None and "source_row" not in sub.colnames:
        sub["source_row"] = rows
    sub.meta.update({"subset_of": str(a.catalog), "subset_rows": len(rows),
                     "subset_of_rows": len(t)})
    sub.meta.update(provenance.provenance("subset-catalog", 1, vars(a)))
    sub.write(a.out, overwrite=True)
    print(f"{a.out}: {len(rows)} of {len(t)} rows of {a.catalog}")


if __name__ == "__main__":
    main()
