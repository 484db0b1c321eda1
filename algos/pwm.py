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
Every ``diagnostics_interval`` iterations (before step 1) ``diag/*`` metrics compare the model with the
simulator on fixed reset states (:mod:`algos.pwm_diagnostics`); they change no training state.

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

from algos.critic import td_lambda_targets
from algos.dataset import EpisodeDataset, EpisodeRecorder, sample_subtrajectories
from algos.normalizers import normalized_actor_loss
from algos.pwm_diagnostics import diagnose, policy_noise, reset_snapshot
from algos.replay import EpisodeReplay
from algos.training import ActorCriticConfig, ActorCriticLearner, WindowLoss
from algos.wm_training import PretrainedWorldModel, WMTrainConfig, WorldModelTrainer, select_episodes
from algos.world_model import WorldModel, WorldModelConfig, world_model_config

MODES = ("online", "offline")
BOOTSTRAP_EXPONENTS = ("H+1", "H")


@dataclass(frozen=True)
class PWMConfig(ActorCriticConfig):
    """PWM's settings: the shared actor-critic ones (``algos.training.ActorCriticConfig``; actor and critics
    take the latent z as input), with PWM's defaults where they differ, plus these."""

    horizon: int = 16
    """Imagined steps H per actor update."""
    max_epochs: int = 15_000
    """Training iterations; also the length of the linear learning-rate decay (the world model's too)."""
    logstd_min: float | None = -1.427
    """Lower clamp of the log-std (std >= 0.24)."""
    actor_lr: float = 5e-4
    """Initial actor learning rate."""
    critic_iterations: int = 8
    """Passes over the imagined latents when fitting the critics."""
    mode: str = "online"
    """online (real env in lockstep, world model fine-tuned) or offline (frozen model, dataset starts)."""
    batch_size: int | None = None
    """Offline start states per iteration (None: the env's num_envs); online always uses the env batch."""
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
    diagnostics_interval: int = 25
    """Log ``diag/*`` metrics (:mod:`algos.pwm_diagnostics`: imagined vs real return, model vs simulator
    gradient cosine, model errors, critic vs real return) every this many iterations, from iteration 0,
    on the env's fixed reset states; each costs about one differentiable H-step window. 0: never."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, valid in (("mode", MODES), ("bootstrap_exponent", BOOTSTRAP_EXPONENTS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        if self.replay_capacity < 1:
            raise ValueError(f"replay_capacity must be >= 1, got {self.replay_capacity}")
        if self.diagnostics_interval < 0:
            raise ValueError(f"diagnostics_interval must be >= 0, got {self.diagnostics_interval}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or null, got {self.batch_size}")


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


class PWM(ActorCriticLearner):
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
        self.env, self.config, self.device = env, config, torch.device(env.device)
        self.rng = np.random.default_rng(seed)
        self.data_sources: dict[str, int] = {}
        """Data source (resolved dataset path) -> env steps that generated it (counted once per source)."""
        # The world model first: a fresh one draws its initialisation before the actor and critics.
        self.wm_trainer = self._world_model_trainer(world_model, seed)
        self.world_model: WorldModel = self.wm_trainer.world_model
        self.wm_trained = world_model is not None
        """False until a model that was not pretrained has had its first (bootstrap) training."""
        super().__init__(env, config, seed, self.world_model.config.latent_dim)
        self.config: PWMConfig = config
        if dataset is not None:
            if (dataset.info["obs_dim"], dataset.info["act_dim"]) != (env.obs_dim, env.act_dim):
                raise ValueError(f"dataset {dataset.path} does not match the env's obs/act dims")
            self.data_sources[dataset.path or f"in-memory dataset {id(dataset)}"] = dataset.num_transitions
        self.mode: Online | Offline = (Online if config.mode == "online" else Offline)(self, dataset)
        if config.diagnostics_interval:
            # Drawn once (the env's own reset distribution; its stream is left as found) and kept fixed, so
            # the diagnostics of different iterations are comparable.
            self.diagnostics_start = reset_snapshot(env)
            self.diagnostics_noise = policy_noise(
                config.horizon, env.num_envs, env.act_dim, seed, self.device
            )

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
        interval = self.config.diagnostics_interval
        diagnostics = self.diagnostics() if interval and self.iteration % interval == 0 else {}
        lrs = self.learning_rates(model_lr=(self.wm_trainer.optimizer, self.config.model_training.lr))
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
        metrics.update(diagnostics)
        self.iteration += 1
        return metrics

    def diagnostics(self) -> dict[str, float]:
        """``diag/*`` metrics of the current actor, critic and model (:func:`algos.pwm_diagnostics.diagnose`);
        touches no training state or random stream (the env is restored)."""
        return diagnose(
            self.env,
            self.diagnostics_start,
            self.world_model,
            self.actor,
            self.critic,
            self.wm_trainer.rew_rms,
            self.diagnostics_noise,
            self.config.gamma,
            self.config.detach,
        )

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
        loss = WindowLoss(batch, cfg.gamma, self.device)
        final_discount = cfg.gamma if cfg.bootstrap_exponent == "H+1" else 1.0
        terminations = truncations = 0
        real_steps = False

        for h in range(horizon):
            last = h == horizon - 1
            latents[h] = z.detach()
            action_raw = self.actor.sample(z.detach() if cfg.detach else z, self.generator)
            action = torch.tanh(action_raw)
            z, reward = model.step(z, action)
            loss.add(reward)
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
                ends = torch.ones(batch, dtype=torch.bool, device=self.device) if last else done
                loss.close(ends, value, final_discount if last else 1.0, last)
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
            "window_length_mean": horizon * batch / loss.terms,
        }
        if real_steps:
            stats.update(early_terminations=float(terminations), truncations=float(truncations))
        return {
            "actor_loss": normalized_actor_loss(loss.per_env, horizon, self.ret_rms),
            "per_env_loss": loss.per_env,
            "latents": latents,
            "targets": td_lambda_targets(rewards, next_values, dones, cfg.gamma, cfg.lam),
            "stats": stats,
        }

    # -- bookkeeping --------------------------------------------------------------------------------

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the run: skipped actor steps, critic and world-model steps with zeroed gradients."""
        return {**super().nonfinite_totals(), "nonfinite_wm_steps": self.wm_trainer.nonfinite_grad_steps}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, normalisers, RNGs, replay, env."""
        return {
            **super().state_dict(),
            "world_model": self.wm_trainer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "wm_trained": self.wm_trained,
            **self.mode.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        self.wm_trainer.load_state_dict(state["world_model"])
        self.rng.bit_generator.state = state["rng"]
        self.wm_trained = state["wm_trained"]
        self.mode.load_state_dict(state)
