"""FSPS backend (python-fsps) for the Prospector-α model, with a data check that runs before FSPS.

FSPS reads its isochrones, spectral libraries, dust and nebular tables from ``$SPS_HOME`` when the
first ``StellarPopulation`` is built. A missing file makes the Fortran print ``SPS_SETUP ERROR`` and
execute ``STOP``, which ends Python with exit code 0 (no exception, no atexit; an MPI rank would
vanish looking successful). :func:`check_sps_home` therefore verifies every file that set-up opens,
without importing ``fsps``, and raises :class:`FSPSDataError` naming what is missing.

Conventions: parameters in the model's order (``get_model("prospector_alpha").names``); spectra
returned by :meth:`FSPSBackend.spectrum` are observed-frame f_λ [erg s⁻¹ cm⁻² Å⁻¹] at observed
wavelengths [Å]; the SFH table is in Gyr since the Big Bang and Msun/yr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np

from ..cosmology import age_yr, luminosity_distance_cm
from ..model import Model, get_model, sfh
from .base import SPSBackend

#: FSPS's unit of luminosity [erg/s] (``lsun`` in FSPS ``sps_vars.f90``). FSPS spectra are L_ν in
#: this unit; the IAU nominal 3.828e33 would make every flux 0.29 % too low.
LSUN_FSPS = 3.839e33
C_AA = 2.99792458e18  # speed of light [Å/s]

#: Constant FSPS settings of the full model (MODEL.md "FSPS settings"). ``gas_logu`` is fixed;
#: the per-object parameters are set by :func:`fsps_params`.
FSPS_SETTINGS = dict(
    zcontinuous=1, imf_type=1, dust_type=4, dust1_index=-1.0, dust_tesc=7.0,
    add_dust_emission=True, add_neb_emission=True, add_neb_continuum=True,
    nebemlineinspec=True, add_agn_dust=True, add_igm_absorption=True,
    add_agb_dust_model=True, pmetals=-99, sfh=3, gas_logu=-1.0,
)
#: Isochrones, spectral library and dust-emission model the model was defined with.
LIBRARIES = ("mist", "miles", "DL07")

INSTALL_HELP = (
    "Install the FSPS data: `git clone https://github.com/cconroy20/fsps /path/to/fsps` (a full "
    "clone: the isochrones and spectral libraries are large files), then `export "
    "SPS_HOME=/path/to/fsps` in the environment of every process (job scripts, MPI ranks). The "
    "data must match the FSPS version compiled into python-fsps; MODEL.md needs MIST isochrones "
    "and MILES spectra: `FFLAGS=\"-DMIST=1 -DMILES=1 -DC3K_LR=0 -DC3K_HR=0\" python -m pip "
    "install fsps --no-binary fsps` (see https://python-fsps.readthedocs.io, Installation).")

# Files FSPS opens during set-up with MIST + MILES + DL07 and our settings (cloudy_dust=0,
# smooth_lsf=0, default filter file), read from SPS_SETUP in src/sps_setup.f90 of the FSPS
# source bundled with python-fsps 0.5.0 (src/fsps/libfsps, commit g7d202b8e0), plus
# data/emlines_info.dat and data/FILTER_LIST, which `import fsps` reads (src/fsps/sps_home.py,
# src/fsps/filters.py).
# Each missing file is a Fortran STOP (exit code 0) on the first StellarPopulation().
_SPEC, _HOT, _AGB = "SPECTRA/", "SPECTRA/Hot_spectra/", "SPECTRA/AGB_spectra/"
REQUIRED_FILES: dict[str, str] = {
    "data/emlines_info.dat": "emission-line list (python-fsps import check)",
    "data/FILTER_LIST": "filter names (read when python-fsps is imported)",
    "ISOCHRONES/MIST/zlegend.dat": "MIST isochrone metallicity table",
    _SPEC + "MILES/miles.lambda": "MILES wavelength grid",
    _SPEC + "MILES/zlegend.dat": "MILES metallicity table",
    _SPEC + "MILES/miles.res": "MILES spectral resolution",
    _SPEC + "MILES/logt.dat": "MILES log Teff grid",
    _SPEC + "MILES/logg.dat": "MILES log g grid",
    _HOT + "WMBASIC.teff": "WM-basic hot-star Teff grid",
    _HOT + "WMBASIC_zlegend.dat": "WM-basic metallicity table",
    _AGB + "Orich.teff": "TP-AGB O-rich Teff", _AGB + "Crich.teff": "TP-AGB C-rich Teff",
    _AGB + "Orich.spec": "TP-AGB O-rich spectra", _AGB + "Crich.spec": "TP-AGB C-rich spectra",
    _AGB + "Crich_Aringer.teff": "Aringer C-star Teff",
    _AGB + "Crich_Aringer.spec": "Aringer C-star spectra",
    _HOT + "ipagb.teff": "post-AGB Teff", _HOT + "ipagb_solar.spec": "post-AGB spectra (solar)",
    _HOT + "ipagb_halo.spec": "post-AGB spectra (halo)",
    _HOT + "CMFGEN_WN.teff": "WR-N Teff", _HOT + "CMFGEN_WC.teff": "WR-C Teff",
    _HOT + "CMFGEN_WN_Zall.spec": "WR-N spectra", _HOT + "CMFGEN_WC_Zall.spec": "WR-C spectra",
    **{f"dust/dustem/DL07_MW3.1_{k}0.dat": "DL07 dust emission (qpah grid)" for k in range(7)},
    "dust/dusty/Orich_dusty.spec": "AGB circumstellar dust (O-rich)",
    "dust/dusty/Crich_dusty.spec": "AGB circumstellar dust (C-rich)",
    "dust/Nenkova08_y010_torusg_n10_q2.0.dat": "Nenkova+08 AGN torus",
    "nebular/ZAU_ND_mist.cont": "nebular continuum (Cloudy, MIST)",
    "nebular/ZAU_ND_mist.lines": "nebular lines (Cloudy, MIST)",
    _SPEC + "xrb/xsp.lambda": "X-ray binary wavelength grid",
    **{f"{_SPEC}xrb/xsp_feh{z}.spec": "X-ray binary spectra" for z in (
        "-1.30", "-1.00", "-0.80", "-0.70", "-0.50", "-0.40", "-0.30", "-0.20", "+0.00",
        "+0.20", "+0.30")},
    _SPEC + "A0V_KURUCZ_92.SED": "Vega spectrum", _SPEC + "SUN_STScI.SED": "solar spectrum",
    "data/allfilters.dat": "FSPS filter curves", "data/allindices.dat": "index definitions",
    "dust/alldirty_h.dat": "WG00 attenuation (homogeneous)",
    "dust/alldirty_c.dat": "WG00 attenuation (clumpy)",
    "dust/Gordon03_table4.dat": "Gordon+03 SMC extinction",
}
# Per-metallicity files named by the tables above: (table, rows FSPS reads (nz, nzinit, nzwmb
# in the bundled source), file name from one row, what). MIST rows are read as (A4, F6.2).
PER_METALLICITY = (
    ("ISOCHRONES/MIST/zlegend.dat", 13,
     lambda row: f"ISOCHRONES/MIST/isoc_feh_{row[:4].strip()}_afe_p0_vvcrit0.4_full.dat",
     "MIST isochrones"),
    (_SPEC + "MILES/zlegend.dat", 5,
     lambda row: f"{_SPEC}MILES/imiles_z{float(row.split()[0]):6.4f}.spectra.bin",
     "MILES spectral library"),
    (_HOT + "WMBASIC_zlegend.dat", 12,
     lambda row: f"{_HOT}WMBASIC_z{float(row.split()[0]):6.4f}.spec", "WM-basic spectra"),
)


class FSPSDataError(RuntimeError):
    """SPS_HOME is unset or lacks FSPS data files (raised before FSPS can STOP the process)."""


def _fail(what: str) -> NoReturn:
    sep = "\n" if "\n" in what else ". "
    raise FSPSDataError(f"{what}{sep}FSPS cannot be set up (it would end Python with 'SPS_SETUP "
                        f"ERROR' and exit code 0). {INSTALL_HELP}")


def required_files(home: Path) -> tuple[dict[str, str], list[str]]:
    """(relative path → purpose of every file FSPS opens under ``home``, problems with the index
    tables). Per-metallicity files are named from their index tables, as FSPS names them; a
    table that is absent contributes no names (it is itself in the list)."""
    files, problems = dict(REQUIRED_FILES), []
    for table, nrows, name, why in PER_METALLICITY:
        if not (home / table).is_file():
            continue
        rows = [r for r in (home / table).read_text(errors="replace").splitlines() if r.strip()]
        if len(rows) < nrows:
            problems.append(f"{table} has {len(rows)} rows, FSPS reads {nrows} ({why})")
        for row in rows[:nrows]:
            try:
                files[name(row)] = why
            except (ValueError, IndexError):
                problems.append(f"{table}: unreadable row {row!r} ({why})")
    return files, problems


def missing_files(home: Path) -> list[str]:
    """What FSPS needs under ``home`` and cannot find: "path (purpose)" strings (empty if
    complete)."""
    files, problems = required_files(home)
    return problems + [f"{p} ({why})" for p, why in files.items() if not (home / p).is_file()]


def check_sps_home(env=os.environ) -> Path:
    """Verify ``env["SPS_HOME"]`` holds every file FSPS opens at set-up for MIST + MILES + DL07
    with nebular, dust, AGN-torus, AGB-dust and IGM settings; return it as a Path. Imports nothing
    from python-fsps. Raises :class:`FSPSDataError` naming the problem: variable unset or empty,
    path missing or not a directory, or the missing files (whole missing folders named once)."""
    raw = env.get("SPS_HOME")
    if raw is None:
        _fail("the SPS_HOME environment variable is not set")
    if not raw.strip():
        _fail("the SPS_HOME environment variable is empty")
    home = Path(raw).expanduser()
    if not home.exists():
        _fail(f"SPS_HOME={raw!r} does not exist")
    if not home.is_dir():
        _fail(f"SPS_HOME={raw!r} is not a directory")
    missing = missing_files(home)
    if missing:
        lines, gone = [], []
        for m in missing:  # name a missing folder once instead of every file in it
            parts = Path(m.split(" ")[0]).parts
            top = next((Path(*parts[:i]) for i in range(1, len(parts))
                        if not (home / Path(*parts[:i])).is_dir()), None)
            if top is None:
                lines.append(m)
            elif top not in gone:
                gone.append(top)
                lines.append(f"{top.as_posix()}/ (whole folder missing)")
        shown = "\n  ".join(lines[:25]) + (f"\n  ... and {len(lines) - 25} more"
                                           if len(lines) > 25 else "")
        _fail(f"SPS_HOME={raw!r} lacks FSPS data needed for MIST + MILES + DL07 "
              f"({len(missing)} file(s)):\n  {shown}")
    return home


# ------------------------------------------------------------------------------ parameters
def fsps_params(theta, names) -> dict:
    """One parameter vector ``theta`` (d,) in the order ``names`` → python-fsps params.

    dust1 = dust1_fraction·dust2; fagn, agn_tau, duste_gamma = 10**(log value); ``zred`` is passed
    to FSPS *only* so that its IGM absorption (Madau 1995, applied to the rest-frame spectrum as a
    function of λ_rest(1+z)) is computed; FSPS still returns rest-frame λ and L_ν, which
    :class:`FSPSBackend` redshifts itself with WMAP9 distances (FSPS's own cosmology is not used).
    ``gas_logu`` and the other constants are in :data:`FSPS_SETTINGS`.
    """
    p = dict(zip(names, np.asarray(theta, float).tolist()))
    return {
        "logzsol": p["logzsol"], "dust2": p["dust2"], "dust_index": p["dust_index"],
        "dust1": p["dust1_fraction"] * p["dust2"], "fagn": 10.0 ** p["log_fagn"],
        "agn_tau": 10.0 ** p["log_agn_tau"], "gas_logz": p["gas_logz"], "zred": p["zred"],
        "duste_qpah": p["duste_qpah"], "duste_umin": p["duste_umin"],
        "duste_gamma": 10.0 ** p["log_duste_gamma"],
    }


def sfh_table(theta, names) -> tuple[np.ndarray, np.ndarray]:
    """Tabular SFH for ``StellarPopulation.set_tabular_sfh``: (age since the Big Bang [Gyr] (14,),
    SFR [Msun/yr] (14,)), constant within the 7 bins of :mod:`sedhpc.model.sfh`.

    FSPS treats consecutive table points as linear-SFR segments and forms no stars outside the
    table (csp_gen.f90), so every inner bin edge a is written twice, at a − δ with the older bin's SFR and a + δ with the younger
    one's (δ = 1e-5 of the shortest bin). The trapezoid over the table then equals the step
    function's integral exactly, Σ SFR_i Δt_i = 10**logmass. The table runs from age 0 (lookback
    t_univ) to t_univ − 1 yr (the youngest edge, lookback 10**0 yr, as in Prospector).
    """
    p = dict(zip(names, np.asarray(theta, float).tolist()))
    z = p["zred"]
    ratios = [p[f"logsfr_ratios_{i}"] for i in range(1, sfh.NBINS)]
    lookback = 10.0 ** sfh.bin_edges([z])[0]  # (8,) yr, youngest first
    masses = sfh.bin_masses([p["logmass"]], [ratios], [z])[0]
    rate = masses / np.diff(lookback)  # Msun/yr, youngest first
    tuniv = float(age_yr(z))
    edges = (tuniv - lookback[::-1]) / 1e9  # Gyr since Big Bang, oldest first; edges[0] = 0
    edges[0] = 0.0
    sfr = rate[::-1]
    delta = 1e-5 * np.min(np.diff(edges))
    inner = edges[1:-1]
    age = np.concatenate([[edges[0]], np.ravel(np.column_stack([inner - delta, inner + delta])),
                          [edges[-1]]])
    return age, np.repeat(sfr, 2)


# ---------------------------------------------------------------------------------- backend
_SP_CACHE: dict = {}  # settings → StellarPopulation; one per process, never pickled


def _stellar_population(settings: dict):
    key = tuple(sorted(settings.items()))
    if key not in _SP_CACHE:
        import fsps
        _SP_CACHE[key] = fsps.StellarPopulation(**settings)
    return _SP_CACHE[key]


class FSPSBackend(SPSBackend):
    """python-fsps Prospector-α SPS. Built once per process (FSPS set-up ≈ 20 s, ≈ 0.7 GB);
    the ``StellarPopulation`` is cached at module level and not pickled.

    ``spectrum(theta)`` sets the FSPS parameters (:func:`fsps_params`) and the tabular SFH
    (:func:`sfh_table`), computes the rest-frame spectrum at tage = t_univ(z) (WMAP9) and returns
    observed λ = λ_rest (1+z) [Å], f_λ [erg s⁻¹ cm⁻² Å⁻¹] with
    f_ν,obs(λ_obs) = (1+z) L_ν(λ_rest) / (4π D_L²), f_λ = f_ν c / λ_obs², D_L from WMAP9, and
    log10 mfrac = log10(surviving stellar mass / mass formed) from FSPS. L_ν is rescaled by
    10**logmass / FSPS ``formed_mass`` so the spectrum is for exactly the model's mass formed.
    """

    name = "fsps"

    def __init__(self, model: Model | None = None, filters=None, env=os.environ):
        model = model or get_model("prospector_alpha")
        if filters is None:
            raise ValueError("FSPSBackend needs filters: a sedhpc.photometry.FilterSet")
        super().__init__(model, filters)
        self.sps_home = check_sps_home(env)  # before anything from python-fsps is imported
        if os.environ.get("SPS_HOME") != str(env["SPS_HOME"]):
            os.environ["SPS_HOME"] = str(env["SPS_HOME"])  # FSPS reads the process environment
        from fsps.fsps import driver  # import runs python-fsps's own (weaker) check only

        built = tuple(s.decode().strip() if isinstance(s, bytes) else str(s).strip()
                      for s in driver.get_libraries())
        if tuple(x.lower() for x in built) != tuple(x.lower() for x in LIBRARIES):
            raise FSPSDataError(
                f"python-fsps was compiled with isochrones/spectra/dust-emission {built}, but "
                f"{LIBRARIES} are needed (MODEL.md; the PyPI wheel uses C3K_LR). Rebuild it: "
                "`FFLAGS=\"-DMIST=1 -DMILES=1 -DC3K_LR=0 -DC3K_HR=0\" python -m pip install fsps "
                "--no-binary fsps`.")
        self.libraries = built
        self.sp = _stellar_population(FSPS_SETTINGS)

    def spectrum(self, theta):
        names = self.model.names
        theta = np.asarray(theta, float)
        z = float(theta[names.index("zred")])
        if not z > 0:
            raise ValueError(f"FSPSBackend needs zred > 0 (luminosity distance); got {z}")
        sp = self.sp
        for k, v in fsps_params(theta, names).items():
            sp.params[k] = v
        sp.set_tabular_sfh(*sfh_table(theta, names))  # always before get_spectrum (sfh=3)
        wave, lnu = sp.get_spectrum(tage=float(age_yr(z)) / 1e9, peraa=False)  # Lsun/Hz, rest
        formed = float(sp.formed_mass)
        lnu = lnu * (10.0 ** theta[names.index("logmass")] / formed)
        dl = float(luminosity_distance_cm(z))
        wave_obs = wave * (1.0 + z)
        fnu = (1.0 + z) * lnu * LSUN_FSPS / (4.0 * np.pi * dl ** 2)  # erg/s/cm²/Hz
        flam = fnu * C_AA / wave_obs ** 2
        return wave_obs, flam, float(np.log10(sp.stellar_mass / formed))
