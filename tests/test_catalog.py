"""Tests for sedhpc.catalog: formats, units → maggies, per-galaxy flags and file-level errors."""

import importlib.util

import h5py
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from sedhpc.catalog import SKIP, CatalogError, CatalogSpec, Flags, read_catalog
from sedhpc.photometry import from_maggies

G = 8
TRUE = 10 ** np.random.default_rng(1).uniform(-11, -8, (G, 2))  # maggies (AB 20…27.5)
SPEC = {"bands": {"g": ["fg", "eg"], "r": ["fr", "er"]}, "id_column": "id",
        "redshift_column": "z"}
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def make_table(unit="nJy"):
    """G galaxies in bands g, r with fluxes TRUE and errors 0.1·TRUE, written in ``unit``."""
    zp = float(unit[3:]) if unit.startswith("zp:") else None
    f, e = from_maggies(TRUE, 0.1 * TRUE, unit, zp)
    return Table({"id": [f"gal{i}" for i in range(G)], "fg": f[:, 0], "eg": e[:, 0],
                  "fr": f[:, 1], "er": e[:, 1], "z": np.linspace(0.1, 2.0, G)})


def read(tmp_path, table, name="cat.ecsv", known_bands=None, zrange=(0.0, 3.0), rows=None,
         **spec):
    path = tmp_path / name
    table.write(path, overwrite=True)
    return read_catalog(path, CatalogSpec.from_dict({**SPEC, **spec}), known_bands, zrange, rows)


def check_values(cat):
    np.testing.assert_allclose(cat.flux, TRUE, rtol=1e-12)
    np.testing.assert_allclose(cat.err, 0.1 * TRUE, rtol=1e-12)
    assert cat.mask.all() and not cat.flags.any()


# ------------------------------------------------------------------------------ units, formats
@pytest.mark.parametrize("unit", ["maggies", "nJy", "uJy", "µJy", "mJy", "Jy", "ABmag", "zp:23.9"])
def test_units_round_trip(tmp_path, unit):
    cat = read(tmp_path, make_table(unit), units=unit)
    check_values(cat)
    assert cat.flux.dtype == np.float64 and cat.flags.dtype == np.uint32


def test_band_units_override(tmp_path):
    t = make_table("nJy")
    t["fr"], t["er"] = from_maggies(TRUE[:, 1], 0.1 * TRUE[:, 1], "ABmag")
    check_values(read(tmp_path, t, units="nJy", band_units={"r": "ABmag"}))


def write_h5py(path, table, compound):
    with h5py.File(path, "w") as f:
        f["image"] = np.zeros((3, 4))  # not table-like: skipped
        cols = {k: table[k].astype("S") if table[k].dtype.kind == "U" else table[k]
                for k in table.colnames}
        if compound:
            f["cat"] = np.rec.fromarrays(list(cols.values()), names=list(cols))
        else:
            for k, v in cols.items():
                f[f"phot/{k}"] = np.asarray(v)


@pytest.mark.parametrize("name", ["cat.ecsv", "cat.csv", "cat.txt", "cat.fits", "cat.fits.gz",
                                  "cat.h5", "compound.h5", "columns.hdf5", "cat.parquet"])
def test_formats(tmp_path, name):
    t, path = make_table("nJy"), tmp_path / name
    if name.endswith(".parquet") and not HAS_PYARROW:
        pytest.skip("pyarrow is not installed: Parquet cannot be written or read")
    if name.startswith(("compound", "columns")):
        write_h5py(path, t, compound=name.startswith("compound"))
    elif name == "cat.h5":
        t.write(path, path="data")
    else:
        t.write(path, format="ascii.basic" if name.endswith(".txt") else None)
    cat = read_catalog(path, CatalogSpec(**SPEC, units="nJy"))
    check_values(cat)
    assert cat.ids.tolist() == [f"gal{i}" for i in range(G)]
    np.testing.assert_allclose(cat.zred, t["z"])


D, BAD = Flags.DUPLICATE_ID, Flags.BAD_ID


@pytest.mark.parametrize("ids, expect, flags", [
    ([b"g0", b" ", b"g0", b"g3"], ["g0", "", "g0", "g3"], [0, BAD, D, 0]),
    ([10.0, np.nan, 10.0, 2.5], ["10", "nan", "10", "2.5"], [0, BAD, D, 0]),
    ([7, 8, 7, 9], ["7", "8", "7", "9"], [0, 0, D, 0])], ids=["bytes", "float", "int"])
