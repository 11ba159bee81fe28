"""Provenance recorded in every output file: package version, git hash, config, format version."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from pathlib import Path

from . import __version__


@functools.lru_cache(maxsize=1)
def git_hash() -> str:
    """The git commit of the sedhpc source tree, '+dirty' if modified, or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty=+dirty",
                              "--abbrev=40"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def provenance(kind: str, format_version: int, config: dict | None = None) -> dict:
    """Attributes for an output file: ``{'sedhpc_version', 'git_hash', 'format', ...}``.

    ``config`` is stored as JSON so any reader (h5py, astropy) can recover it.
    """
    return {
        "sedhpc_kind": kind,
        "sedhpc_format_version": int(format_version),
        "sedhpc_version": __version__,
        "git_hash": git_hash(),
        "python": platform.python_version(),
        "config_json": json.dumps(config or {}, sort_keys=True, default=str),
    }


def _finite_or_none(obj):
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def json_text(obj) -> str:
    """Strict JSON for summary files: NaN and ±inf (an empty redshift bin, a statistic with no
    galaxies) become ``null``, so ``jq``, JavaScript and other strict readers load them;
    numpy scalars and arrays are written as numbers and lists."""
    def number(v):
        return v.tolist() if hasattr(v, "tolist") else float(v)
    return json.dumps(_finite_or_none(json.loads(json.dumps(obj, default=number))),
                      indent=1, allow_nan=False)
