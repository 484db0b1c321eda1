"""Training the world model: the single-task loss (algorithms §3.2), optimiser steps and pretraining (§3.4).

Loss over a batch of sub-trajectories s_0..s_H, a_0..a_{H-1}, r_0..r_{H-1} (time-major inside): targets
z̄_{t+1} = E(s_{t+1}) without gradient, latent rollout z_0 = E(s_0), z_{t+1} = F(z_t, a_t) (no teacher
forcing), L_dyn = sum_t rho^t MSE(z_{t+1}, z̄_{t+1}), L_rew = mean over t and batch of
rho^t l(R(z_t, a_t), r̃_t) (l = squared error, or two-hot cross-entropy), r̃ = rew_rms-normalised reward;
L = (L_dyn + L_rew) / H. A model with a termination head (our extension, TD-MPC2's term) adds
``termination_coef`` * mean BCE(T(z_{t+1}), would_terminate_t) over the rolled-out latents, when the batch
carries ``would_terminate`` flags (a dataset's, or online PWM's replay when it uses the head).
Adam (default betas), non-finite gradient entries zeroed and counted, grad-norm clip, step.

Pretraining fits ``rew_rms`` on every reward of the dataset once, then takes gradient steps on uniformly
sampled sub-trajectories. The checkpoint format written by ``bench.pretrain`` and read by ``algos.pwm`` is
:func:`world_model_checkpoint` / :func:`load_world_model` (a :class:`PretrainedWorldModel`).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from algos.config import JsonConfig
from algos.dataset import EpisodeDataset, sample_subtrajectories
from algos.networks import zero_nonfinite_gradients
from algos.normalizers import RunningMeanStd
from algos.world_model import Task, WorldModel, WorldModelConfig

CHECKPOINT_FORMAT = "warpbench-world-model"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class WMTrainConfig(JsonConfig):
    horizon: int = 16
    """Sub-trajectory length H (H + 1 observations, H transitions)."""
    batch_size: int = 256
    """Sub-trajectories per gradient step."""
    rho: float = 0.99
    """Weight rho^t of step t in both loss terms (PWM uses its discount gamma)."""
    lr: float = 3e-4
    """Adam learning rate (default betas)."""
    grad_clip: float = 20.0
    """Max global norm of the world-model gradient."""
    rew_rms: bool = True
    """Regress rewards normalised by running statistics (rew_rms) instead of raw rewards."""
    termination_coef: float = 1.0
    """Weight of the termination head's BCE loss (models with a head; TD-MPC2: 1.0)."""
    value_coef: float = 0.0
    """Weight of the value-equivalence term (our extension; 0: off, as in the reference): at each rollout
    step, the squared gap between a critic's value of the model's latent and of the encoded real
    observation, over the batch's variance of the latter (so the weight does not depend on the critic's
    scale), rho^t-weighted and divided by H like the dynamics term. It trains the latent to be right where
    the critic reads it; only online PWM has a critic to pass (``train_step(value=...)``)."""

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.batch_size < 1:
            raise ValueError("horizon and batch_size must be >= 1")
        if self.value_coef < 0:
            raise ValueError(f"value_coef must be >= 0, got {self.value_coef}")