def test_id_kinds(tmp_path, ids, expect, flags):
    t = make_table()[:4]
    t["id"] = ids
    write_h5py(tmp_path / "cat.h5", t, compound=False)
    cat = read_catalog(tmp_path / "cat.h5", CatalogSpec(**SPEC, units="nJy"))
    assert cat.ids.tolist() == expect and cat.flags.tolist() == flags


def test_negative_redshift_without_zrange(tmp_path):
    t = make_table()
    t["z"][2] = -0.1
    cat = read(tmp_path, t, units="nJy", zrange=None)
    assert cat.flags.tolist() == [0, 0, Flags.Z_OUT_OF_RANGE] + [0] * (G - 3)


@pytest.mark.skipif(HAS_PYARROW, reason="checks the message shown without pyarrow")
def test_parquet_without_pyarrow(tmp_path):
    (tmp_path / "cat.parquet").write_bytes(b"PAR1" + bytes(64) + b"PAR1")
    with pytest.raises(CatalogError, match="pip install pyarrow"):
        read_catalog(tmp_path / "cat.parquet", CatalogSpec(**SPEC))


# ----------------------------------------------------------------------------- row-level flags
M, BE, NB = Flags.MISSING_BANDS, Flags.BAD_ERROR, Flags.NO_BANDS
ROW_CASES = [  # case, unit, row, {column: value}, expected flags of that row, its band mask
    ("nan flux", "nJy", 0, {"fg": np.nan}, M, [0, 1]),
    ("+inf flux", "nJy", 0, {"fg": np.inf}, M, [0, 1]),
    ("nan error", "nJy", 0, {"eg": np.nan}, BE, [0, 1]),
    ("negative error", "nJy", 0, {"eg": -1.0}, BE, [0, 1]),
    ("zero error", "nJy", 0, {"er": 0.0}, BE, [1, 0]),
    ("inf error", "nJy", 0, {"eg": np.inf}, BE, [0, 1]),
    ("sentinel -99 flux", "nJy", 0, {"fg": -99.0}, M, [0, 1]),
    ("sentinel 99 error", "nJy", 0, {"eg": 99.0}, M, [0, 1]),
    ("sentinel 99 mag", "ABmag", 0, {"fg": 99.0}, M, [0, 1]),
    ("faint-mag sentinel > 50", "ABmag", 3, {"fr": 60.0}, M, [1, 0]),
    ("masked flux", "nJy", 2, {"fg": np.ma.masked}, M, [0, 1]),
    ("masked error", "nJy", 2, {"eg": np.ma.masked}, BE, [0, 1]),
    ("all bands missing", "nJy", 1, {"fg": np.nan, "fr": -99.0}, M | NB, [0, 0]),
    ("all errors bad", "nJy", 1, {"eg": 0.0, "er": np.nan}, BE | NB, [0, 0]),
    ("missing and bad error", "nJy", 1, {"fg": np.nan, "er": -1.0}, M | BE | NB, [0, 0]),
    ("duplicate ID (2nd row)", "nJy", 1, {"id": "gal0"}, Flags.DUPLICATE_ID, [1, 1]),
    ("empty ID", "nJy", 4, {"id": " "}, Flags.BAD_ID, [1, 1]),
    ("masked ID", "nJy", 4, {"id": np.ma.masked}, Flags.BAD_ID, [1, 1]),
    ("redshift NaN", "nJy", 0, {"z": np.nan}, Flags.NO_REDSHIFT, [1, 1]),
    ("redshift masked", "nJy", 0, {"z": np.ma.masked}, Flags.NO_REDSHIFT, [1, 1]),
    ("redshift sentinel", "nJy", 0, {"z": -99.0}, Flags.NO_REDSHIFT, [1, 1]),
    ("redshift negative", "nJy", 0, {"z": -0.5}, Flags.Z_OUT_OF_RANGE, [1, 1]),
    ("redshift above zrange", "nJy", 7, {"z": 3.5}, Flags.Z_OUT_OF_RANGE, [1, 1]),
    ("negative flux is valid", "nJy", 0, {"fg": -5.0}, 0, [1, 1]),
]


