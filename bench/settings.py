"""Run settings as nested JSON dicts and the one ``--set section.key=value`` grammar every CLI uses.

Settings are ``{section: {key: value}}`` (``config.json["settings"]``); a value may itself be a nested dict
(e.g. PWM's ``algo.world_model``), addressed with more dots: ``--set algo.world_model.latent_dim=64``.
Where the settings have a single section (``bench.collect``: ``env``), the section may be left out.
Values of ``env`` keys are parsed by the env's own settings table (``envs.parse_override``), the one
``envs.make`` checks against; the other sections keep the JSON type of their current values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import envs


class ConfigError(ValueError):
    """Invalid settings or arguments (unknown key, bad value or path); the CLIs exit with code 2."""


def parse_value(text: str) -> Any:
    """An ``algo``/``run`` value: JSON if it parses (numbers, true/false/null, lists, quoted strings), the
    words true/false in any case as booleans, else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text


def jsonable(value: Any) -> Any:
    """A deep copy with JSON types only (tuples become lists)."""
    return json.loads(json.dumps(value))


def flat_keys(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """Every assignable dotted key, sorted (nested dicts contribute their leaves)."""
    keys = []
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return sorted(keys)


def _check_type(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the JSON type of ``default`` (int -> float allowed; None default: anything)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{key} expects a value like {json.dumps(default)}, got {json.dumps(value)}")
    return value


def apply_overrides(settings: dict[str, Any], assignments: Iterable[str], env: str) -> dict[str, Any]:
    """A copy of ``settings`` with ``section.key=value`` assignments applied in order.

    ``env.<key>`` values are parsed and checked by the settings table of the env named ``env``
    (``envs.parse_override``), so the CLI accepts exactly what ``envs.make`` does; ``seed`` and ``device``
    come from their own options. Other keys must exist in the settings and keep their value's JSON type.
    """
    settings = jsonable(settings)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if sep and "." not in key and len(settings) == 1:
            key = f"{next(iter(settings))}.{key}"
        path = key.split(".")
        if not sep or len(path) < 2 or not all(path):
            raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
        parent: Any = settings
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        name = path[-1]
        if len(path) == 2 and path[0] == "env" and "env" in settings:
            if name in ("seed", "device"):
                raise ConfigError(f"env.{name} is set by --{name}, not --set")
            try:
                parent[name] = envs.parse_override(env, name, text)
            except ValueError as error:
                raise ConfigError(f"--set {assignment}: {error}") from error
        elif isinstance(parent, dict) and name in parent:
            parent[name] = _check_type(key, parse_value(text), parent[name])
        else:
            raise ConfigError(
                f"unknown key {key!r}; valid keys: {', '.join(flat_keys(settings))}, env.<setting>"
            )
    return settings
