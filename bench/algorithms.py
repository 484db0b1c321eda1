"""The algorithm registry: every algorithm ``bench.run`` can train, its config class and how it is built.

Adding an algorithm: one file in ``algos/`` (a config dataclass and a class following :class:`Trainer`),
one entry in :data:`ALGORITHMS`, and its published settings in ``bench.presets``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from algos.bptt import BPTT, BPTTConfig
from algos.dataset import EpisodeDataset, EpisodeRecorder
from algos.ppo import PPO, PPOConfig
from algos.pwm import PWM, PWMConfig
from algos.sac import SAC, SACConfig
from algos.shac import SHAC, SHACConfig
from algos.tdmpc2 import TDMPC2, TDMPC2Config
from algos.wm_training import PretrainedWorldModel
from bench.settings import ConfigError


class Trainer(Protocol):
    """What the harness needs from an algorithm (``algos.shac.SHAC`` is one).

    Optional: ``export_world_model() -> algos.wm_training.WorldModelTrainer`` (TD-MPC2); the harness then
    writes the trained world model at every checkpoint as ``checkpoints/world_model.pt``, which PWM loads.
    """

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


@dataclass
class RunInputs:
    """Objects a run starts from; the CLI layer loads them from the paths recorded in ``config.json``."""

    world_model: PretrainedWorldModel | None = None
    """A pretrained world model (``algos.wm_training.load_world_model``)."""
    dataset: EpisodeDataset | None = None
    """An episode dataset (``algos.dataset.load_dataset``)."""

    def given(self) -> list[str]:
        return [name for name in ("world_model", "dataset") if getattr(self, name) is not None]


@dataclass(frozen=True)
class Algorithm:
    config: type
    """The config dataclass (``from_dict`` / ``to_dict``)."""
    build: Callable[[Any, Any, int, RunInputs], Trainer]
    """(training env, config, seed, inputs) -> trainer; raises ValueError for invalid settings."""
    inputs: tuple[str, ...] = ()
    """The :class:`RunInputs` it accepts."""


ALGORITHMS: dict[str, Algorithm] = {
    "shac": Algorithm(SHACConfig, lambda env, config, seed, inputs: SHAC(env, config, seed)),
    "pwm": Algorithm(
        PWMConfig,
        lambda env, config, seed, inputs: PWM(env, config, seed, inputs.world_model, inputs.dataset),
        inputs=("world_model", "dataset"),
    ),
    "ppo": Algorithm(PPOConfig, lambda env, config, seed, inputs: PPO(env, config, seed)),
    "sac": Algorithm(SACConfig, lambda env, config, seed, inputs: SAC(env, config, seed)),
    "bptt": Algorithm(BPTTConfig, lambda env, config, seed, inputs: BPTT(env, config, seed)),
    "tdmpc2": Algorithm(TDMPC2Config, lambda env, config, seed, inputs: TDMPC2(env, config, seed)),
}


def check_algo(algo: str) -> Algorithm:
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algo {algo!r}; valid: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def build_trainer(
    algo: str, env: Any, settings: dict[str, Any], seed: int, inputs: RunInputs | None = None
) -> Trainer:
    """The trainer of ``algo`` with its ``algo`` settings section; ConfigError for invalid settings."""
    entry = check_algo(algo)
    inputs = inputs or RunInputs()
    unexpected = [name for name in inputs.given() if name not in entry.inputs]
    if unexpected:
        raise ConfigError(f"{algo} takes no {', '.join(unexpected)}")
    try:
        return entry.build(env, entry.config.from_dict(settings), seed, inputs)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"invalid {algo} settings: {error}") from error
