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

Two published configurations (:data:`VARIANTS`): ``pwm`` (FoRL/PWM: Mish, 3-critic minimum, return
normalisation; the default for PWM comparisons) and ``diffrl`` (original SHAC: ELU, one critic with a Polyak
target). :func:`published_config` returns a variant's per-env defaults, keyed by env name.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from algos.critic import fit_critic, polyak_update, td_lambda_targets
from algos.dataset import EpisodeRecorder
from algos.networks import (
    ACTIVATIONS,
    CriticEnsemble,
    StochasticActor,
    gradient_norm,
    linear_decay_lr,
    set_learning_rate,
)
from algos.normalizers import RunningMeanStd, normalized_actor_loss

RECENT_EPISODES = 100


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
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        for name in ("horizon", "max_epochs", "num_critics", "critic_iterations", "critic_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_nonfinite_windows < 1:
            raise ValueError(f"max_nonfinite_windows must be >= 1, got {self.max_nonfinite_windows}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SHACConfig:
        """Build from a (JSON) dict; lists become tuples; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SHAC setting(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VARIANTS = ("pwm", "diffrl")
DEFAULT_VARIANT = "pwm"

_PWM = SHACConfig()
_DIFFRL = SHACConfig(
    activation="elu",
    actor_hidden=(128, 64, 32),
    critic_hidden=(64, 64),
    num_critics=1,
    target_critic_alpha=0.2,
    critic_lr=2e-3,
    ret_rms=False,
    critic_grad_clip=1.0,
)

_SLOW_TARGET = {"target_critic_alpha": 0.995}

# Per env: (settings that differ from the variant's generic defaults, number of envs). Sources: algorithms
# §2 / §2.1 (PWM env configs) and envs §11.1 (NVlabs/DiffRL examples/cfg/shac/*.yaml).
_PUBLISHED: dict[str, dict[str, tuple[dict[str, Any], int]]] = {
    "pwm": {
        "ant": ({"max_epochs": 2000}, 128),
        "hopper": ({"max_epochs": 2000}, 64),
        "humanoid": ({"max_epochs": 3000}, 64),
        "snu_humanoid": ({"max_epochs": 5000}, 64),
        "anymal": ({"max_epochs": 3000}, 64),
    },
    "diffrl": {
        "cartpole": (
            {"actor_hidden": (64, 64), "actor_lr": 1e-2, "critic_lr": 1e-3, "max_epochs": 500},
            64,
        ),
        "hopper": ({"critic_lr": 2e-4}, 256),
        "cheetah": ({}, 64),
        "ant": ({}, 64),
        "humanoid": (
            {"actor_hidden": (256, 128), "critic_hidden": (128, 128), "critic_lr": 5e-4, **_SLOW_TARGET},
            64,
        ),
        "snu_humanoid": (
            {"actor_hidden": (512, 256), "critic_hidden": (256, 256), "critic_lr": 5e-4, **_SLOW_TARGET},
            64,
        ),
    },
}
GENERIC_NUM_ENVS = 64


def published_config(variant: str, env_name: str) -> tuple[SHACConfig, int]:
    """The published SHAC settings and number of envs of ``variant`` for ``env_name``.

    Envs without a published configuration get the variant's generic defaults and 64 envs.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SHAC variant {variant!r}; valid: {', '.join(VARIANTS)}")
    base = _PWM if variant == "pwm" else _DIFFRL
    changes, num_envs = _PUBLISHED[variant].get(env_name, ({}, GENERIC_NUM_ENVS))
    return replace(base, **changes), num_envs


class NonFiniteGradientError(FloatingPointError):
    """Too many consecutive SHAC windows produced a nan/inf actor gradient."""


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
        self.obs_rms = RunningMeanStd((obs_dim,), device=env.device) if config.obs_rms else None
        self.ret_rms = RunningMeanStd((), device=env.device) if config.ret_rms else None
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.recorder: EpisodeRecorder | None = None

        self.iteration = 0
        self.consecutive_nonfinite = 0
        self.nonfinite_actor_windows = 0
        self.nonfinite_critic_steps = 0
        self.episode_return = torch.zeros(env.num_envs, device=self.device)
        self.episode_length = torch.zeros(env.num_envs, dtype=torch.long, device=self.device)
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[int] = deque(maxlen=RECENT_EPISODES)
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
        actor_lr, critic_lr = cfg.actor_lr, cfg.critic_lr
        if cfg.lr_schedule == "linear":
            actor_lr = linear_decay_lr(cfg.actor_lr, self.iteration, cfg.max_epochs, cfg.final_lr)
            critic_lr = linear_decay_lr(cfg.critic_lr, self.iteration, cfg.max_epochs, cfg.final_lr)
        set_learning_rate(self.actor_optimizer, actor_lr)
        set_learning_rate(self.critic_optimizer, critic_lr)

        window = self._rollout()
        metrics = self._update_actor(window.pop("actor_loss"))
        metrics.update(self._update_critic(window))
        metrics.update(window["stats"])
        metrics.update(
            actor_lr=actor_lr, critic_lr=critic_lr, actor_std_mean=float(self.actor.std().detach().mean())
        )
        if self.recent_returns:
            metrics["train_return"] = sum(self.recent_returns) / len(self.recent_returns)
            metrics["train_episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
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
            self._track_episodes(reward.detach(), done)
            if self.recorder is not None:
                self.recorder.add_step(
                    obs, action, action_raw, reward, final_obs, terminated, truncated, self.iteration
                )
            obs = next_obs

        actor_loss = normalized_actor_loss(per_env_loss, horizon, self.ret_rms)
        return {
            "actor_loss": actor_loss,
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

    def _track_episodes(self, reward: torch.Tensor, done: torch.Tensor) -> None:
        self.episode_return += reward
        self.episode_length += 1
        if bool(done.any()):
            self.recent_returns.extend(self.episode_return[done].tolist())
            self.recent_lengths.extend(self.episode_length[done].tolist())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0

    def _update_actor(self, loss: torch.Tensor) -> dict[str, float]:
        params = list(self.actor.parameters())
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
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
                    f"actor gradient was nan/inf in {self.consecutive_nonfinite} consecutive windows "
                    f"(iteration {self.iteration}; limit max_nonfinite_windows="
                    f"{self.config.max_nonfinite_windows})"
                )
        return {
            "actor_loss": float(loss.detach()),
            "actor_grad_norm": norm_before,
            "actor_grad_norm_clipped": norm_after,
            "nonfinite_actor_grad": float(not finite),
        }

    def _update_critic(self, window: dict[str, Any]) -> dict[str, float]:
        inputs = window["inputs"].reshape(-1, self.env.obs_dim)
        targets = window["targets"].reshape(-1)
        finite = torch.isfinite(targets) & torch.isfinite(inputs).all(dim=1)
        metrics = {"critic_nonfinite_targets": float((~finite).sum())}
        if bool(finite.any()):
            stats = fit_critic(
                self.critic,
                self.critic_optimizer,
                inputs[finite],
                targets[finite],
                self.config.critic_iterations,
                self.config.critic_batches,
                self.config.critic_grad_clip,
                self.generator,
            )
            self.nonfinite_critic_steps += stats.nonfinite_grad_steps
            metrics.update(
                critic_loss=stats.loss,
                critic_grad_norm=stats.grad_norm,
                nonfinite_critic_grad_steps=float(stats.nonfinite_grad_steps),
            )
        if self.target_critic is not None:
            polyak_update(self.target_critic, self.critic, self.config.target_critic_alpha)
        return metrics

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the whole run of skipped actor steps and critic steps with zeroed gradients."""
        return {
            "nonfinite_actor_windows": self.nonfinite_actor_windows,
            "nonfinite_critic_steps": self.nonfinite_critic_steps,
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
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
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
        self.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.nonfinite_actor_windows = state["nonfinite_totals"]["nonfinite_actor_windows"]
        self.nonfinite_critic_steps = state["nonfinite_totals"]["nonfinite_critic_steps"]
        self.episode_return = state["episode_return"].to(self.device)
        self.episode_length = state["episode_length"].to(self.device)
        self.recent_returns = deque(state["recent_returns"], maxlen=RECENT_EPISODES)
        self.recent_lengths = deque(state["recent_lengths"], maxlen=RECENT_EPISODES)
        self.env.load_state_dict(state["env"])
