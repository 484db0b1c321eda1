"""Normalisation references per env (data) and score normalisation by env name.

The one place that knows env names for scoring; :mod:`bench.stats` stays free of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from bench.stats import ArrayLike

# PPO's maximum training return per env, the PWM paper's normaliser ("perf_scales" in imgeorgiev/PWM
# results/results.ipynb; evaluation spec §3). Only for reproducing the paper (``--normalize ppo_max``).
PPO_MAX_RETURNS: dict[str, float] = {
    "hopper": 4742.30,
    "ant": 6604.66,
    "anymal": 12028.99,
    "humanoid": 7292.79,
    "snuhumanoid": 4246.04,
}

# warpbench's own min-max reference scores, env -> (R_min random policy, R_ref fixed-budget reference run).
# Versioned constants (evaluation spec §1); filled once the reference runs exist. Until then pass explicit
# references (``bench.report --reference FILE``).
REFERENCE_SCORES_VERSION = "0 (none recorded yet)"
REFERENCE_SCORES: dict[str, tuple[float, float]] = {}

SCHEMES = ("none", "minmax", "ppo_max")

_ENV_ALIASES = {"humanoidsnu": "snuhumanoid", "humanoidmtu": "snuhumanoid", "snu": "snuhumanoid"}


def env_key(env: str) -> str:
    """Canonical env key for constant lookup: lower case, letters and digits only, aliases resolved."""
    key = re.sub(r"[^a-z0-9]", "", env.lower())
    key = key.removesuffix("env")
    return _ENV_ALIASES.get(key, key)


def normalize_minmax(returns: ArrayLike, r_min: float, r_ref: float) -> np.ndarray:
    """Min-max normalised score ``(R - R_min) / (R_ref - R_min)``."""
    if r_ref == r_min:
        raise ValueError("reference score equals the minimum score; cannot normalise")
    return (np.asarray(returns, dtype=float) - r_min) / (r_ref - r_min)


def ppo_max(env: str) -> float:
    """PPO's maximum training return on ``env`` (the PWM paper's normaliser); KeyError if unknown."""
    key = env_key(env)
    if key not in PPO_MAX_RETURNS:
        raise KeyError(f"no PPO maximum for env {env!r}; known: {', '.join(PPO_MAX_RETURNS)}")
    return PPO_MAX_RETURNS[key]


def normalize_ppo_max(returns: ArrayLike, env: str) -> np.ndarray:
    """The PWM paper's normalisation: divide by PPO's maximum training return on ``env``."""
    return np.asarray(returns, dtype=float) / ppo_max(env)


def reference_for(env: str, references: Mapping[str, Sequence[float]] | None = None) -> tuple[float, float]:
    """``(R_min, R_ref)`` of ``env`` from ``references`` (matched by :func:`env_key`) or stored constants."""
    table = {env_key(k): v for k, v in (REFERENCE_SCORES if references is None else references).items()}
    key = env_key(env)
    if key not in table:
        raise KeyError(f"no reference scores for env {env!r}")
    r_min, r_ref = table[key]
    return float(r_min), float(r_ref)


def normalize(
    returns: ArrayLike, env: str, scheme: str, references: Mapping[str, Sequence[float]] | None = None
) -> np.ndarray:
    """Normalise raw ``returns`` of ``env`` with ``scheme`` in :data:`SCHEMES`."""
    if scheme == "none":
        return np.asarray(returns, dtype=float)
    if scheme == "minmax":
        return normalize_minmax(returns, *reference_for(env, references))
    if scheme == "ppo_max":
        return normalize_ppo_max(returns, env)
    raise ValueError(f"unknown normalisation {scheme!r}; choose {', '.join(SCHEMES)}")
