"""Zeropoint tables: offsets in magnitudes ↔ flux factors (sign convention), per tract, and
how `sedhpc fit` applies them to a catalog."""

import numpy as np
from astropy.table import Table

from sedhpc import zeropoints
from sedhpc.catalog import CatalogSpec, read_catalog
from sedhpc.scheduler import apply_zeropoints

BANDS = ["lsst_baseline_g", "lsst_baseline_r", "lsst_baseline_i"]


def test_offsets_round_trip_and_are_applied_per_tract(tmp_path):
    res = {"tracts": np.array(["t1", "t2"]), "bands": BANDS, "reference": BANDS[1],
           "offset": np.array([[0.1, 0.0, -0.05], [0.0, 0.0, 0.2]]),
           "error": np.full((2, 3), 0.003), "n": np.full((2, 3), 40)}
    zeropoints.write(res, tmp_path / "zp.ecsv", {"note": "test"})
    back = zeropoints.read(tmp_path / "zp.ecsv", BANDS + ["sdss_u0"])
    # a positive offset means the catalog's flux was too bright: it is scaled down
    np.testing.assert_allclose(back["t1"], [10 ** -0.04, 1.0, 10 ** 0.02, 1.0])
    t = Table({"id": ["a", "b"], "z": [0.5, 0.7], "tract": ["t2", "t1"]})
    for b in BANDS:
        t[f"f_{b}"], t[f"e_{b}"] = [1000.0, 1000.0], [10.0, 10.0]
    t.write(tmp_path / "c.ecsv")
    spec = CatalogSpec(bands={b: [f"f_{b}", f"e_{b}"] for b in BANDS}, units="nJy",
                       id_column="id", redshift_column="z", tract_column="tract")
    cat = read_catalog(tmp_path / "c.ecsv", spec)
    assert list(cat.tract) == ["t2", "t1"]
    before = cat.flux.copy()
    apply_zeropoints(cat, tmp_path / "zp.ecsv")
    np.testing.assert_allclose(cat.flux / before, [[1, 1, 10 ** -0.08], [10 ** -0.04, 1,
                                                                          10 ** 0.02]])
    np.testing.assert_allclose(cat.err / cat.flux, 0.01)
