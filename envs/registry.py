"""Name -> env factory registry behind ``envs.make``.

Factories may be registered as ``"module:attribute"`` strings, imported on first use, so that
``import envs`` loads neither torch, Warp nor MuJoCo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from envs.options import Rule, check_value, parse_text, parse_untyped, rules

_FACTORIES: dict[str, Callable[..., Any] | str] = {}

MAKE_ARGS = {
    "num_envs": Rule(int, minimum=1),
    "seed": Rule(int, minimum=0, maximum=2**64),
    "device": Rule(str),
}
"""Rules of the arguments every ``make`` takes besides the task's own overrides."""


def register(name: str, factory: Callable[..., Any] | str) -> None:
    """Register ``factory(num_envs=, device=, seed=, **overrides)`` (or its ``"module:attr"``) as ``name``."""
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Registered env names, sorted."""
    return sorted(_FACTORIES)


def factory(name: str) -> Callable[..., Any]:
    """The factory registered as ``name``, imported if it was registered by path."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(names())}")
    entry = _FACTORIES[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = _FACTORIES[name] = getattr(importlib.import_module(module), attribute)
    return entry


def make(name: str, num_envs: int = 1, device: str = "cpu", seed: int = 0, **overrides: Any) -> Any:
    """Create the batched torch env ``name``.

    Raises ValueError naming the valid choices for an unknown ``name``, and naming the key and the
    accepted values for an unknown override or a value of the wrong type or range.
    """
    make_env = factory(name)
    if not isinstance(device, str) and hasattr(device, "type"):
        device = str(device)  # a torch.device, by its name
    num_envs = check_value("num_envs", num_envs, MAKE_ARGS["num_envs"])
    seed = check_value("seed", seed, MAKE_ARGS["seed"])
    device = check_value("device", device, MAKE_ARGS["device"])
    return make_env(num_envs=num_envs, device=device, seed=seed, **overrides)


def parse_override(name: str, key: str, text: str) -> Any:
    """Convert CLI text for ``key`` of env ``name`` into the typed value ``make`` accepts.

    Uses the same table as ``make`` (the env's config dataclass plus ``num_envs``/``seed``/``device``):
    bools take JSON ``true``/``false`` or the words in any case, numbers JSON numbers, ``null`` means
    "the task's value" where allowed. Raises ValueError for an unknown key or a bad value. Envs
    registered with a plain factory that declares no ``config_class`` get JSON-or-string.
    """
    if key in MAKE_ARGS:
        return parse_text(key, text, MAKE_ARGS[key])
    config_class = getattr(factory(name), "config_class", None)
    if config_class is None:
        return parse_untyped(text)
    table = rules(config_class)
    if key not in table:
        valid = ", ".join([*MAKE_ARGS, *table])
        raise ValueError(f"unknown override {key!r} for env {name!r}; valid keys: {valid}")
    return parse_text(key, text, table[key])
