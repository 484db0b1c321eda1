"""PWM: policy learning through a learned world model (algorithms §3.5-§3.8).

One iteration (``PWM.train_iteration``):
  1. decay the actor, critic (and, online, model) learning rates linearly;
  2. imagine H steps from a batch of start states: z = E(s_0); a = tanh(a_raw), a_raw ~ N(mu(sg(z)), std)
     (``detach``); r̂ = R(z, a), z = F(z, a); per start state J += gamma^k r̂. The window closes with
     -(J + gamma^(m+1) V(z_H)) (the reference's extra discount; ``bootstrap_exponent="H"``: gamma^m), V the
     minimum of the critic ensemble (our extension, off by default as in the reference: a Polyak target
     critic, ``target_critic_alpha``, supplies every bootstrap value instead);
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
  collects data. Our extension: a model with a termination head (``termination`` below) ends the imagined
  returns online too, between real episode ends (a real end resets the continuation to 1), and keeps
  training the head on the replay's ``would_terminate`` flags (the dataset's and the real episodes').
- ``offline``: the pretrained world model is frozen (no optimiser step, no gradient into its parameters);
  start states are first observations of ``batch_size`` (512) sub-trajectories sampled from the dataset; no
  env steps. Our extensions beyond the reference, which never ran single-task offline (each switchable, so
  that its effect can be measured; README "PWM"):
  - ``termination``: a model with a termination head (TD-MPC2's, trained on the dataset's
    ``would_terminate`` flags) ends imagined returns: with p_h = sigmoid(T(z_{h+1})) and the continuation
    c_0 = 1, c_{h+1} = c_h (1 - p_h), J = sum_h gamma^h c_h r̂_h + gamma^(m+1) c_H V(z_H) (the expected
    return under the head, differentiable, so the actor is pushed away from predicted terminations); the
    critic's TD(lambda) targets treat p_h > 0.5 as a termination (V' = 0; TD-MPC2's planner threshold).
    After a termination the return counts 0 in the model's reward units, as the online driver does.
  - ``guard_gap``: a stopping rule on the diagnostics (needs ``diagnostics_interval``): when the gap between
    the imagined H-step return (whole window, termination-weighted) and the real episodic one from the same
    start states grows by more than ``guard_gap`` over its value at iteration 0, the actor and critics go
    back to those of the last diagnostics point that passed and learning stops (the remaining iterations
    only log). Its simulator steps are counted (``guard_env_steps``).

Inputs are objects, not paths: ``PWM(env, config, seed, world_model=load_world_model(path),
dataset=load_dataset(directory))``. A pretrained world model brings its own architecture
(``config.world_model`` only shapes a model trained from scratch). The algorithm knows no env names; the
published per-env settings are in ``bench.presets``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from algos.config import check_at_least_one, check_choice
from algos.critic import td_lambda_targets
from algos.dataset import EpisodeDataset, EpisodeRecorder, heldout_by_ids, sample_subtrajectories
from algos.normalizers import normalized_actor_loss
from algos.pwm_diagnostics import (
    HELDOUT_WINDOWS,
    diagnose,
    heldout_errors,
    heldout_windows,
    policy_noise,
    reset_snapshot,
)
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
    batch_size: int | None = 512
    """Offline start states per iteration (the reference's offline batch; None: the env's num_envs); online
    always uses the env batch."""
    termination: bool = True
    """End imagined returns with the world model's termination head (our extension). Offline a model
    without one runs without, with a warning; online it is used (and fine-tuned on the replay's
    would_terminate flags) only when the model has one, so a model without is the reference's driver."""
    guard_gap: float | None = None
    """Offline stopping rule (our extension): the growth of the diagnostics' imagined-minus-real return gap
    (model units) that stops learning and restores the last passing actor and critics; None: off."""
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
        check_choice("mode", self.mode, MODES)
        check_choice("bootstrap_exponent", self.bootstrap_exponent, BOOTSTRAP_EXPONENTS)
        check_at_least_one(self, "replay_capacity")
        if self.diagnostics_interval < 0:
            raise ValueError(f"diagnostics_interval must be >= 0, got {self.diagnostics_interval}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or null, got {self.batch_size}")
        if self.guard_gap is not None and (
            self.guard_gap <= 0 or not self.diagnostics_interval or self.mode != "offline"
        ):
            raise ValueError(
                "guard_gap must be > 0, offline, with diagnostics_interval > 0 (it reads diag/*)"
            )

    @property
    def final_discount(self) -> float:
        """Extra discount of an uninterrupted window's end value: gamma^H * this (gamma for "H+1")."""
        return self.gamma if self.bootstrap_exponent == "H+1" else 1.0