@pytest.mark.parametrize("case, unit, row, changes, flag, mask", ROW_CASES,
                         ids=[c[0] for c in ROW_CASES])
def test_row_flags(tmp_path, case, unit, row, changes, flag, mask):
    t = make_table(unit)
    for col, value in changes.items():
        if value is np.ma.masked:
            t[col] = MaskedColumn(t[col], mask=np.arange(G) == row)
        else:
            t[col][row] = value
    cat = read(tmp_path, t, units=unit)
    assert cat.flags[row] == flag, Flags(int(cat.flags[row]))
    assert cat.mask[row].tolist() == [bool(m) for m in mask]
    others = np.arange(G) != row
    assert not cat.flags[others].any() and cat.mask[others].all()
    assert (np.isnan(cat.err) == ~cat.mask).all() and np.isfinite(cat.flux[cat.mask]).all()
    if case == "negative flux is valid":
        np.testing.assert_allclose(cat.flux[row, 0], -5e-9 / 3631, rtol=1e-12)


def test_mag_sentinels_without_sentinel_list(tmp_path):
    t = make_table("ABmag")
    t["fg"][1], t["fr"][2] = -99.0, 99.0
    cat = read(tmp_path, t, units="ABmag", sentinels=[])
    assert cat.flags.tolist() == [0, M, M] + [0] * (G - 3)


def test_rows_slice_keeps_file_rows_and_duplicates(tmp_path):
    t = make_table("nJy")
    t["id"][5] = "gal1"  # duplicate of a row outside the shard
    cat = read(tmp_path, t, units="nJy", rows=slice(4, 8))
    assert cat.rows.tolist() == [4, 5, 6, 7] and cat.ids.tolist() == ["gal4", "gal1", "gal6",
                                                                      "gal7"]
    np.testing.assert_allclose(cat.flux, TRUE[4:8], rtol=1e-12)
    assert cat.flags.tolist() == [0, Flags.DUPLICATE_ID, 0, 0]
    assert cat.fit_rows().tolist() == [0, 2, 3]


def test_fit_rows_counts_describe(tmp_path):
    t = make_table("nJy")
    t["fg"][0] = np.nan  # MISSING_BANDS: still fitted
    t["eg"][1] = 0.0  # BAD_ERROR: still fitted
    t["fg"][2], t["fr"][2] = np.nan, np.nan  # NO_BANDS
    t["z"][3] = np.nan  # NO_REDSHIFT
    t["z"][4] = 9.0  # Z_OUT_OF_RANGE
    t["id"][5] = "gal6"  # 5 is first: fitted; 6 is the duplicate
    cat = read(tmp_path, t, units="nJy")
    assert np.isnan(cat.flux[0, 0]) and np.isnan(cat.err[1, 0]) and not cat.mask[1, 0]
    np.testing.assert_allclose(cat.flux[1], TRUE[1], rtol=1e-12)  # flux kept, error bad
    assert cat.fit_rows().tolist() == [0, 1, 5, 7]
    assert cat.fit_rows().tolist() == np.flatnonzero((cat.flags & int(SKIP)) == 0).tolist()
    counts = cat.flag_counts()
    assert counts == {f.name: 0 for f in Flags} | {
        "MISSING_BANDS": 2, "BAD_ERROR": 1, "NO_BANDS": 1, "NO_REDSHIFT": 1, "Z_OUT_OF_RANGE": 1,
        "DUPLICATE_ID": 1}
    text = cat.describe()
    assert "8 galaxies" in text and "4 to fit, 4 skipped" in text and "NO_BANDS 1" in text
    assert "No galaxy can be fitted" not in text


def test_nothing_fittable_is_not_an_error(tmp_path):
    t = make_table("nJy")
    t["z"] = np.full(G, np.nan)
    cat = read(tmp_path, t, units="nJy")
    assert cat.fit_rows().size == 0 and "No galaxy can be fitted" in cat.describe()


def test_row_numbers_as_ids_without_redshift(tmp_path):
    cat = read(tmp_path, make_table(), units="nJy", id_column=None, redshift_column=None)
    assert cat.ids.tolist() == [str(i) for i in range(G)] and cat.zred is None


