"""A redshift prior table for `sedhpc fit --photoz --zprior` from the redshifts of a training
or spectroscopic sample (never from the catalog being fitted): a histogram smoothed with a
Gaussian kernel, plus a floor (a fraction of its peak) so no redshift in the emulator's range
is ruled out, written as two columns (z, p) with a header recording the source.

    python tools/zprior_from_catalog.py TRAINING.hdf5 --z-column redshift --out nz.txt
"""

from __future__ import annotations

import argparse

import numpy as np

from sedhpc import provenance
from sedhpc.catalog import CatalogError, read_table
from sedhpc.emulator import Emulator, default_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("catalog")
    ap.add_argument("--z-column", default="redshift")
    ap.add_argument("--emulator", default=None, help="the table spans its redshift range "
                    "(default: the bundled emulator)")
    ap.add_argument("--dz", type=float, default=0.02, help="grid step")
    ap.add_argument("--smooth", type=float, default=0.05, help="Gaussian kernel σ in z")
    ap.add_argument("--floor", type=float, default=0.01, help="floor, as a fraction of the peak")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        t = read_table(a.catalog)
    except CatalogError as exc:
        ap.error(str(exc))
    if a.z_column not in t.colnames:
        ap.error(f"{a.catalog} has no column {a.z_column!r}; columns: {', '.join(t.colnames)}")
    z = np.asarray(t[a.z_column], float)
    z = z[np.isfinite(z)]
    lo, hi = Emulator(a.emulator or str(default_path()), xp="numpy").zrange
    grid = np.linspace(lo, hi, int(round((hi - lo) / a.dz)) + 1)
    p = np.exp(-0.5 * ((grid[:, None] - z[None, :]) / a.smooth) ** 2).sum(axis=1)
    p = p / p.max()
    p = np.maximum(p, a.floor)
    prov = provenance.provenance("zprior", 1, vars(a))
    head = "\n".join(f"{k}: {v}" for k, v in prov.items())
    head += f"\nfrom {z.size} redshifts of {a.catalog}; columns: z p (unnormalised)"
    np.savetxt(a.out, np.column_stack([grid, p]), fmt="%.5f %.6e", header=head)
    print(f"{a.out}: p(z) on {grid.size} nodes over [{lo:g}, {hi:g}] from {z.size} redshifts")


if __name__ == "__main__":
    main()
