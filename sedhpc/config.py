"""Configuration in one place: defaults < TOML file < ``SEDHPC_<SECTION>_<KEY>`` environment
variables < command-line options, validated against a dataclass when loaded and recorded (as a
plain dict) in every output file.

A TOML file holds one table per command, e.g.::

    [generate]
    model = "embedded"
    bands = ["sdss_u0", "sdss_g0", "sdss_r0"]
    n = 100000
    zrange = [0.01, 3.0]
    seed = 42
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type."""


def _coerce(name: str, value, kind):
    """Convert ``value`` (from TOML, environment or CLI) to the field type ``kind``."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if value is None:
        if type(None) in args or kind is typing.Any:
            return None
        raise ConfigError(f"setting {name!r} is required")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0]) if len(inner) == 1 else value
    try:
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            item = args[0] if args else str
            out = [_coerce(name, v, item) for v in value]
            return tuple(out) if origin is tuple else out
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} = {value!r} is not a valid {kind}") from None
    return value


def load(cls, section: str, path: str | os.PathLike | None = None, overrides: dict | None = None,
         env=os.environ):
    """Build the dataclass ``cls`` from its defaults, the ``[section]`` table of the TOML file
    ``path``, environment variables ``SEDHPC_<SECTION>_<FIELD>`` and ``overrides`` (options
    given on the command line; None values are ignored). Unknown keys are refused."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
        table = doc.get(section, {})
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {unknown} in [{section}]; known: "
                              f"{sorted(fields)}")
        values.update(table)
    prefix = f"SEDHPC_{section.upper()}_"
    for key, val in env.items():
        if key.startswith(prefix):
            name = key[len(prefix):].lower()
            if name not in fields:
                raise ConfigError(f"environment variable {key}: unknown setting {name!r}; "
                                  f"known: {sorted(fields)}")
            values[name] = val
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _coerce(name, values[name], hints[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"setting {name!r} is required (command line, [{section}] in the "
                              f"config file, or {prefix}{name.upper()})")
    cfg = cls(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def as_dict(cfg) -> dict:
    """JSON-able dict of a config dataclass (tuples become lists, paths strings)."""
    out = {}
    for k, v in dataclasses.asdict(cfg).items():
        out[k] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
    return out


def differences(stored: dict, current: dict, keys) -> list[str]:
    """Settings among ``keys`` whose values differ: 'name: stored → current' strings."""
    out = []
    for k in keys:
        a, b = stored.get(k), current.get(k)
        if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
            a, b = list(a or []), list(b or [])
        if a != b:
            out.append(f"{k}: {stored.get(k)!r} (stored) → {current.get(k)!r} (now)")
    return out
