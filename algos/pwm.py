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

Modes (``PWMConfig.mode``; each a small strategy object, :class:`Online` and :class:`Offline`):
- ``online`` (the released single-task driver): start states are the current real env states; the real env
  is stepped with the same actions (no gradient) and its transitions are replayed; an env whose real episode
  ends at step h < H-1 closes its term -(J + gamma^m V) (V = 0 on termination), restarts J and continues
  from E(real observation). The world model, pretrained or not, is fine-tuned ``wm_steps_per_epoch`` steps
  per iteration (the first time without a pretrained model: ``wm_bootstrap_steps``), ``rew_rms`` updating
  on every batch. Until the replay holds an episode of H transitions, a model that was not pretrained only
  collects data.
- ``offline``: the pretrained world model is frozen (no optimiser step, no gradient into its parameters);
  start states are first observations of sub-trajectories sampled from the dataset; no env steps.

Inputs are objects, not paths: ``PWM(env, config, seed, world_model=load_world_model(path),
dataset=load_dataset(directory))``. A pretrained world model brings its own architecture
(``config.world_model`` only shapes a model trained from scratch). The algorithm knows no env names; the
published per-env settings are in ``bench.presets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from algos.config import config_from_dict, config_to_dict
from algos.critic import CriticUpdate, td_lambda_targets
from algos.dataset import EpisodeDataset, EpisodeRecorder, sample_subtrajectories
from algos.networks import ACTIVATIONS, CriticEnsemble, StochasticActor
from algos.normalizers import RunningMeanStd, normalized_actor_loss
from algos.replay import EpisodeReplay
from algos.training import LR_SCHEDULES, ActorStep, EpisodeTracker, apply_schedule
from algos.wm_training import PretrainedWorldModel, WMTrainConfig, WorldModelTrainer, select_episodes
from algos.world_model import WorldModel, WorldModelConfig, world_model_config

MODES = ("online", "offline")
BOOTSTRAP_EXPONENTS = ("H+1", "H")


@dataclass(frozen=True)
class PWMConfig:
    mode: str = "online"
    """online (real env in lockstep, world model fine-tuned) or offline (frozen model, dataset starts)."""
    horizon: int = 16
    """Imagined steps H per actor update."""
    gamma: float = 0.99
    """Discount factor."""
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
    lr_schedule: str = "linear"
    """'linear' (decay to final_lr over max_epochs; the world model's lr too) or 'constant'."""
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
    actor_grad_clip: float = 1.0
    """Max global norm of the actor gradient."""
    critic_grad_clip: float = 100.0
    """Max global norm of the critic gradient."""
    detach: bool = True
    """Feed the actor stop-gradient latents (the reference's setting in every released config)."""
    bootstrap_exponent: str = "H+1"
    """Terminal bootstrap discount of an uninterrupted window: H+1 (reference quirk) or H (corrected)."""
    world_model: WorldModelConfig = field(default_factory=world_model_config)
    """Architecture of a world model trained from scratch (a pretrained one brings its own)."""
    model_training: WMTrainConfig = field(default_factory=WMTrainConfig)
    """Online world-model training: sub-trajectory length and batch of replay samples, step weight rho
    (PWM: its horizon and gamma), learning rate (decayed with the schedule), clip, reward normalisation."""
    wm_steps_per_epoch: int = 8
    """World-model gradient steps per iteration (online)."""
    wm_bootstrap_steps: int | None = None
    """Online without a pretrained model: steps of the first model training (None: env.max_episode_steps)."""
    replay_capacity: int = 1_000_000
    """Replay rows (online); a dataset seeds it with a random subset of whole episodes that fits."""
    max_nonfinite_windows: int = 10
    """Raise NonFiniteGradientError after this many consecutive iterations with a nan/inf actor gradient."""

    def __post_init__(self) -> None:
        choices = {
            "mode": MODES,
            "activation": tuple(ACTIVATIONS),
            "lr_schedule": LR_SCHEDULES,
            "bootstrap_exponent": BOOTSTRAP_EXPONENTS,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        positive = ("horizon", "max_epochs", "num_critics", "critic_iterations", "critic_batches")
        for name in (*positive, "replay_capacity", "max_nonfinite_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or null, got {self.batch_size}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PWMConfig:
        """Build from a (JSON) dict; lists become tuples, nested dicts configs; unknown keys raise."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


class Online:
    """The real env is stepped in lockstep with the imagined actions (no gradient); finished real episodes
    fill a replay on which the world model is fine-tuned every iteration."""

    def __init__(self, pwm: PWM, dataset: EpisodeDataset | None) -> None:
        env, cfg = pwm.env, pwm.config
        self.pwm = pwm
        self.replay = EpisodeReplay(cfg.replay_capacity, env.obs_dim, env.act_dim, pwm.device)
        if dataset is not None:
            subset = select_episodes(dataset, self.replay.capacity, pwm.rng)
            for start, length in zip(subset.episode_start, subset.episode_length, strict=True):
                rows = slice(start, start + length + 1)
                self.replay.add(subset.obs[rows], subset.action[rows], subset.reward[rows])
        self.collector = EpisodeRecorder(env.num_envs)
        env.reset()

    def env_steps_per_iteration(self) -> int:
        return self.pwm.config.horizon * self.pwm.env.num_envs

    def start_states(self) -> torch.Tensor:
        return self.pwm.env.detach_state()

    def can_learn(self) -> bool:
        """A model that was not pretrained only collects until the replay holds a training window."""
        return self.pwm.wm_trained or self.replay.can_sample(self.pwm.config.model_training.horizon)

    @torch.no_grad()
    def env_step(
        self, obs: torch.Tensor, action: torch.Tensor, action_raw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step the real env with the imagined action; record; (next obs, terminated, done)."""
        pwm = self.pwm
        action, action_raw = action.detach(), action_raw.detach()
        next_obs, reward, terminated, truncated, info = pwm.env.step(action)
        final_obs = info["obs_before_reset"]
        for recorder in (self.collector, pwm.recorder):
            if recorder is not None:
                recorder.add_step(
                    obs, action, action_raw, reward, final_obs, terminated, truncated, pwm.iteration
                )
        done = terminated | truncated
        pwm.episodes.add(reward, done, info)
        return next_obs, terminated, done

    def end_window(self) -> None:
        for episode in self.collector.pop_finished():
            self.replay.add(episode.obs, episode.action, episode.reward)

    def stats(self) -> dict[str, float]:
        return {"replay_episodes": float(self.replay.num_episodes)}

    def update_world_model(self) -> dict[str, float]:
        """Fine-tune on replay batches; the first time, without a pretrained model, longer."""
        pwm, cfg = self.pwm, self.pwm.config
        horizon = cfg.model_training.horizon
        if not self.replay.can_sample(horizon):
            return {}
        steps = cfg.wm_steps_per_epoch
        if not pwm.wm_trained:
            steps = cfg.wm_bootstrap_steps or pwm.env.max_episode_steps
            pwm.wm_trained = True
        totals: dict[str, float] = {}
        for _ in range(steps):
            batch = self.replay.sample(cfg.model_training.batch_size, horizon, pwm.generator)
            for name, value in pwm.wm_trainer.train_step(batch, update_rew_rms=True).items():
                totals[name] = totals.get(name, 0.0) + value
        metrics = {name: value / steps for name, value in totals.items()}
        metrics["wm_steps"] = float(steps)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "replay": self.replay.state_dict(),
            "collector": self.collector.state_dict(),
            "env": self.pwm.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])
        self.collector.load_state_dict(state["collector"])
        self.pwm.env.load_state_dict(state["env"])


