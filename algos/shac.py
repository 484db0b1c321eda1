"""SHAC: Short-Horizon Actor-Critic through a differentiable simulator (algorithms §2).

One iteration (``SHAC.train_iteration``):
  1. cut the graph at the current env state (``env.detach_state()``) and roll H steps with reparameterised
     actions a = tanh(a_raw), a_raw ~ N(mu(norm(obs)), std), through the differentiable env;
  2. per env, accumulate J = sum_k gamma^k r_k since its accumulator last restarted; when the env's episode
     ends inside the window add -(J + gamma^m V') to its loss (V' = 0 on termination, V(obs_before_reset)
     on truncation) and restart; at the last step add -(J + gamma^m V(s_H)) for every env;
  3. actor loss = mean over envs of that per-env loss divided by H (or by its running std, ``ret_rms``);
     backprop through the whole window, clip the actor gradient norm and step (a step whose gradient has
     nan/inf entries is skipped and counted; ``max_nonfinite_windows`` in a row raise);
  4. fit the critic on TD(lambda) targets of the window, Polyak-update the target critic if there is one;
  5. decay the learning rates linearly.

The algorithm knows no env names: published per-env settings (the ``pwm`` and ``diffrl`` variants) are in
``bench.presets``. Shared pieces (actor step, critic update, episode statistics, schedules) come from
``algos.training`` and ``algos.critic``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from algos.config import config_from_dict, config_to_dict
from algos.critic import CriticUpdate, polyak_update, td_lambda_targets
from algos.dataset import EpisodeRecorder
from algos.networks import ACTIVATIONS, CriticEnsemble, StochasticActor
from algos.normalizers import RunningMeanStd, normalized_actor_loss
from algos.training import LR_SCHEDULES, ActorStep, EpisodeTracker, apply_schedule


@dataclass(frozen=True)
class SHACConfig:
    horizon: int = 32
    """Window length H: env steps differentiated through per actor update."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """TD(lambda) mixing parameter of the critic targets."""
    max_epochs: int = 2000
    """Training iterations (one window each); also the length of the linear learning-rate decay."""
    actor_hidden: tuple[int, ...] = (400, 200, 100)
    """Hidden widths of the actor MLP."""
    critic_hidden: tuple[int, ...] = (400, 200)
    """Hidden widths of each critic MLP."""
    activation: str = "mish"
    """Hidden activation of actor and critics: elu, mish, relu or tanh."""
    logstd_init: float = -1.0
    """Initial value of the actor's state-independent log-std."""
    logstd_min: float | None = None
    """Lower clamp of the log-std (None: unclamped)."""
    num_critics: int = 3
    """Critic ensemble size; values are the minimum over members."""
    target_critic_alpha: float | None = None
    """Polyak coefficient alpha of a target critic (theta' <- alpha theta' + (1 - alpha) theta) used for all
    bootstrap values; None: no target network, the online critics bootstrap."""
    actor_lr: float = 2e-3
    """Initial actor learning rate."""
    critic_lr: float = 5e-4
    """Initial critic learning rate."""
    lr_schedule: str = "linear"
    """'linear' (decay to final_lr over max_epochs) or 'constant'."""
    final_lr: float = 1e-5
    """Learning rate reached at max_epochs by the linear schedule."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas of actor and critic optimisers."""
    critic_iterations: int = 16
    """Passes over the window's states when fitting the critic."""
    critic_batches: int = 4
    """Minibatches per pass (each of H*N/critic_batches states)."""
    obs_rms: bool = True
    """Normalise observations with running statistics (a frozen copy within each window)."""
    ret_rms: bool = True
    """Divide the actor loss by the running std of the per-env loss instead of by H."""
    actor_grad_clip: float = 1.0
    """Max global norm of the actor gradient."""
    critic_grad_clip: float = 100.0
    """Max global norm of the critic gradient."""
    max_nonfinite_windows: int = 10
    """Raise NonFiniteGradientError after this many consecutive windows with a nan/inf actor gradient."""

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        for name in ("horizon", "max_epochs", "num_critics", "critic_iterations", "critic_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_nonfinite_windows < 1:
            raise ValueError(f"max_nonfinite_windows must be >= 1, got {self.max_nonfinite_windows}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SHACConfig:
        """Build from a (JSON) dict; lists become tuples; unknown keys raise ValueError."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


class SHAC:
    """SHAC over any env following the warpbench env protocol (see ``envs/__init__.py``).

    ``recorder``: set an :class:`~algos.dataset.EpisodeRecorder` to record every training transition.
    """

    def __init__(self, env: Any, config: SHACConfig, seed: int) -> None:
        self.env = env
        self.config = config
        self.device = torch.device(env.device)
        obs_dim, act_dim = env.obs_dim, env.act_dim
        self.actor = StochasticActor(
            obs_dim, act_dim, config.actor_hidden, config.activation, config.logstd_init, config.logstd_min
        ).to(self.device)
        self.critic = CriticEnsemble(obs_dim, config.critic_hidden, config.activation, config.num_critics)
        self.critic.to(self.device)
        self.target_critic: CriticEnsemble | None = None
        if config.target_critic_alpha is not None:
            self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
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
        self.obs_rms = RunningMeanStd((obs_dim,), device=env.device) if config.obs_rms else None
        self.ret_rms = RunningMeanStd((), device=env.device) if config.ret_rms else None
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.recorder: EpisodeRecorder | None = None
        self.episodes = EpisodeTracker(env.num_envs, self.device)
        self.iteration = 0
        self.env.reset()

    @property
    def max_iterations(self) -> int:
        return self.config.max_epochs

    @property
    def env_steps_per_iteration(self) -> int:
        return self.config.horizon * self.env.num_envs

    def _normalizer(self) -> RunningMeanStd | None:
        """A frozen copy of the observation statistics for one window."""
        return copy.deepcopy(self.obs_rms) if self.obs_rms is not None else None

    def _value(self, obs: torch.Tensor) -> torch.Tensor:
        """Bootstrap value: target critic if there is one, else the online ensemble minimum."""
        return (self.target_critic or self.critic).value(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations; the stochastic case draws from the training noise stream."""
        if self.obs_rms is not None:
            obs = self.obs_rms.normalize(obs)
        return self.actor.act(obs, deterministic, self.generator)

    def train_iteration(self) -> dict[str, float]:
        """One SHAC window: actor update, critic fit, learning-rate decay. Returns per-iteration metrics."""
        cfg = self.config
        lrs = apply_schedule(
            {
                "actor_lr": (self.actor_optimizer, cfg.actor_lr),
                "critic_lr": (self.critic_optimizer, cfg.critic_lr),
            },
            self.iteration,
            cfg.max_epochs,
            cfg.lr_schedule,
            cfg.final_lr,
        )
        window = self._rollout()
        metrics = self.actor_step(window["actor_loss"], self.iteration)
        metrics.update(self.critic_update(window["inputs"], window["targets"], self.generator))
        if self.target_critic is not None:
            polyak_update(self.target_critic, self.critic, cfg.target_critic_alpha)
        metrics.update(window["stats"])
        metrics.update(lrs, actor_std_mean=float(self.actor.std().detach().mean()))
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    def _rollout(self) -> dict[str, Any]:
        cfg = self.config
        horizon, num_envs = cfg.horizon, self.env.num_envs
        normalizer = self._normalizer()

        def normalize(x: torch.Tensor) -> torch.Tensor:
            return normalizer.normalize(x) if normalizer is not None else x

        obs = self.env.detach_state()
        inputs = torch.empty(horizon, num_envs, self.env.obs_dim, device=self.device)
        rewards = torch.empty(horizon, num_envs, device=self.device)
        next_values = torch.empty(horizon, num_envs, device=self.device)
        dones = torch.empty(horizon, num_envs, dtype=torch.bool, device=self.device)
        window_return = torch.zeros(num_envs, device=self.device)
        discount = torch.ones(num_envs, device=self.device)
        per_env_loss = torch.zeros(num_envs, device=self.device)
        loss_terms = num_envs
        terminations = truncations = 0

        for t in range(horizon):
            obs_in = normalize(obs)
            inputs[t] = obs_in.detach()
            action_raw = self.actor.sample(obs_in, self.generator)
            action = torch.tanh(action_raw)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            final_obs = info["obs_before_reset"]
            done = terminated | truncated
            if self.obs_rms is not None:
                self.obs_rms.update(next_obs)
            # V' of the state each env reached: 0 on termination; final_obs == next_obs where not done.
            next_value = torch.where(terminated, 0.0, self._value(normalize(final_obs)))
            window_return = window_return + discount * reward
            discount = discount * cfg.gamma
            ends = done if t < horizon - 1 else torch.ones_like(done)
            per_env_loss = per_env_loss - torch.where(ends, window_return + discount * next_value, 0.0)
            window_return = torch.where(ends, 0.0, window_return)
            discount = torch.where(ends, 1.0, discount)

            rewards[t], next_values[t], dones[t] = reward.detach(), next_value.detach(), done
            if t < horizon - 1:
                loss_terms += int(done.sum())
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            self.episodes.add(reward, done, info)
            if self.recorder is not None:
                self.recorder.add_step(
                    obs, action, action_raw, reward, final_obs, terminated, truncated, self.iteration
                )
            obs = next_obs

        return {
            "actor_loss": normalized_actor_loss(per_env_loss, horizon, self.ret_rms),
            "inputs": inputs,
            "targets": td_lambda_targets(rewards, next_values, dones, cfg.gamma, cfg.lam),
            "stats": {
                "early_terminations": float(terminations),
                "truncations": float(truncations),
                "window_length_mean": horizon * num_envs / loss_terms,
                "reward_mean": float(rewards.mean()),
                "value_mean": float(next_values.mean()),
            },
        }

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the whole run of skipped actor steps and critic steps with zeroed gradients."""
        return {
            "nonfinite_actor_windows": self.actor_step.nonfinite_windows,
            "nonfinite_critic_steps": self.critic_update.nonfinite_steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, normalisers, RNG, env state."""
        return {
            "config": self.config.to_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict() if self.target_critic is not None else None,
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms is not None else None,
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms is not None else None,
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
            "consecutive_nonfinite": self.actor_step.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
            **self.episodes.state_dict(),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        if self.target_critic is not None:
            self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        self.generator.set_state(state["generator"])
        self.iteration = state["iteration"]
        self.actor_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.actor_step.nonfinite_windows = state["nonfinite_totals"]["nonfinite_actor_windows"]
        self.critic_update.nonfinite_steps = state["nonfinite_totals"]["nonfinite_critic_steps"]
        self.episodes.load_state_dict(state)
        self.env.load_state_dict(state["env"])
