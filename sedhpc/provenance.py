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