# --------------------------------------------------------------------------- file-level errors
def _truncated(tmp_path):
    make_table().write(tmp_path / "cat.fits")
    data = (tmp_path / "cat.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[:len(data) // 2])
    return "cut.fits", {}, {}


def _table_file(name, table=None, fmt=None):
    def make(tmp_path):
        (make_table() if table is None else table()).write(tmp_path / name, format=fmt)
        return name, {}, {}
    return make


def _spec(**spec):
    return lambda tmp_path: _table_file("cat.ecsv")(tmp_path)[:1] + (spec, {})


def _args(**kwargs):
    return lambda tmp_path: _table_file("cat.ecsv")(tmp_path)[:2] + (kwargs,)


def _strings():
    t = make_table()
    t["fg"] = [f"{v:.3g}x" for v in t["fg"]]
    return t


def _binary(tmp_path):
    (tmp_path / "cat.xyz").write_bytes(bytes(range(256)))
    return "cat.xyz", {}, {}


FILE_CASES = [  # case, make(tmp_path) → (file name, spec changes, read_catalog kwargs), error
    ("file not found", lambda p: ("nope.fits", {}, {}), FileNotFoundError, "not found"),
    ("truncated FITS", _truncated, CatalogError, "cannot read catalog .* is the file complete"),
    ("empty catalog", _table_file("cat.ecsv", lambda: make_table()[:0]), CatalogError,
     "has no rows"),
    ("missing column", _spec(bands={"g": ["fg", "eg"], "r": ["f_r", "er"]}), CatalogError,
     r"lacks column\(s\) 'f_r' \(did you mean 'fr'\?\)"),
    ("missing ID column", _spec(id_column="ID"), CatalogError, "lacks column.*'ID'.*'id'"),
    ("missing redshift column", _spec(redshift_column="zphot"), CatalogError,
     "lacks column.*'zphot'"),
    ("unknown band", _args(known_bands=["g", "R", "i"]), CatalogError,
     r"band\(s\) 'r' \(did you mean 'R'\?\) .* not provided by the emulator"),
    ("mags declared as nJy", _table_file("cat.fits", lambda: make_table("ABmag")), CatalogError,
     "looks like AB magnitudes.*units = 'ABmag'"),
    ("nJy declared as ABmag", _spec(units="ABmag"), CatalogError,
     "does not look like magnitudes"),
    ("nJy declared as maggies", _spec(units="maggies"), CatalogError,
     "median |flux|.*probably in nJy or uJy"),
    ("non-numeric flux column", _table_file("cat.csv", _strings), CatalogError,
     "'fg' .* is not numeric"),
    ("unknown unit", _spec(units="nanoJy"), CatalogError, "'nanoJy' is not a known flux unit"),
    ("bad zero point", _spec(units="zp:abc"), CatalogError, "zero point after 'zp:'"),
    ("unknown band unit", _spec(band_units={"i": "nJy"}), CatalogError,
     "band_units names band 'i'"),
    ("band mapped twice", _spec(bands=[["g", "fg", "eg"], ["g", "fr", "er"]]), CatalogError,
     "band 'g' is mapped twice"),
    ("flux column used twice", _spec(bands={"g": ["fg", "eg"], "r": ["fg", "er"]}),
     CatalogError, r"'fg' is used by bands \['g', 'r'\]"),
    ("error column is a flux column", _spec(bands={"g": ["fg", "fr"], "r": ["fr", "er"]}),
     CatalogError, "error column 'fr' is also a flux column"),
    ("no bands", _spec(bands={}), CatalogError, "at least one band"),
    ("unknown extension", _binary, CatalogError, "unknown extension '.xyz'"),
    ("unknown format", _spec(format="fitz"), CatalogError, "not an astropy table format"),
    ("unknown spec key", _spec(unit="nJy"), CatalogError,
     "unknown catalog setting 'unit' .*did you mean 'units'"),
    ("bad zrange", _args(zrange=(3.0, 1.0)), CatalogError, "finite lo < hi"),
]


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")
@pytest.mark.parametrize("case, make, exc, phrase", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_file_errors(tmp_path, case, make, exc, phrase):
    name, spec, kwargs = make(tmp_path)
    with pytest.raises(exc, match=phrase):
        read_catalog(tmp_path / name, CatalogSpec.from_dict({**SPEC, "units": "nJy", **spec}),
                     **kwargs)
