"""Resolved run settings: the algorithm registry, budget presets and ``--set key=value`` overrides.

A run's settings are one nested dict with three sections (``config.json["settings"]``):

- ``env``: ``num_envs`` plus keyword overrides passed to ``envs.make`` (a ``None`` value means "the env's
  default" and is not passed). Any ``env.<name>`` key may be set; the env rejects names it does not know.
- ``algo``: the algorithm's config dataclass as a dict (e.g. :class:`algos.shac.SHACConfig`).
- ``run``: :class:`RunConfig` (evaluation protocol).

Settings are resolved as: the algorithm variant's published defaults for the env, then the budget preset,
then ``--set`` overrides in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import torch

from algos.dataset import EpisodeRecorder
from algos.pwm import DEFAULT_MODE, MODES, PWM, PWMConfig
from algos.pwm import published_config as pwm_published_config
from algos.shac import DEFAULT_VARIANT, SHAC, VARIANTS, SHACConfig, published_config

PRESETS = ("smoke", "cpu", "paper")
PRESET_HELP = {
    "smoke": "seconds: tiny nets, 4 envs x 8 steps x 4 iterations, 32-step episodes, 2 eval episodes",
    "cpu": "one CPU core, 64 envs: SHAC 32 steps x 1000 iterations (2.05M env-steps); "
    "PWM online 250 / offline 500 iterations",
    "paper": "the published budget of the variant for the env (e.g. SHAC pwm Ant: 128 x 32 x 2000 = 8.2M)",
}
CPU_NUM_ENVS = 64
CPU_ITERATIONS = 1000
ENV_DEFAULTS = {"early_termination": None, "stochastic_init": None, "episode_length": None}


class ConfigError(ValueError):
    """Invalid run settings (unknown key, bad value, unknown variant); the CLI exits with code 2."""


@dataclass(frozen=True)
class RunConfig:
    eval_episodes: int = 16
    """Deterministic evaluation episodes per evaluation point: one env each, run to its first episode end."""
    eval_interval: float = 0.02
    """Evaluate every this fraction of the env-step budget, plus at the start and at the end."""
    torch_threads: int | None = None
    """torch intra-op threads (None: torch's default). Bitwise CPU reproducibility needs the same value."""

    def __post_init__(self) -> None:
        if self.eval_episodes < 1:
            raise ConfigError(f"run.eval_episodes must be >= 1, got {self.eval_episodes}")
        if not 0.0 < self.eval_interval <= 1.0:
            raise ConfigError(f"run.eval_interval must be in (0, 1], got {self.eval_interval}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"run.torch_threads must be >= 1 or null, got {self.torch_threads}")


class Trainer(Protocol):
    """What the harness needs from an algorithm (``algos.shac.SHAC`` is one)."""

    iteration: int
    max_iterations: int
    env_steps_per_iteration: int
    recorder: EpisodeRecorder | None
    """Set by the harness (``--save-data``): receives every training transition."""

    def train_iteration(self) -> dict[str, float]: ...

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor: ...

    def nonfinite_totals(self) -> dict[str, int]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: variants, defaults per (variant, env, preset), and construction."""

    variants: tuple[str, ...]
    default_variant: str
    defaults: Callable[[str, str, str], tuple[dict[str, Any], int]]
    """(variant, env, preset) -> (algo settings, number of training envs)."""
    build: Callable[[Any, dict[str, Any], int], Trainer]
    """(training env, algo settings, seed) -> trainer; raises ValueError for invalid settings."""


def _shac_defaults(variant: str, env: str, preset: str) -> tuple[dict[str, Any], int]:
    config, num_envs = published_config(variant, env)
    if preset == "cpu":
        config, num_envs = replace(config, max_epochs=CPU_ITERATIONS), CPU_NUM_ENVS
    elif preset == "smoke":
        small = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "critic_iterations": 2}
        config, num_envs = replace(config, horizon=8, max_epochs=4, **small), 4
    return config.to_dict(), num_envs


def _build_shac(env: Any, settings: dict[str, Any], seed: int) -> SHAC:
    return SHAC(env, SHACConfig.from_dict(settings), seed)


# One CPU core: a paper-size world-model step (batch 256 x 17) takes ~1.5 s, a PWM iteration without model
# steps ~1.6 s; online adds 8 model steps per iteration (~13 s in all), so its CPU budget is small.
PWM_CPU_EPOCHS = {"online": 250, "offline": 500}


def _pwm_defaults(variant: str, env: str, preset: str) -> tuple[dict[str, Any], int]:
    config, num_envs = pwm_published_config(variant, env)
    if preset == "cpu":
        config, num_envs = replace(config, max_epochs=PWM_CPU_EPOCHS[variant]), CPU_NUM_ENVS
    elif preset == "smoke":
        small = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "critic_iterations": 2}
        # wm_size "tiny" matches bench.pretrain --preset smoke.
        tiny_model = {"wm_size": "tiny", "wm_batch_size": 16, "wm_bootstrap_steps": 4}
        config = replace(config, horizon=8, max_epochs=4, **tiny_model, **small)
        num_envs = 4
    return config.to_dict(), num_envs


def _build_pwm(env: Any, settings: dict[str, Any], seed: int) -> PWM:
    return PWM(env, PWMConfig.from_dict(settings), seed)


ALGORITHMS: dict[str, Algorithm] = {
    "shac": Algorithm(VARIANTS, DEFAULT_VARIANT, _shac_defaults, _build_shac),
    "pwm": Algorithm(MODES, DEFAULT_MODE, _pwm_defaults, _build_pwm),
}


def resolve_settings(algo: str, env: str, preset: str, variant: str | None = None) -> dict[str, Any]:
    """Default settings of ``algo`` (``variant``, or its default) for ``env`` under ``preset``."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algo {algo!r}; valid: {', '.join(ALGORITHMS)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    entry = ALGORITHMS[algo]
    variant = variant or entry.default_variant
    if variant not in entry.variants:
        raise ConfigError(f"unknown variant {variant!r} for {algo}; valid: {', '.join(entry.variants)}")
    algo_settings, num_envs = entry.defaults(variant, env, preset)
    env_settings: dict[str, Any] = {"num_envs": num_envs, **ENV_DEFAULTS}
    run = RunConfig()
    if preset == "cpu":
        run = RunConfig(torch_threads=1)
    elif preset == "smoke":
        env_settings["episode_length"] = 32
        run = RunConfig(eval_episodes=2, eval_interval=0.5, torch_threads=1)
    return _jsonable({"env": env_settings, "algo": algo_settings, "run": asdict(run)})


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def parse_value(text: str) -> Any:
    """JSON if it parses (numbers, true/false/null, lists, quoted strings), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _flat_keys(settings: dict[str, Any]) -> list[str]:
    return sorted(f"{section}.{key}" for section, values in settings.items() for key in values)


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


def apply_overrides(settings: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """A copy of ``settings`` with ``section.key=value`` assignments applied in order.

    Keys must exist in the settings, except under ``env`` (any env override may be named).
    """
    settings = _jsonable(settings)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
        known = section in settings and name in settings[section]
        if not known and section != "env":
            valid = ", ".join(_flat_keys(settings))
            raise ConfigError(f"unknown key {key!r}; valid keys: {valid}, env.<any env override>")
        value = parse_value(text)
        settings[section][name] = _check_type(key, value, settings[section][name]) if known else value
    return settings


def run_config(settings: dict[str, Any]) -> RunConfig:
    return RunConfig(**settings["run"])


def env_overrides(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``env`` section without ``num_envs`` and without unset (None) entries: kwargs for envs.make."""
    return {k: v for k, v in settings["env"].items() if k != "num_envs" and v is not None}
