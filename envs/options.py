"""One table of env settings: each config field's type and range, checked for the API and the CLI alike.

A task's config dataclass declares its fields with :func:`setting`; :func:`build_config` checks keyword
overrides against it when the env is made (a bool field takes a bool, an int field an int, ...), and
:func:`parse_text` turns CLI text into the same typed value, so ``--set env.early_termination=False`` and
``envs.make(..., early_termination=False)`` mean the same thing and ``"False"`` is never truthy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import types
import typing
from typing import Any

import numpy as np

_BOOL_WORDS = {"true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class Rule:
    """Type and range of one setting (the type comes from the dataclass annotation)."""

    kind: type
    """bool, int, float or str."""
    optional: bool = False
    """None is allowed (it means "the task's value")."""
    minimum: float | None = None
    """Inclusive lower bound (numbers)."""
    positive: bool = False
    """Strictly greater than 0 (numbers)."""
    maximum: float | None = None
    """Exclusive upper bound (numbers)."""
    choices: tuple[str, ...] | None = None
    """Allowed values (strings)."""
    path: bool = False
    """A filesystem path: str or os.PathLike, stored as str."""

    def describe(self) -> str:
        """What the rule accepts, for error messages."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind is bool:
            text = "a bool (true/false)"
        else:
            text = {int: "an int", float: "a number", str: "a string"}[self.kind]
            if self.positive:
                text += " > 0"
            if self.minimum is not None:
                text += f" >= {self.minimum:g}"
            if self.maximum is not None:
                text += f" < {self.maximum}"
        return text + (" or null" if self.optional else "")


def setting(default: Any, **rule: Any) -> Any:
    """A dataclass field with a range rule, e.g. ``episode_length: int = setting(1000, minimum=1)``."""
    return dataclasses.field(default=default, metadata={"rule": rule})


def _annotation_rule(annotation: Any, extra: dict[str, Any]) -> Rule:
    args = typing.get_args(annotation)
    optional = (typing.get_origin(annotation) in (typing.Union, types.UnionType)) and type(None) in args
    kinds = [a for a in args if a is not type(None)] if optional else [annotation]
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        raise TypeError(f"unsupported setting type {annotation!r}")
    return Rule(kind=kinds[0], optional=optional, **extra)


def rules(config_class: type) -> dict[str, Rule]:
    """Field name -> :class:`Rule` of a config dataclass, in field order."""
    hints = typing.get_type_hints(config_class)
    return {
        f.name: _annotation_rule(hints[f.name], dict(f.metadata.get("rule", {})))
        for f in dataclasses.fields(config_class)
    }


def check_value(key: str, value: Any, rule: Rule) -> Any:
    """``value`` if it satisfies ``rule`` (ints widen to float, paths become str); else ValueError."""

    def fail(why: str = "") -> ValueError:
        return ValueError(f"{key} must be {rule.describe()}, got {value!r}{why}")

    if value is None:
        if rule.optional:
            return None
        raise fail()
    if rule.kind is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if rule.kind is str:
        if rule.path and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or (rule.choices and value not in rule.choices):
            raise fail()
        return value
    # Numbers: bool is an int subclass in Python, but never a number here; numpy scalars are accepted.
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise fail()
    if rule.kind is int:
        if not isinstance(value, numbers.Integral):
            raise fail()
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise fail()
    if rule.positive and not value > 0:
        raise fail()
    if rule.minimum is not None and value < rule.minimum:
        raise fail()
    if rule.maximum is not None and value >= rule.maximum:
        raise fail()
    return value


def build_config(config_class: type, overrides: dict[str, Any]) -> Any:
    """``config_class(**overrides)`` after checking every key, type and range (ValueError on a problem)."""
    table = rules(config_class)
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; valid keys: {', '.join(table)}")
    return config_class(**{key: check_value(key, value, table[key]) for key, value in overrides.items()})


def parse_text(key: str, text: str, rule: Rule) -> Any:
    """CLI text -> a value checked against ``rule``.

    Bools take JSON ``true``/``false`` or the words in any case (``False``, ``TRUE``); numbers take JSON
    numbers; ``null``/``none`` gives None where allowed; strings are taken as written (a JSON-quoted
    string is unquoted).
    """
    stripped = text.strip()
    if rule.optional and stripped.lower() in ("null", "none"):
        return None
    if rule.kind is bool:
        if stripped.lower() not in _BOOL_WORDS:
            raise ValueError(f"{key} must be {rule.describe()}, got {text!r}")
        return _BOOL_WORDS[stripped.lower()]
    if rule.kind is str:
        value: Any = text
        if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
            value = json.loads(stripped)
        return check_value(key, value, rule)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        raise ValueError(f"{key} must be {rule.describe()}, got {text!r}") from None
    return check_value(key, value, rule)


def parse_untyped(text: str) -> Any:
    """JSON if it parses, else the raw string: for envs that declare no settings table."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