class Online:
    """The real env is stepped in lockstep with the imagined actions (no gradient); finished real episodes
    fill a replay on which the world model is fine-tuned every iteration."""

    def __init__(self, pwm: PWM, dataset: EpisodeDataset | None) -> None:
        env, cfg = pwm.env, pwm.config
        self.pwm = pwm
        # Our extension: a model with a termination head keeps training it on the replay's flags and ends
        # imagined returns with it; without a head this is the reference's driver.
        self.termination = cfg.termination and pwm.world_model.termination_head is not None
        if self.termination and dataset is not None and dataset.would_terminate is None:
            raise ValueError(
                f"online PWM with a termination head needs would_terminate flags in the dataset "
                f"{dataset.path} (recorded before they existed); use another dataset or "
                "--set algo.termination=false"
            )
        self.replay = EpisodeReplay(
            cfg.replay_capacity, env.obs_dim, env.act_dim, pwm.device, termination_flags=self.termination
        )
        if dataset is not None:
            subset = select_episodes(dataset, self.replay.capacity, pwm.rng)
            for start, length in zip(subset.episode_start, subset.episode_length, strict=True):
                rows = slice(start, start + length + 1)
                flags = subset.would_terminate[rows] if self.termination else None
                self.replay.add(subset.obs[rows], subset.action[rows], subset.reward[rows], flags)
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
        final_obs, would_terminate = info["obs_before_reset"], info.get("would_terminate")
        self.collector.add_step(
            obs, action, action_raw, reward, final_obs, terminated, truncated, pwm.iteration, would_terminate
        )
        done = pwm.record_step(obs, action, action_raw, reward, terminated, truncated, info)
        return next_obs, terminated, done

    def end_window(self) -> None:
        for episode in self.collector.pop_finished():
            flags = episode.would_terminate if self.termination else None
            if self.termination and flags is None:
                raise ValueError("online PWM with a termination head: the env reports no would_terminate")
            self.replay.add(episode.obs, episode.action, episode.reward, flags)

    def stats(self) -> dict[str, float]:
        return {"replay_episodes": float(self.replay.num_episodes)}

    def check_guard(self, diagnostics: dict[str, float]) -> dict[str, float]:
        return {}

    def stopped(self) -> bool:
        return False

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
            step = pwm.wm_trainer.train_step(batch, update_rew_rms=True, value=pwm.frozen_value)
            for name, value in step.items():
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


