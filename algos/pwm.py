"""PWM: policy learning through a learned world model (algorithms §3.5-§3.8).

One iteration (``PWM.train_iteration``):
  1. decay the actor, critic (and, online, model) learning rates linearly;
  2. imagine H steps from a batch of start states: z = E(s_0); a = tanh(a_raw), a_raw ~ N(mu(sg(z)), std)
     (``detach``); r̂ = R(z, a), z = F(z, a); per start state J += gamma^k r̂. The window closes with
     -(J + gamma^(m+1) V(z_H)) (the reference's extra discount; ``bootstrap_exponent="H"``: gamma^m), V the
     minimum of the critic ensemble;
  3. actor loss = mean of that per-state loss divided by its running std (``ret_rms``) or by H; clip the
     actor gradient norm and step (a non-finite gradient skips the step and is counted);
  4. fit the critics to TD(lambda) targets of the imagined window (model rewards, ensemble-minimum values);
  5. ``online`` only: fine-tune the world model on replay batches.

Modes (``PWMConfig.mode``):
- ``online`` (the released single-task driver): start states are the current real env states; the real env
  is stepped with the same actions (no gradient) and its transitions are replayed; an env whose real episode
  ends at step h < H-1 closes its term -(J + gamma^m V) (V = 0 on termination), restarts J and continues
  from E(real observation). The world model, pretrained or not, is fine-tuned ``wm_steps_per_epoch`` steps
  per iteration (the first time without a pretrained model: ``wm_bootstrap_steps``), ``rew_rms`` updating
  on every batch. Until the replay holds an episode of H transitions, a model that was not pretrained only
  collects data.
- ``offline``: the pretrained world model is frozen (no optimiser step, no gradient into its parameters);
  start states are first observations of sub-trajectories sampled from the dataset; no env steps.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algos.critic import fit_critic, td_lambda_targets
from algos.dataset import EpisodeDataset, EpisodeRecorder, load_dataset, sample_subtrajectories
from algos.networks import (
    ACTIVATIONS,
    CriticEnsemble,
    StochasticActor,
    gradient_norm,
    linear_decay_lr,
    set_learning_rate,
)
from algos.normalizers import RunningMeanStd, normalized_actor_loss
from algos.replay import EpisodeReplay
from algos.shac import NonFiniteGradientError
from algos.wm_training import (
    WMTrainConfig,
    WorldModelTrainer,
    load_world_model_checkpoint,
    select_episodes,
)
from algos.world_model import WorldModel, WorldModelConfig, world_model_config

MODES = ("online", "offline")
DEFAULT_MODE = "online"
BOOTSTRAP_EXPONENTS = ("H+1", "H")
RECENT_EPISODES = 100


@dataclass(frozen=True)
class PWMConfig:
    mode: str = "online"
    """online (real env in lockstep, world model fine-tuned) or offline (frozen model, dataset starts)."""
    horizon: int = 16
    """Imagined steps H per actor update (also the world-model sub-trajectory length)."""
    gamma: float = 0.99
    """Discount factor; also the per-step weight of the world-model loss."""
    lam: float = 0.95
    """TD(lambda) mixing parameter of the critic targets."""
    max_epochs: int = 15_000
    """Training iterations; also the length of the linear learning-rate decay."""
    batch_size: int | None = None
    """Offline start states per iteration (None: the env's num_envs); online always uses the env batch."""
    actor_hidden: tuple[int, ...] = (400, 200, 100)
    """Hidden widths of the actor MLP (input: latent z)."""
    critic_hidden: tuple[int, ...] = (400, 200)
    """Hidden widths of each critic MLP (input: latent z)."""
    activation: str = "mish"
    """Hidden activation of actor and critics."""
    logstd_init: float = -1.0
    """Initial value of the actor's state-independent log-std."""
    logstd_min: float | None = -1.427
    """Lower clamp of the log-std (std >= 0.24)."""
    num_critics: int = 3
    """Critic ensemble size; values are the minimum over members (no target network)."""
    actor_lr: float = 5e-4
    """Initial actor learning rate."""
    critic_lr: float = 5e-4
    """Initial critic learning rate."""
    model_lr: float = 3e-4
    """Initial world-model learning rate (online fine-tuning)."""
    lr_schedule: str = "linear"
    """'linear' (decay to final_lr over max_epochs) or 'constant'."""
    final_lr: float = 1e-5
    """Learning rate reached at max_epochs by the linear schedule."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas of actor and critic optimisers (the world model uses Adam's defaults)."""
    critic_iterations: int = 8
    """Passes over the imagined latents when fitting the critics."""
    critic_batches: int = 4
    """Minibatches per pass."""
    ret_rms: bool = True
    """Divide the actor loss by the running std of the per-state loss instead of by H."""
    rew_rms: bool = True
    """The world model regresses rewards normalised by running statistics."""
    actor_grad_clip: float = 1.0
    """Max global norm of the actor gradient."""
    critic_grad_clip: float = 100.0
    """Max global norm of the critic gradient."""
    model_grad_clip: float = 20.0
    """Max global norm of the world-model gradient."""
    detach: bool = True
    """Feed the actor stop-gradient latents (the reference's setting in every released config)."""
    bootstrap_exponent: str = "H+1"
    """Terminal bootstrap discount of an uninterrupted window: H+1 (reference quirk) or H (corrected)."""
    wm_size: str = "single"
    """World-model size (``algos.world_model.SIZES``); must match a loaded checkpoint."""
    wm_variant: str = "simnorm"
    """World-model variant: simnorm, mish or relu; must match a loaded checkpoint."""
    wm_reward_bins: int | None = None
    """Reward head: 0 scalar, >= 2 two-hot bins; None: the size's default. Must match a checkpoint."""
    wm_batch_size: int = 256
    """Replay sub-trajectories per world-model step (online)."""
    wm_steps_per_epoch: int = 8
    """World-model gradient steps per iteration (online)."""
    wm_bootstrap_steps: int | None = None
    """Online without a pretrained model: steps of the first model training (None: env.max_episode_steps)."""
    replay_capacity: int = 1_000_000
    """Replay rows (online); a dataset seeds it with a random subset of whole episodes that fits."""
    world_model_checkpoint: str | None = None
    """A ``bench.pretrain`` checkpoint (.pt) to start from; required offline; None: a fresh model."""
    dataset: str | None = None
    """Episode-dataset directory: offline start states (required offline); online: seeds the replay."""
    max_nonfinite_windows: int = 10
    """Raise NonFiniteGradientError after this many consecutive iterations with a nan/inf actor gradient."""

    def __post_init__(self) -> None:
        choices = {
            "mode": MODES,
            "activation": tuple(ACTIVATIONS),
            "lr_schedule": ("linear", "constant"),
            "bootstrap_exponent": BOOTSTRAP_EXPONENTS,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        positive = ("horizon", "max_epochs", "num_critics", "critic_iterations", "critic_batches")
        for name in (*positive, "wm_batch_size", "replay_capacity", "max_nonfinite_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or null, got {self.batch_size}")
        self.world_model_config()

    def world_model_config(self) -> WorldModelConfig:
        """The world-model architecture these settings ask for."""
        changes = {} if self.wm_reward_bins is None else {"reward_bins": self.wm_reward_bins}
        return world_model_config(self.wm_size, variant=self.wm_variant, **changes)

    def wm_train_config(self) -> WMTrainConfig:
        """World-model training settings: PWM's horizon, batch, discount as step weight, lr, clip."""
        return WMTrainConfig(
            horizon=self.horizon,
            batch_size=self.wm_batch_size,
            rho=self.gamma,
            lr=self.model_lr,
            grad_clip=self.model_grad_clip,
            rew_rms=self.rew_rms,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PWMConfig:
        """Build from a (JSON) dict; lists become tuples; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PWM setting(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Envs per env name in the released single-task configs (algorithms §3.7, §3.8); others get 64.
PUBLISHED_NUM_ENVS = {"ant": 128}
GENERIC_NUM_ENVS = 64


def published_config(mode: str, env_name: str) -> tuple[PWMConfig, int]:
    """The released single-task settings in ``mode`` and the number of envs for ``env_name``."""
    if mode not in MODES:
        raise ValueError(f"unknown PWM mode {mode!r}; valid: {', '.join(MODES)}")
    return replace(PWMConfig(), mode=mode), PUBLISHED_NUM_ENVS.get(env_name, GENERIC_NUM_ENVS)


class PWM:
    """PWM over any env following the warpbench env protocol (see ``envs/__init__.py``).

    ``recorder``: set an :class:`~algos.dataset.EpisodeRecorder` to record every real training transition
    (online mode).
    """

    def __init__(self, env: Any, config: PWMConfig, seed: int) -> None:
        if config.mode == "offline" and (config.world_model_checkpoint is None or config.dataset is None):
            raise ValueError("offline mode needs world_model_checkpoint and dataset")
        self.env = env
        self.config = config
        self.device = torch.device(env.device)
        self.online = config.mode == "online"
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.data_sources: dict[str, int] = {}
        """Resolved dataset path -> env steps that generated it (counted once per dataset)."""

        self.wm_trainer = self._world_model_trainer(seed)
        self.world_model: WorldModel = self.wm_trainer.world_model
        self.wm_trained = config.world_model_checkpoint is not None
        """False until a model that was not pretrained has had its first (bootstrap) training."""
        if not self.online:
            self.world_model.requires_grad_(False)

        latent = self.world_model.config.latent_dim
        self.actor = StochasticActor(
            latent, env.act_dim, config.actor_hidden, config.activation, config.logstd_init, config.logstd_min
        ).to(self.device)
        self.critic = CriticEnsemble(latent, config.critic_hidden, config.activation, config.num_critics)
        self.critic.to(self.device)
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, betas=config.betas
        )
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, betas=config.betas
        )
        self.ret_rms = RunningMeanStd((), device=env.device) if config.ret_rms else None

        self.dataset: EpisodeDataset | None = None
        self.replay: EpisodeReplay | None = None
        self.collector: EpisodeRecorder | None = None
        self.recorder: EpisodeRecorder | None = None
        if config.dataset is not None:
            self.dataset = self._load_dataset(config.dataset)
        if self.online:
            self.replay = EpisodeReplay(config.replay_capacity, env.obs_dim, env.act_dim, self.device)
            if self.dataset is not None:
                self._seed_replay(self.dataset)
                self.dataset = None
            self.collector = EpisodeRecorder(env.num_envs)

        self.iteration = 0
        self.consecutive_nonfinite = 0
        self.nonfinite_actor_windows = 0
        self.nonfinite_critic_steps = 0
        self.episode_return = torch.zeros(env.num_envs, device=self.device)
        self.episode_length = torch.zeros(env.num_envs, dtype=torch.long, device=self.device)
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[int] = deque(maxlen=RECENT_EPISODES)
        if self.online:
            self.env.reset()

    # -- construction -------------------------------------------------------------------------------

    def _world_model_trainer(self, seed: int) -> WorldModelTrainer:
        cfg, env = self.config, self.env
        expected = cfg.world_model_config()
        if cfg.world_model_checkpoint is None:
            model = WorldModel(env.obs_dim, env.act_dim, expected).to(self.device)
            return WorldModelTrainer(model, cfg.wm_train_config(), seed)
        trainer, data = load_world_model_checkpoint(
            cfg.world_model_checkpoint, self.device, cfg.wm_train_config()
        )
        model = trainer.world_model
        if (model.obs_dim, model.act_dim) != (env.obs_dim, env.act_dim):
            raise ValueError(
                f"world model is for obs/act dims {model.obs_dim}/{model.act_dim}, "
                f"the env has {env.obs_dim}/{env.act_dim}"
            )
        if model.config != expected:
            differ = {k: v for k, v in model.config.to_dict().items() if expected.to_dict()[k] != v}
            raise ValueError(
                f"checkpoint world model differs from wm_size/wm_variant/wm_reward_bins: {differ}"
            )
        if data.get("path"):
            self.data_sources[str(Path(data["path"]).resolve())] = int(data["dataset_transitions"])
        return trainer

    def _load_dataset(self, directory: str) -> EpisodeDataset:
        dataset = load_dataset(directory)
        if (dataset.info["obs_dim"], dataset.info["act_dim"]) != (self.env.obs_dim, self.env.act_dim):
            raise ValueError(f"dataset {directory} does not match the env's obs/act dims")
        if not self.online and not (dataset.episode_length >= self.config.horizon).any():
            raise ValueError(f"dataset {directory} has no episode of {self.config.horizon} transitions")
        self.data_sources[str(Path(directory).resolve())] = dataset.num_transitions
        return dataset

    def _seed_replay(self, dataset: EpisodeDataset) -> None:
        assert self.replay is not None
        subset = select_episodes(dataset, self.replay.capacity, self.rng)
        for start, length in zip(subset.episode_start, subset.episode_length, strict=True):
            rows = slice(start, start + length + 1)
            self.replay.add(subset.obs[rows], subset.action[rows], subset.reward[rows])

    # -- protocol -----------------------------------------------------------------------------------

    @property
    def max_iterations(self) -> int:
        return self.config.max_epochs

    @property
    def env_steps_per_iteration(self) -> int:
        """Real env steps one iteration consumes (0 offline)."""
        return self.config.horizon * self.env.num_envs if self.online else 0

    @property
    def data_env_steps(self) -> int:
        """Env steps that generated the offline data this run used (pretraining data and dataset)."""
        return sum(self.data_sources.values())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations: tanh(mu(E(obs))), or tanh of a sample (training noise stream)."""
        return self.actor.act(self.world_model.encode(obs), deterministic, self.generator)

    def train_iteration(self) -> dict[str, float]:
        """One PWM iteration: imagined window, actor step, critic fit, (online) model fine-tuning."""
        cfg = self.config
        lrs = {"actor_lr": cfg.actor_lr, "critic_lr": cfg.critic_lr, "model_lr": cfg.model_lr}
        if cfg.lr_schedule == "linear":
            lrs = {
                k: linear_decay_lr(v, self.iteration, cfg.max_epochs, cfg.final_lr) for k, v in lrs.items()
            }
        set_learning_rate(self.actor_optimizer, lrs["actor_lr"])
        set_learning_rate(self.critic_optimizer, lrs["critic_lr"])
        set_learning_rate(self.wm_trainer.optimizer, lrs["model_lr"])

        learn = not self.online or self.wm_trained or self.replay.can_sample(cfg.horizon)
        with torch.set_grad_enabled(learn):
            window = self.imagine(self._start_states())
        metrics = dict(window["stats"])
        if learn:
            metrics.update(self._update_actor(window["actor_loss"]))
            metrics.update(self._update_critic(window["latents"], window["targets"]))
            if self.online:
                metrics.update(self._update_world_model())
        if self.online:
            metrics["replay_episodes"] = float(self.replay.num_episodes)
        metrics.update(
            lrs, collect_only=float(not learn), actor_std_mean=float(self.actor.std().detach().mean())
        )
        if self.recent_returns:
            metrics["train_return"] = sum(self.recent_returns) / len(self.recent_returns)
            metrics["train_episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
        self.iteration += 1
        return metrics

    # -- one iteration ------------------------------------------------------------------------------

    def _start_states(self) -> torch.Tensor:
        if self.online:
            return self.env.detach_state()
        assert self.dataset is not None
        batch = self.config.batch_size or self.env.num_envs
        starts = sample_subtrajectories(self.dataset, batch, self.config.horizon, self.rng)["obs"][:, 0]
        return torch.from_numpy(starts).to(self.device)

    def imagine(self, obs: torch.Tensor) -> dict[str, Any]:
        """Roll the model H steps from start observations ``obs`` (online: the env's current ones, which it
        steps in lockstep). Returns ``actor_loss`` (differentiable), ``per_env_loss`` [B], ``latents`` and
        TD(lambda) ``targets`` [H, B] for the critic, and scalar ``stats``."""
        cfg = self.config
        horizon, batch = cfg.horizon, obs.shape[0]
        model = self.world_model
        with torch.no_grad():
            z = model.encode(obs)
        latents = torch.empty(horizon, batch, z.shape[-1], device=self.device)
        rewards = torch.empty(horizon, batch, device=self.device)
        next_values = torch.empty(horizon, batch, device=self.device)
        dones = torch.zeros(horizon, batch, dtype=torch.bool, device=self.device)
        window_return = torch.zeros(batch, device=self.device)
        discount = torch.ones(batch, device=self.device)
        per_env_loss = torch.zeros(batch, device=self.device)
        final_discount = cfg.gamma if cfg.bootstrap_exponent == "H+1" else 1.0
        loss_terms = batch
        terminations = truncations = 0

        for h in range(horizon):
            last = h == horizon - 1
            latents[h] = z.detach()
            action_raw = self.actor.sample(z.detach() if cfg.detach else z, self.generator)
            action = torch.tanh(action_raw)
            z, reward = model.step(z, action)
            window_return = window_return + discount * reward
            discount = discount * cfg.gamma
            done = terminated = None
            if self.online:
                next_obs, terminated, done = self._env_step(obs, action, action_raw)
                terminations += int(terminated.sum())
                truncations += int((done & ~terminated).sum())
            closing = last or (done is not None and bool(done.any()))
            with torch.set_grad_enabled(torch.is_grad_enabled() and closing):
                value = self.critic.value(z)
            if terminated is not None:
                value = torch.where(terminated, 0.0, value)
            if closing:
                ends = torch.ones_like(discount, dtype=torch.bool) if last else done
                bootstrap = (final_discount if last else 1.0) * discount * value
                per_env_loss = per_env_loss - torch.where(ends, window_return + bootstrap, 0.0)
                window_return = torch.where(ends, 0.0, window_return)
                discount = torch.where(ends, 1.0, discount)
                if not last:
                    loss_terms += int(done.sum())
            if done is not None:
                dones[h] = done
                if bool(done.any()):
                    with torch.no_grad():
                        encoded = model.encode(next_obs)
                    z = torch.where(done[:, None], encoded, z)  # the other envs keep their gradient path
                obs = next_obs
            rewards[h], next_values[h] = reward.detach(), value.detach()

        if self.online:
            for episode in self.collector.pop_finished():
                self.replay.add(episode.obs, episode.action, episode.reward)
        stats = {
            "model_reward_mean": float(rewards.mean()),
            "value_mean": float(next_values.mean()),
            "window_length_mean": horizon * batch / loss_terms,
        }
        if self.online:
            stats.update(early_terminations=float(terminations), truncations=float(truncations))
        return {
            "actor_loss": normalized_actor_loss(per_env_loss, horizon, self.ret_rms),
            "per_env_loss": per_env_loss,
            "latents": latents,
            "targets": td_lambda_targets(rewards, next_values, dones, cfg.gamma, cfg.lam),
            "stats": stats,
        }

    def _env_step(
        self, obs: torch.Tensor, action: torch.Tensor, action_raw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step the real env with the imagined action (no gradient); record; (next obs, terminated, done)."""
        with torch.no_grad():
            action, action_raw = action.detach(), action_raw.detach()
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            final_obs = info["obs_before_reset"]
            for recorder in (self.collector, self.recorder):
                if recorder is not None:
                    recorder.add_step(
                        obs, action, action_raw, reward, final_obs, terminated, truncated, self.iteration
                    )
            done = terminated | truncated
            self.episode_return += reward
            self.episode_length += 1
            if bool(done.any()):
                self.recent_returns.extend(self.episode_return[done].tolist())
                self.recent_lengths.extend(self.episode_length[done].tolist())
                self.episode_return[done] = 0.0
                self.episode_length[done] = 0
        return next_obs, terminated, done

    def _update_actor(self, loss: torch.Tensor) -> dict[str, float]:
        params = list(self.actor.parameters())
        self.actor_optimizer.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        norm_before = gradient_norm(params)
        finite = math.isfinite(norm_before)
        if finite:
            self.consecutive_nonfinite = 0
            torch.nn.utils.clip_grad_norm_(params, self.config.actor_grad_clip)
            norm_after = gradient_norm(params)
            self.actor_optimizer.step()
        else:
            self.consecutive_nonfinite += 1
            self.nonfinite_actor_windows += 1
            norm_after = float("nan")
            if self.consecutive_nonfinite >= self.config.max_nonfinite_windows:
                raise NonFiniteGradientError(
                    f"actor gradient was nan/inf in {self.consecutive_nonfinite} consecutive iterations "
                    f"(iteration {self.iteration}; limit max_nonfinite_windows="
                    f"{self.config.max_nonfinite_windows})"
                )
        return {
            "actor_loss": float(loss.detach()),
            "actor_grad_norm": norm_before,
            "actor_grad_norm_clipped": norm_after,
            "nonfinite_actor_grad": float(not finite),
        }

    def _update_critic(self, latents: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        inputs = latents.reshape(-1, latents.shape[-1])
        targets = targets.reshape(-1)
        finite = torch.isfinite(targets) & torch.isfinite(inputs).all(dim=1)
        metrics = {
            "critic_nonfinite_targets": float((~finite).sum()),
            "value_target_mean": float(targets.mean()),
        }
        if bool(finite.any()):
            cfg = self.config
            stats = fit_critic(
                self.critic,
                self.critic_optimizer,
                inputs[finite],
                targets[finite],
                cfg.critic_iterations,
                cfg.critic_batches,
                cfg.critic_grad_clip,
                self.generator,
            )
            self.nonfinite_critic_steps += stats.nonfinite_grad_steps
            metrics.update(
                critic_loss=stats.loss,
                critic_grad_norm=stats.grad_norm,
                nonfinite_critic_grad_steps=float(stats.nonfinite_grad_steps),
            )
        return metrics

    def _update_world_model(self) -> dict[str, float]:
        """Online fine-tuning on replay batches; the first time, without a pretrained model, longer."""
        cfg = self.config
        assert self.replay is not None
        if not self.replay.can_sample(cfg.horizon):
            return {}
        steps = cfg.wm_steps_per_epoch
        if not self.wm_trained:
            steps = cfg.wm_bootstrap_steps or self.env.max_episode_steps
            self.wm_trained = True
        totals: dict[str, float] = {}
        for _ in range(steps):
            batch = self.replay.sample(cfg.wm_batch_size, cfg.horizon, self.generator)
            for name, value in self.wm_trainer.train_step(batch, update_rew_rms=True).items():
                totals[name] = totals.get(name, 0.0) + value
        metrics = {name: value / steps for name, value in totals.items()}
        metrics["wm_steps"] = float(steps)
        return metrics

    # -- bookkeeping --------------------------------------------------------------------------------

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the run: skipped actor steps, critic and world-model steps with zeroed gradients."""
        return {
            "nonfinite_actor_windows": self.nonfinite_actor_windows,
            "nonfinite_critic_steps": self.nonfinite_critic_steps,
            "nonfinite_wm_steps": self.wm_trainer.nonfinite_grad_steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, normalisers, RNGs, replay, env."""
        return {
            "config": self.config.to_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "world_model": self.wm_trainer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms is not None else None,
            "generator": self.generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "iteration": self.iteration,
            "wm_trained": self.wm_trained,
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "replay": self.replay.state_dict() if self.replay is not None else None,
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "env": self.env.state_dict() if self.online else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.wm_trainer.load_state_dict(state["world_model"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self.iteration = state["iteration"]
        self.wm_trained = state["wm_trained"]
        self.consecutive_nonfinite = state["consecutive_nonfinite"]
        totals = state["nonfinite_totals"]
        self.nonfinite_actor_windows = totals["nonfinite_actor_windows"]
        self.nonfinite_critic_steps = totals["nonfinite_critic_steps"]
        self.episode_return = state["episode_return"].to(self.device)
        self.episode_length = state["episode_length"].to(self.device)
        self.recent_returns = deque(state["recent_returns"], maxlen=RECENT_EPISODES)
        self.recent_lengths = deque(state["recent_lengths"], maxlen=RECENT_EPISODES)
        if self.online:
            self.replay.load_state_dict(state["replay"])
            self.collector.load_state_dict(state["collector"])
            self.env.load_state_dict(state["env"])