def world_model_loss(
    model: WorldModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    rho: float,
    task: Task = None,
    would_terminate: torch.Tensor | None = None,
    termination_coef: float = 1.0,
    value: Callable[[torch.Tensor], torch.Tensor] | None = None,
    value_coef: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, L_dyn / H, L_rew / H, L_term, L_value / H) for time-major obs [H+1, B, d], action [H, B, a],
    reward [H, B] and optional ``would_terminate`` [H, B] (the termination term needs it and a termination
    head; else 0). ``value`` maps latents [..., B, z] to values [..., B] for the value-equivalence term
    (``WMTrainConfig.value_coef``; its parameters should not require gradients); without it that term is 0."""
    horizon = action.shape[0]
    use_termination = would_terminate is not None and model.termination_head is not None
    with torch.no_grad():
        targets = model.encode(obs[1:], task)
    z = model.encode(obs[0], task)
    dynamics = obs.new_zeros(())
    latents, next_latents = [], []
    for t in range(horizon):
        latents.append(z)
        z = model.next(z, action[t], task)
        dynamics = dynamics + rho**t * F.mse_loss(z, targets[t])
        next_latents.append(z)
    # The reward head needs no step of the rollout: one call over all H steps (larger, faster matmuls).
    outputs = model.reward_output(torch.stack(latents), action, task)
    weights = rho ** torch.arange(horizon, device=obs.device, dtype=obs.dtype)
    reward_loss = (model.reward_loss(outputs, reward) * weights[:, None]).mean()
    loss = (dynamics + reward_loss) / horizon
    termination = obs.new_zeros(())
    if use_termination:
        logits = model.termination_logit(torch.stack(next_latents), task)
        termination = F.binary_cross_entropy_with_logits(logits, would_terminate.to(logits.dtype))
        loss = loss + termination_coef * termination
    value_loss = obs.new_zeros(())
    if value is not None and value_coef > 0:
        # A second rollout from the detached start latent: the term trains the dynamics, not the encoder
        # (which would move the real side's latents too).
        z = latents[0].detach()
        predicted_latents = []
        for t in range(horizon):
            z = model.next(z, action[t], task)
            predicted_latents.append(z)
        predicted = value(torch.stack(predicted_latents))
        with torch.no_grad():
            real = value(targets)
            variance = real.var(dim=1, keepdim=True).clamp_min(1e-8)
        value_loss = ((predicted - real).square() / variance).mean(dim=1) @ weights
        loss = loss + value_coef * value_loss / horizon
    return (
        loss,
        dynamics.detach() / horizon,
        reward_loss.detach() / horizon,
        termination.detach(),
        value_loss.detach() / horizon,
    )


class WorldModelTrainer:
    """A world model with its Adam optimiser, reward normaliser and dataset-sampling generator."""

    def __init__(self, world_model: WorldModel, config: WMTrainConfig, seed: int = 0) -> None:
        self.world_model = world_model
        self.config = config
        device = next(world_model.parameters()).device
        self.optimizer = torch.optim.Adam(world_model.parameters(), lr=config.lr)
        self.rew_rms = RunningMeanStd((), device=str(device)) if config.rew_rms else None
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.nonfinite_grad_steps = 0

    @property
    def device(self) -> torch.device:
        return next(self.world_model.parameters()).device

    def fit_reward_statistics(self, dataset: EpisodeDataset) -> None:
        """Merge every (finite) reward of ``dataset`` into ``rew_rms``."""
        if self.rew_rms is not None:
            self.rew_rms.update(torch.from_numpy(dataset.reward).to(self.device))

    def dataset_batch(self, dataset: EpisodeDataset) -> dict[str, torch.Tensor]:
        """A uniformly sampled batch of sub-trajectories of ``dataset`` as batch-first tensors."""
        cfg = self.config
        batch = sample_subtrajectories(dataset, cfg.batch_size, cfg.horizon, self.rng)
        keys = ("obs", "action", "reward", "would_terminate")
        return {k: torch.from_numpy(batch[k]).to(self.device) for k in keys if k in batch}

    def train_step(
        self,
        batch: dict[str, torch.Tensor],
        update_rew_rms: bool = False,
        value: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One gradient step on batch-first obs [B, H+1, d], action [B, H, a], reward [B, H] (and, to train a
        termination head, would_terminate [B, H]).

        ``update_rew_rms`` merges the batch's rewards into ``rew_rms`` first (PWM's online fine-tuning);
        ``value`` (latents -> values, frozen) is read by the value-equivalence term when ``value_coef`` > 0.
        """
        reward = batch["reward"]
        if self.rew_rms is not None:
            if update_rew_rms:
                self.rew_rms.update(reward)
            reward = self.rew_rms.normalize(reward)
        would_terminate = batch.get("would_terminate")
        value = value if self.config.value_coef > 0 else None
        loss, dynamics, reward_loss, termination, value_loss = world_model_loss(
            self.world_model,
            batch["obs"].transpose(0, 1),
            batch["action"].transpose(0, 1),
            reward.transpose(0, 1),
            self.config.rho,
            would_terminate=would_terminate.transpose(0, 1) if would_terminate is not None else None,
            termination_coef=self.config.termination_coef,
            value=value,
            value_coef=self.config.value_coef,
        )
        params = list(self.world_model.parameters())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nonfinite = zero_nonfinite_gradients(params)
        self.nonfinite_grad_steps += int(nonfinite)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))
        self.optimizer.step()
        self.steps += 1
        return {
            "wm_loss": float(loss.detach()),
            "wm_dynamics_loss": float(dynamics),
            "wm_reward_loss": float(reward_loss),
            **(
                {"wm_termination_loss": float(termination)}
                if self.world_model.termination_head is not None
                else {}
            ),
            **({"wm_value_loss": float(value_loss)} if value is not None else {}),
            "wm_grad_norm": grad_norm,
            "wm_nonfinite_grad": float(nonfinite),
        }

    def state_dict(self) -> dict[str, Any]:
        model = self.world_model
        return {
            "obs_dim": model.obs_dim,
            "act_dim": model.act_dim,
            "world_model_config": model.config.to_dict(),
            "train_config": asdict(self.config),
            "world_model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rew_rms": self.rew_rms.state_dict() if self.rew_rms is not None else None,
            "rng": self.rng.bit_generator.state,
            "steps": self.steps,
            "nonfinite_grad_steps": self.nonfinite_grad_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.world_model.load_state_dict(state["world_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if (self.rew_rms is None) != (state["rew_rms"] is None):
            raise ValueError("rew_rms setting differs from the one the world model was trained with")
        if self.rew_rms is not None:
            self.rew_rms.load_state_dict(state["rew_rms"])
        self.rng.bit_generator.state = state["rng"]
        self.steps = state["steps"]
        self.nonfinite_grad_steps = state["nonfinite_grad_steps"]

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], device: str | torch.device = "cpu", config: WMTrainConfig | None = None
    ) -> WorldModelTrainer:
        """Rebuild model and trainer from :meth:`state_dict` (``config`` replaces the stored one)."""
        model_config = WorldModelConfig.from_dict(state["world_model_config"])
        model = WorldModel(state["obs_dim"], state["act_dim"], model_config).to(device)
        trainer = cls(model, config or WMTrainConfig(**state["train_config"]))
        trainer.load_state_dict(state)
        return trainer


def pretrain(
    world_model: WorldModel,
    dataset: EpisodeDataset,
    steps: int,
    config: WMTrainConfig | None = None,
    seed: int = 0,
    state: dict[str, Any] | None = None,
    callback: Callable[[WorldModelTrainer, dict[str, float]], None] | None = None,
) -> WorldModelTrainer:
    """Train ``world_model`` on ``dataset`` until ``steps`` gradient steps are done in total.

    A fresh start fits ``rew_rms`` on all dataset rewards; ``state`` (a trainer :meth:`state_dict`)
    resumes instead. ``callback(trainer, metrics)`` runs after every step (it may raise to stop).
    """
    trainer = WorldModelTrainer(world_model, config or WMTrainConfig(), seed)
    if state is not None:
        trainer.load_state_dict(state)
    else:
        trainer.fit_reward_statistics(dataset)
    while trainer.steps < steps:
        metrics = trainer.train_step(trainer.dataset_batch(dataset))
        if callback is not None:
            callback(trainer, metrics)
    return trainer


def select_episodes(
    dataset: EpisodeDataset, max_rows: int | None, rng: np.random.Generator
) -> EpisodeDataset:
    """A random subset of whole episodes (without replacement) of at most ``max_rows`` rows in total.

    An episode of T transitions counts T + 1 rows, like PWM's 1e6-step buffer (999 episodes of 1000 steps).
    Episodes are drawn in random order until the next one would exceed the cap; the subset keeps the
    dataset's episode order. None or a dataset that fits: the whole dataset.
    """
    rows_per_episode = dataset.episode_length + 1
    if max_rows is None or int(rows_per_episode.sum()) <= max_rows:
        return dataset
    order = rng.permutation(dataset.num_episodes)
    fits = np.cumsum(rows_per_episode[order]) <= max_rows
    return dataset.episodes(order[: int(np.argmin(fits))])


def world_model_checkpoint(trainer: WorldModelTrainer, data: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint PWM loads: the trainer state plus ``data`` (the dataset it was trained on:
    ``path``, ``episodes``, ``transitions`` used and ``dataset_transitions`` in the whole dataset)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "trainer": trainer.state_dict(),
        "data": data,
    }


@dataclass
class PretrainedWorldModel:
    """A pretrained world model in memory (a ``bench.pretrain`` checkpoint): what PWM starts from."""

    trainer_state: dict[str, Any]
    """:meth:`WorldModelTrainer.state_dict`: model, optimiser, ``rew_rms``, sampling RNG, step count."""
    data: dict[str, Any]
    """The dataset it was trained on: ``path`` and ``dataset_transitions`` (and the subset used)."""

    @classmethod
    def from_trainer(
        cls, trainer: WorldModelTrainer, data: dict[str, Any] | None = None
    ) -> PretrainedWorldModel:
        return cls(trainer.state_dict(), dict(data or {}))

    @property
    def config(self) -> WorldModelConfig:
        return WorldModelConfig.from_dict(self.trainer_state["world_model_config"])

    @property
    def obs_dim(self) -> int:
        return int(self.trainer_state["obs_dim"])

    @property
    def act_dim(self) -> int:
        return int(self.trainer_state["act_dim"])

    def trainer(
        self, config: WMTrainConfig | None = None, device: str | torch.device = "cpu"
    ) -> WorldModelTrainer:
        """A trainer continuing from this state (``config`` replaces the stored training settings); the
        state is copied, so one pretrained model can start several trainers."""
        return WorldModelTrainer.from_state_dict(copy.deepcopy(self.trainer_state), device, config)


def load_world_model(path: str | Path) -> PretrainedWorldModel:
    """Read a :func:`world_model_checkpoint` file (ValueError if it is not one)."""
    state = torch.load(io.BytesIO(Path(path).read_bytes()), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or (state.get("format"), state.get("version")) != (
        CHECKPOINT_FORMAT,
        CHECKPOINT_VERSION,
    ):
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} v{CHECKPOINT_VERSION} checkpoint")
    return PretrainedWorldModel(state["trainer"], state["data"])


def load_world_model_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", config: WMTrainConfig | None = None
) -> tuple[WorldModelTrainer, dict[str, Any]]:
    """(trainer with its world model, data info) from a :func:`world_model_checkpoint` file."""
    pretrained = load_world_model(path)
    return pretrained.trainer(config, device), pretrained.data
