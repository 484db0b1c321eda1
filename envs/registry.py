"""Name -> env factory registry behind ``envs.make``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any]) -> None:
    """Register ``factory(num_envs=, device=, seed=, **overrides)`` under ``name``."""
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Registered env names, sorted."""
    return sorted(_FACTORIES)


def make(name: str, num_envs: int = 1, device: str = "cpu", seed: int = 0, **overrides: Any) -> Any:
    """Create the batched torch env ``name``.

    Raises ValueError naming the valid choices for an unknown ``name``; unknown ``overrides`` are
    rejected by the task itself with the list of valid keys.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(names())}")
    return _FACTORIES[name](num_envs=num_envs, device=device, seed=seed, **overrides)
