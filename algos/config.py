"""Config dataclasses to and from JSON dicts (``config.json`` settings), nested configs included."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from a JSON dict: lists become tuples, nested dicts nested configs.

    Unknown keys raise ValueError naming the valid ones; missing keys take the field defaults.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        what = cls.__name__.removesuffix("Config")
        raise ValueError(f"unknown {what} setting(s) {unknown}; valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        nested = hints[name]
        if dataclasses.is_dataclass(nested) and isinstance(value, dict):
            value = config_from_dict(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """ValueError naming the valid choices unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def check_at_least_one(config: Any, *names: str) -> None:
    """ValueError naming the first of the fields ``names`` of ``config`` that is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")


class JsonConfig:
    """Mixin for config dataclasses: ``from_dict`` / ``to_dict`` through JSON-ready dicts."""

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Build from a (JSON) dict; lists become tuples, nested dicts configs; unknown keys raise."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)