class GapGuard:
    """The offline stopping rule (module docstring, ``PWMConfig.guard_gap``): compares each diagnostics
    point's ``diag/episodic_gap`` with the first one's; keeps the actor and critics of the last point that
    passed, restores them when one fails, and stops learning."""

    def __init__(self, pwm: PWM, threshold: float) -> None:
        self.pwm, self.threshold = pwm, threshold
        self.baseline: float | None = None
        self.snapshot: dict[str, Any] | None = None
        self.stopped = False
        self.env_steps = 0

    def check(self, diagnostics: dict[str, float]) -> dict[str, float]:
        pwm = self.pwm
        gap = diagnostics["diag/episodic_gap"]
        self.env_steps += pwm.config.horizon * pwm.env.num_envs
        if self.baseline is None:
            self.baseline = gap
        growth = gap - self.baseline
        if growth > self.threshold and self.snapshot is not None:
            pwm.actor.load_state_dict(self.snapshot["actor"])
            pwm.critic.load_state_dict(self.snapshot["critic"])
            self.stopped = True
        else:
            self.snapshot = {
                "actor": copy.deepcopy(pwm.actor.state_dict()),
                "critic": copy.deepcopy(pwm.critic.state_dict()),
            }
        return {"guard_gap_growth": growth, "guard_env_steps": float(self.env_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "snapshot": self.snapshot,
            "stopped": self.stopped,
            "env_steps": self.env_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline, self.snapshot = state["baseline"], state["snapshot"]
        self.stopped, self.env_steps = state["stopped"], state["env_steps"]


class Offline:
    """The pretrained world model is frozen; start states are sampled from the dataset; no env steps;
    optionally (our extensions) imagined terminations and the stopping rule."""

    def __init__(self, pwm: PWM, dataset: EpisodeDataset | None) -> None:
        if not pwm.wm_trained or dataset is None:
            raise ValueError("offline mode needs a pretrained world_model and a dataset")
        cfg = pwm.config
        if not (dataset.episode_length >= cfg.horizon).any():
            raise ValueError(f"dataset {dataset.path} has no episode of {cfg.horizon} transitions")
        self.pwm = pwm
        self.dataset = dataset
        pwm.world_model.requires_grad_(False)
        self.termination = cfg.termination and pwm.world_model.termination_head is not None
        if cfg.termination and not self.termination:
            warnings.warn(
                "offline PWM: the world model has no termination head (pretrained without one, or on a "
                "dataset that records no would_terminate flags); imagined returns are not ended",
                stacklevel=3,
            )
        self.guard = GapGuard(pwm, cfg.guard_gap) if cfg.guard_gap is not None else None

    def env_steps_per_iteration(self) -> int:
        return 0

    def start_states(self) -> torch.Tensor:
        pwm = self.pwm
        batch = pwm.config.batch_size or pwm.env.num_envs
        starts = sample_subtrajectories(self.dataset, batch, pwm.config.horizon, pwm.rng)["obs"][:, 0]
        return torch.from_numpy(starts).to(pwm.device)

    def can_learn(self) -> bool:
        return not self.stopped()

    def env_step(self, obs: torch.Tensor, action: torch.Tensor, action_raw: torch.Tensor) -> None:
        return None

    def end_window(self) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {"guard_stopped": float(self.guard.stopped)} if self.guard is not None else {}

    def stopped(self) -> bool:
        """The stopping rule has stopped learning."""
        return self.guard is not None and self.guard.stopped

    def check_guard(self, diagnostics: dict[str, float]) -> dict[str, float]:
        """The stopping rule's check at a diagnostics point (none after it stopped)."""
        if self.guard is None or self.guard.stopped:
            return {}
        return self.guard.check(diagnostics)

    def update_world_model(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        guard = self.guard.state_dict() if self.guard is not None else None
        return {"replay": None, "collector": None, "env": None, "guard": guard}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.guard is not None:
            self.guard.load_state_dict(state["guard"])


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
        self.heldout = self._heldout_windows(world_model, dataset) if config.diagnostics_interval else None
        """Fixed windows of the episodes the pretrained model was not trained on (None: no recorded split)."""

    def _heldout_windows(
        self, pretrained: PretrainedWorldModel | None, dataset: EpisodeDataset | None
    ) -> dict[str, torch.Tensor] | None:
        """The held-out episodes recorded in ``pretrained``'s data, when ``dataset`` is the one it was
        pretrained on: fixed windows of H transitions for :func:`algos.pwm_diagnostics.heldout_errors`."""
        if pretrained is None or dataset is None or dataset.path != pretrained.data.get("path"):
            return None
        heldout = heldout_by_ids(dataset, pretrained.data.get("heldout_episodes", []))
        if heldout is None:
            return None
        return heldout_windows(heldout, self.config.horizon, HELDOUT_WINDOWS, self.device)

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
        due = interval and self.iteration % interval == 0 and not self.mode.stopped()
        diagnostics = self.diagnostics() if due else {}  # a stopped run's actor no longer changes
        if diagnostics:
            diagnostics.update(self.mode.check_guard(diagnostics))
        lrs = self.learning_rates(model_lr=(self.wm_trainer.optimizer, self.config.model_training.lr))
        learn = self.mode.can_learn()
        metrics: dict[str, float] = {}
        if learn or self.mode.env_steps_per_iteration():  # offline after the stopping rule: nothing to do
            with torch.set_grad_enabled(learn):
                window = self.imagine(self.mode.start_states())
            metrics.update(window["stats"])
        if learn:
            metrics.update(self.actor_step(window["actor_loss"], self.iteration))
            metrics.update(self.fit_critic(window["latents"], window["targets"], self.generator))
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
        """``diag/*`` metrics of the current actor, critic and model (:func:`algos.pwm_diagnostics.diagnose`),
        and the model's errors on the held-out windows of its dataset (:func:`~algos.pwm_diagnostics.
        heldout_errors`); touches no training state or random stream (the env is restored)."""
        metrics = diagnose(
            self.env,
            self.diagnostics_start,
            self.world_model,
            self.actor,
            self.critic,
            self.wm_trainer.rew_rms,
            self.diagnostics_noise,
            self.config.gamma,
            self.config.detach,
            termination=self.imagined_termination,
            final_discount=self.config.final_discount,
        )
        if self.heldout is not None:
            errors = heldout_errors(
                self.world_model, self.heldout, self.wm_trainer.rew_rms, self.config.gamma
            )
            metrics.update({f"diag/{name}": value for name, value in errors.items()})
        return metrics

    @property
    def imagined_termination(self) -> bool:
        """Imagined returns end with the model's termination head (``config.termination`` and a model that
        has one)."""
        return self.mode.termination

    def frozen_value(self, latents: torch.Tensor) -> torch.Tensor:
        """The bootstrap value of ``latents`` with the critics frozen: the gradient reaches the latents (the
        world model's value-equivalence term, ``WMTrainConfig.value_coef``), never the critics."""
        critic = self.target_critic or self.critic
        flags = [p.requires_grad for p in critic.parameters()]
        critic.requires_grad_(False)
        try:
            return critic.value(latents)
        finally:
            for parameter, flag in zip(critic.parameters(), flags, strict=True):
                parameter.requires_grad_(flag)

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
        terminations = truncations = 0
        real_steps = False
        use_termination = self.imagined_termination
        continuation = torch.ones(batch, device=self.device)  # P(no imagined termination before step h)
        imagined_ends = torch.zeros(batch, dtype=torch.bool, device=self.device)

        for h in range(horizon):
            last = h == horizon - 1
            latents[h] = z.detach()
            action_raw = self.actor.sample(z.detach() if cfg.detach else z, self.generator)
            action = torch.tanh(action_raw)
            z, reward = model.step(z, action)
            real = self.mode.env_step(obs, action, action_raw)
            ended = None  # where the critic's targets end: imagined (p > 0.5) or real terminations
            if use_termination:
                # The expected return under the head (gradient included); the critic sees p > 0.5 as an end.
                loss.add(continuation * reward)
                probability = torch.sigmoid(model.termination_logit(z))
                continuation = continuation * (1.0 - probability)
                ended = probability.detach() > 0.5
                imagined_ends |= ended
            else:
                loss.add(reward)
            if real is not None:
                real_steps = True
                next_obs, terminated, done = real
                terminations += int(terminated.sum())
                truncations += int((done & ~terminated).sum())
                ended = terminated if ended is None else ended | terminated
            closing = last or (real is not None and bool(done.any()))
            with torch.set_grad_enabled(torch.is_grad_enabled() and closing):
                value = self.bootstrap_value(z)
            if closing:
                # A real termination ends the return (V = 0); with the head, the rest is weighted by the
                # probability of no imagined termination so far.
                bootstrap = torch.where(terminated, 0.0, value) if real is not None else value
                if use_termination:
                    bootstrap = continuation * bootstrap
                ends = torch.ones(batch, dtype=torch.bool, device=self.device) if last else done
                loss.close(ends, bootstrap, cfg.final_discount if last else 1.0, last)
            if ended is not None:
                value = torch.where(ended, 0.0, value)
                dones[h] = ended
            if real is not None:
                dones[h] |= done
                if bool(done.any()):
                    with torch.no_grad():
                        encoded = model.encode(next_obs)
                    z = torch.where(done[:, None], encoded, z)  # the other envs keep their gradient path
                    if use_termination and not last:  # a new real episode: no imagined termination yet
                        continuation = torch.where(done, 1.0, continuation)
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
        if use_termination:
            stats.update(
                imagined_termination=float(1.0 - continuation.detach().mean()),
                imagined_ends=float(imagined_ends.float().mean()),
            )
        stats["imagined_return"] = float(-loss.per_env.detach().mean())
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