class Offline:
    """The pretrained world model is frozen; start states are sampled from the dataset; no env steps."""

    def __init__(self, pwm: PWM, dataset: EpisodeDataset | None) -> None:
        if not pwm.wm_trained or dataset is None:
            raise ValueError("offline mode needs a pretrained world_model and a dataset")
        horizon = pwm.config.horizon
        if not (dataset.episode_length >= horizon).any():
            raise ValueError(f"dataset {dataset.path} has no episode of {horizon} transitions")
        self.pwm = pwm
        self.dataset = dataset
        pwm.world_model.requires_grad_(False)

    def env_steps_per_iteration(self) -> int:
        return 0

    def start_states(self) -> torch.Tensor:
        pwm = self.pwm
        batch = pwm.config.batch_size or pwm.env.num_envs
        starts = sample_subtrajectories(self.dataset, batch, pwm.config.horizon, pwm.rng)["obs"][:, 0]
        return torch.from_numpy(starts).to(pwm.device)

    def can_learn(self) -> bool:
        return True

    def env_step(self, obs: torch.Tensor, action: torch.Tensor, action_raw: torch.Tensor) -> None:
        return None

    def end_window(self) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def update_world_model(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"replay": None, "collector": None, "env": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PWM:
    """PWM over any env following the warpbench env protocol (see ``envs/__init__.py``).

    ``world_model``: a pretrained model (:func:`algos.wm_training.load_world_model`); required offline;
    None online: a fresh model of ``config.world_model``. ``dataset``: an episode dataset
    (:func:`algos.dataset.load_dataset`): offline start states (required); online it seeds the replay.
    ``recorder``: set an :class:`~algos.dataset.EpisodeRecorder` to record every real training transition
    (online mode).
    """

    def __init__(
        self,
        env: Any,
        config: PWMConfig,
        seed: int,
        world_model: PretrainedWorldModel | None = None,
        dataset: EpisodeDataset | None = None,
    ) -> None:
        self.env = env
        self.config = config
        self.device = torch.device(env.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.data_sources: dict[str, int] = {}
        """Data source (resolved dataset path) -> env steps that generated it (counted once per source)."""

        self.wm_trainer = self._world_model_trainer(world_model, seed)
        self.world_model: WorldModel = self.wm_trainer.world_model
        self.wm_trained = world_model is not None
        """False until a model that was not pretrained has had its first (bootstrap) training."""

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
        self.actor_step = ActorStep(
            self.actor, self.actor_optimizer, config.actor_grad_clip, config.max_nonfinite_windows
        )
        self.critic_update = CriticUpdate(
            self.critic,
            self.critic_optimizer,
            config.critic_iterations,
            config.critic_batches,
            config.critic_grad_clip,
        )
        self.ret_rms = RunningMeanStd((), device=env.device) if config.ret_rms else None
        self.recorder: EpisodeRecorder | None = None
        self.episodes = EpisodeTracker(env.num_envs, self.device)
        self.iteration = 0
        if dataset is not None:
            if (dataset.info["obs_dim"], dataset.info["act_dim"]) != (env.obs_dim, env.act_dim):
                raise ValueError(f"dataset {dataset.path} does not match the env's obs/act dims")
            self.data_sources[dataset.path or f"in-memory dataset {id(dataset)}"] = dataset.num_transitions
        self.mode: Online | Offline = (Online if config.mode == "online" else Offline)(self, dataset)

    def _world_model_trainer(self, pretrained: PretrainedWorldModel | None, seed: int) -> WorldModelTrainer:
        env, train_config = self.env, self.config.model_training
        if pretrained is None:
            model = WorldModel(env.obs_dim, env.act_dim, self.config.world_model).to(self.device)
            return WorldModelTrainer(model, train_config, seed)
        if (pretrained.obs_dim, pretrained.act_dim) != (env.obs_dim, env.act_dim):
            raise ValueError(
                f"world model is for obs/act dims {pretrained.obs_dim}/{pretrained.act_dim}, "
                f"the env has {env.obs_dim}/{env.act_dim}"
            )
        if pretrained.data.get("path"):
            self.data_sources[pretrained.data["path"]] = int(pretrained.data["dataset_transitions"])
        return pretrained.trainer(train_config, self.device)

    # -- protocol -----------------------------------------------------------------------------------

    @property
    def max_iterations(self) -> int:
        return self.config.max_epochs

    @property
    def env_steps_per_iteration(self) -> int:
        """Real env steps one iteration consumes (0 offline)."""
        return self.mode.env_steps_per_iteration()

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
        lrs = apply_schedule(
            {
                "actor_lr": (self.actor_optimizer, cfg.actor_lr),
                "critic_lr": (self.critic_optimizer, cfg.critic_lr),
                "model_lr": (self.wm_trainer.optimizer, cfg.model_training.lr),
            },
            self.iteration,
            cfg.max_epochs,
            cfg.lr_schedule,
            cfg.final_lr,
        )
        learn = self.mode.can_learn()
        with torch.set_grad_enabled(learn):
            window = self.imagine(self.mode.start_states())
        metrics = dict(window["stats"])
        if learn:
            metrics.update(self.actor_step(window["actor_loss"], self.iteration))
            metrics.update(self.critic_update(window["latents"], window["targets"], self.generator))
            metrics.update(self.mode.update_world_model())
        metrics.update(self.mode.stats())
        metrics.update(
            lrs, collect_only=float(not learn), actor_std_mean=float(self.actor.std().detach().mean())
        )
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    # -- one iteration ------------------------------------------------------------------------------

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
        real_steps = False

        for h in range(horizon):
            last = h == horizon - 1
            latents[h] = z.detach()
            action_raw = self.actor.sample(z.detach() if cfg.detach else z, self.generator)
            action = torch.tanh(action_raw)
            z, reward = model.step(z, action)
            window_return = window_return + discount * reward
            discount = discount * cfg.gamma
            real = self.mode.env_step(obs, action, action_raw)
            done = terminated = None
            if real is not None:
                real_steps = True
                next_obs, terminated, done = real
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

        self.mode.end_window()
        stats = {
            "model_reward_mean": float(rewards.mean()),
            "value_mean": float(next_values.mean()),
            "window_length_mean": horizon * batch / loss_terms,
        }
        if real_steps:
            stats.update(early_terminations=float(terminations), truncations=float(truncations))
        return {
            "actor_loss": normalized_actor_loss(per_env_loss, horizon, self.ret_rms),
            "per_env_loss": per_env_loss,
            "latents": latents,
            "targets": td_lambda_targets(rewards, next_values, dones, cfg.gamma, cfg.lam),
            "stats": stats,
        }

    # -- bookkeeping --------------------------------------------------------------------------------

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the run: skipped actor steps, critic and world-model steps with zeroed gradients."""
        return {
            "nonfinite_actor_windows": self.actor_step.nonfinite_windows,
            "nonfinite_critic_steps": self.critic_update.nonfinite_steps,
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
            "consecutive_nonfinite": self.actor_step.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
            **self.episodes.state_dict(),
            **self.mode.state_dict(),
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
        self.actor_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        totals = state["nonfinite_totals"]
        self.actor_step.nonfinite_windows = totals["nonfinite_actor_windows"]
        self.critic_update.nonfinite_steps = totals["nonfinite_critic_steps"]
        self.episodes.load_state_dict(state)
        self.mode.load_state_dict(state)
