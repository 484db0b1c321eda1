"""PPO: clipped-objective on-policy learning from many envs stepped without gradients (algorithms §6).

One iteration (``PPO.train_iteration``):
  1. roll H steps of every env under ``torch.no_grad()`` (the simulator records nothing: no adjoint
     buffers, forward speed) with a ~ N(mu(norm(obs)), sigma); the env receives clip(a, -1, 1);
  2. generalised advantage estimates of the scaled rewards (:func:`gae`): bootstrap V(s_{t+1}) is 0 on
     termination and V(obs_before_reset) on truncation; returns = advantages + values;
  3. ``mini_epochs`` shuffled passes of ``minibatches`` steps on the clipped surrogate
     (:func:`clipped_surrogate`), the clipped value loss in normalised value space
     (:func:`clipped_value_loss`) and the bounds loss (:func:`bounds_loss`), through one shared-trunk
     network; each step's gradient norm is clipped, a step whose gradient has nan/inf entries is skipped
     and counted (``algos.training.ActorStep``);
  4. after every step the learning rate adapts to the KL divergence from the rollout policy
     (:func:`adaptive_lr`; ``lr_schedule``).

Settings follow the rl_games PPO of the fork (``scripts/cfg/alg/ppo.yaml`` + env ``ppo:`` blocks, the likely
source of PWM's PPO curves); the DiffRL-era settings are the ``diffrl`` variant (``bench.presets``).
Departures, stated: hidden layers are warpbench's Linear -> activation -> LayerNorm (``algos.networks.mlp``);
the observation statistics are updated once per iteration from the rollout (frozen within it), not per
minibatch; the deterministic action is clip(mu, -1, 1) (PPO's actions are clipped, not squashed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from algos.config import JsonConfig, check_at_least_one, check_choice
from algos.networks import ACTIVATIONS, mlp
from algos.normalizers import VAR_EPS, RunningMeanStd
from algos.training import ActorStep, Learner, scheduled_lr, set_learning_rate

PPO_SCHEDULES = ("adaptive", "linear", "constant")
BOUND = 1.1
"""Soft bound of the action mean used by the bounds loss (rl_games ``bound_loss``)."""


@dataclass(frozen=True)
class PPOConfig(JsonConfig):
    """PPO's settings; defaults: the fork's rl_games ``ppo.yaml`` (algorithms §6, "PPO (rl_games, fork
    era)")."""

    horizon: int = 32
    """Env steps per env per iteration (fork ``horizon_length`` 32)."""
    gamma: float = 0.99
    """Discount factor (fork ``gamma`` 0.99)."""
    gae_lambda: float = 0.95
    """GAE lambda (fork ``tau`` 0.95)."""
    max_epochs: int = 5000
    """Training iterations. The fork's count is not in the spec; DiffRL's Ant value (5000) is used."""
    hidden: tuple[int, ...] = (400, 200, 100)
    """Hidden widths of the shared actor-critic trunk (fork [400, 200, 100])."""
    activation: str = "elu"
    """Hidden activation (fork ELU): elu, mish, relu or tanh."""
    logstd_init: float = 0.0
    """Initial value of the state-independent log-std (fork ``fixed_sigma``, sigma init 0)."""
    lr: float = 5e-4
    """Initial learning rate (fork 5e-4; DiffRL 3e-4)."""
    lr_schedule: str = "adaptive"
    """'adaptive' (KL-driven, fork), 'linear' (to final_lr over max_epochs) or 'constant'."""
    kl_threshold: float = 0.008
    """Target KL of the adaptive schedule (fork ``kl_threshold`` 0.008): above 2x the rate is divided by
    1.5, below half it is multiplied by 1.5."""
    lr_min: float = 1e-6
    """Lower bound of the adaptive learning rate (rl_games' adaptive scheduler; not in the spec)."""
    lr_max: float = 1e-2
    """Upper bound of the adaptive learning rate (rl_games' adaptive scheduler; not in the spec)."""
    final_lr: float = 1e-5
    """Learning rate reached at max_epochs by the linear schedule."""
    clip: float = 0.2
    """Ratio clip epsilon of the surrogate and of the value clipping (fork ``e_clip`` 0.2)."""
    value_clip: bool = True
    """Clip the value update around the rollout's values (fork ``clip_value``)."""
    mini_epochs: int = 5
    """Passes over each rollout (fork ``mini_epochs`` 5)."""
    minibatches: int = 4
    """Minibatches per pass: actors x horizon / minibatch size (fork: 2048 x 32 / 16384 = 4 on every env)."""
    critic_coef: float = 4.0
    """Weight of the value loss (fork ``critic_coef`` 4; the loss is 0.5 x critic_coef x squared error)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (fork 0)."""
    bounds_loss_coef: float = 1e-4
    """Weight of the penalty on action means outside [-1.1, 1.1] (fork ``bounds_loss_coef`` 1e-4)."""
    grad_clip: float = 1.0
    """Max global gradient norm of each step (fork ``grad_norm`` 1, ``truncate_grads``)."""
    reward_scale: float = 0.01
    """Rewards are multiplied by this for learning (fork ``reward_shaper.scale_value`` 0.01); logged returns
    are the env's own."""
    normalize_input: bool = True
    """Normalise observations with running statistics (fork ``normalize_input``)."""
    normalize_value: bool = True
    """Learn values in the space of running return statistics (fork ``normalize_value``)."""
    normalize_advantage: bool = True
    """Standardise the advantages of each rollout (fork ``normalize_advantage``)."""
    max_nonfinite_windows: int = 100
    """Raise NonFiniteGradientError after this many consecutive update steps (minibatches; 20 per
    iteration by default) with a nan/inf gradient."""

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("lr_schedule", self.lr_schedule, PPO_SCHEDULES)
        check_at_least_one(
            self, "horizon", "max_epochs", "mini_epochs", "minibatches", "max_nonfinite_windows"
        )
        if not 0.0 < self.clip < 1.0:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")


# -- the loss pieces (hand-checked in tests/test_ppo.py) ----------------------------------------------


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates over one rollout, all tensors [H, N].

    ``values[t]`` = V(s_t); ``next_values[t]`` = V of the state step t reached (0 where it terminated, the
    pre-reset state where it was truncated); ``dones[t]`` marks an episode end at step t, where the
    recursion restarts. delta_t = r_t + gamma V'_t - V(s_t); A_t = delta_t + gamma lam (1 - d_t) A_{t+1},
    with A_H = 0 (the last step bootstraps through V'_{H-1}).
    """
    advantages = torch.empty_like(rewards)
    following = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        following = delta + gamma * lam * torch.where(dones[t], 0.0, following)
        advantages[t] = following
    return advantages


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)), rho = exp(log_prob - old_log_prob)."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)); plain squared error if ``clip`` is
    None."""
    loss = (values - returns).square()
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        loss = torch.maximum(loss, (clipped - returns).square())
    return loss.mean()


def bounds_loss(mean: torch.Tensor, bound: float = BOUND) -> torch.Tensor:
    """Penalty on action means outside [-bound, bound]: mean over samples of the summed squared excess."""
    excess = (mean - bound).clamp(min=0.0).square() + (mean + bound).clamp(max=0.0).square()
    return excess.sum(-1).mean()


def gaussian_log_prob(action: torch.Tensor, mean: torch.Tensor, logstd: torch.Tensor) -> torch.Tensor:
    """log N(action; mean, exp(logstd)^2), summed over action dimensions."""
    z = (action - mean) * torch.exp(-logstd)
    return (-0.5 * z.square() - logstd - 0.5 * math.log(2.0 * math.pi)).sum(-1)


def gaussian_kl(
    old_mean: torch.Tensor, old_logstd: torch.Tensor, mean: torch.Tensor, logstd: torch.Tensor
) -> torch.Tensor:
    """Mean over samples of KL(old || new) between diagonal Gaussians, summed over action dimensions."""
    old_var, var = torch.exp(2.0 * old_logstd), torch.exp(2.0 * logstd)
    kl = logstd - old_logstd + (old_var + (old_mean - mean).square()) / (2.0 * var) - 0.5
    return kl.sum(-1).mean()


def adaptive_lr(lr: float, kl: float, threshold: float, lr_min: float, lr_max: float) -> float:
    """Divide the rate by 1.5 when kl > 2 threshold, multiply it by 1.5 when kl < threshold / 2."""
    if kl > 2.0 * threshold:
        return max(lr / 1.5, lr_min)
    if kl < 0.5 * threshold:
        return min(lr * 1.5, lr_max)
    return lr


class PolicyValueNet(nn.Module):
    """Shared trunk with a linear head of act_dim means and one value, and a state-independent log-std."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], activation: str, logstd_init: float
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.body = mlp(obs_dim, hidden, act_dim + 1, activation)
        self.logstd = nn.Parameter(torch.full((act_dim,), float(logstd_init)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action mean [..., act_dim], value [...]) of normalised observations."""
        out = self.body(obs)
        return out[..., : self.act_dim], out[..., self.act_dim]


class PPO(Learner):
    """PPO over any env following the warpbench env protocol (see ``envs/__init__.py``).

    The recorder gets ``action`` the clipped action, ``action_raw`` the Gaussian sample.
    """

    def __init__(self, env: Any, config: PPOConfig, seed: int) -> None:
        if config.horizon * env.num_envs < config.minibatches:
            raise ValueError(
                f"a rollout of {config.horizon} x {env.num_envs} samples cannot fill "
                f"{config.minibatches} minibatches"
            )
        super().__init__(env, config, seed, obs_rms=config.normalize_input)
        self.config: PPOConfig = config
        self.net = PolicyValueNet(
            env.obs_dim, env.act_dim, config.hidden, config.activation, config.logstd_init
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.update_step = ActorStep(self.net, self.optimizer, config.grad_clip, config.max_nonfinite_windows)
        self.value_rms = RunningMeanStd((), device=env.device) if config.normalize_value else None
        self.lr = config.lr
        self.env.reset()

    @property
    def env_steps_per_iteration(self) -> int:
        return self.config.horizon * self.env.num_envs

    def _denormalize_value(self, value: torch.Tensor) -> torch.Tensor:
        if self.value_rms is None:
            return value
        return value * torch.sqrt(self.value_rms.var + VAR_EPS) + self.value_rms.mean

    def _normalize_value(self, value: torch.Tensor) -> torch.Tensor:
        if self.value_rms is None:
            return value
        return (value - self.value_rms.mean) / torch.sqrt(self.value_rms.var + VAR_EPS)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations: clip(mu) or clip(a sample from the training noise stream)."""
        mean, _ = self.net(self.normalize_obs(obs))
        if not deterministic:
            noise = torch.randn(mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype)
            mean = mean + self.net.logstd.exp() * noise
        return mean.clamp(-1.0, 1.0)

    def train_iteration(self) -> dict[str, float]:
        """One rollout and its update. Returns per-iteration metrics."""
        cfg = self.config
        if cfg.lr_schedule != "adaptive":
            self.lr = scheduled_lr(cfg.lr, self.iteration, cfg.max_epochs, cfg.lr_schedule, cfg.final_lr)
            set_learning_rate(self.optimizer, self.lr)
        batch, metrics = self._rollout()
        metrics.update(self._update(batch))
        metrics.update(lr=self.lr, actor_std_mean=float(self.net.logstd.detach().exp().mean()))
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    @torch.no_grad()
    def _rollout(self) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        cfg = self.config
        obs = self.env.detach_state()
        observations = []
        fields: dict[str, list[torch.Tensor]] = {
            name: [] for name in ("inputs", "action", "log_prob", "mean", "value", "reward", "next_value")
        }
        dones = []
        terminations = truncations = 0
        logstd = self.net.logstd
        for _ in range(cfg.horizon):
            inputs = self.normalize_obs(obs)
            mean, value = self.net(inputs)
            noise = torch.randn(mean.shape, generator=self.generator, device=self.device, dtype=mean.dtype)
            action = mean + logstd.exp() * noise
            env_action = action.clamp(-1.0, 1.0)
            next_obs, reward, terminated, truncated, info = self.env.step(env_action)
            done = self.record_step(obs, env_action, action, reward, terminated, truncated, info)
            final_obs = info["obs_before_reset"]
            _, final_value = self.net(self.normalize_obs(final_obs))
            next_value = torch.where(terminated, 0.0, self._denormalize_value(final_value))
            step = {
                "inputs": inputs,
                "action": action,
                "log_prob": gaussian_log_prob(action, mean, logstd),
                "mean": mean,
                "value": self._denormalize_value(value),
                "reward": reward * cfg.reward_scale,
                "next_value": next_value,
            }
            for name, tensor in step.items():
                fields[name].append(tensor)
            dones.append(done)
            observations.append(obs)
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            obs = next_obs
        rollout = {name: torch.stack(tensors) for name, tensors in fields.items()}
        rollout["advantage"] = gae(
            rollout["reward"],
            rollout["value"],
            rollout["next_value"],
            torch.stack(dones),
            cfg.gamma,
            cfg.gae_lambda,
        )
        rollout["return"] = rollout["advantage"] + rollout["value"]
        if self.obs_rms is not None:  # statistics for the next rollout (these inputs are already made)
            self.obs_rms.update(torch.stack(observations))
        metrics = {
            "early_terminations": float(terminations),
            "truncations": float(truncations),
            "reward_mean": float(rollout["reward"].mean()) / cfg.reward_scale,
            "value_mean": float(rollout["value"].mean()),
            "nonfinite_rewards": float((~torch.isfinite(rollout["reward"])).sum()),
        }
        batch = {name: tensor.flatten(0, 1) for name, tensor in rollout.items()}
        return batch, metrics

    def _update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        if self.value_rms is not None:
            self.value_rms.update(batch["return"])
        old_value = self._normalize_value(batch["value"])
        target = self._normalize_value(batch["return"])
        advantage = batch["advantage"]
        if cfg.normalize_advantage:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        old_logstd = self.net.logstd.detach().clone()
        count = advantage.shape[0]
        size = count // cfg.minibatches
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(cfg.mini_epochs):
            order = torch.randperm(count, generator=self.generator, device=self.generator.device)
            order = order.to(self.device)
            for start in range(0, size * cfg.minibatches, size):
                index = order[start : start + size]
                mean, value = self.net(batch["inputs"][index])
                logstd = self.net.logstd.expand_as(mean)
                log_prob = gaussian_log_prob(batch["action"][index], mean, logstd)
                ratio = torch.exp(log_prob - batch["log_prob"][index]).detach()
                parts = {
                    "actor_loss": clipped_surrogate(
                        log_prob, batch["log_prob"][index], advantage[index], cfg.clip
                    ),
                    "critic_loss": clipped_value_loss(
                        value, old_value[index], target[index], cfg.clip if cfg.value_clip else None
                    ),
                    "bounds_loss": bounds_loss(mean),
                    "entropy": (0.5 + 0.5 * math.log(2 * math.pi) + logstd).sum(-1).mean(),
                }
                loss = (
                    parts["actor_loss"]
                    + 0.5 * cfg.critic_coef * parts["critic_loss"]
                    + cfg.bounds_loss_coef * parts["bounds_loss"]
                    - cfg.entropy_coef * parts["entropy"]
                )
                # KL of this step's (pre-update) policy from the rollout's, as rl_games measures it.
                kl = float(gaussian_kl(batch["mean"][index], old_logstd, mean.detach(), logstd.detach()))
                step = self.update_step(loss, self.iteration)
                if cfg.lr_schedule == "adaptive" and math.isfinite(kl):
                    self.lr = adaptive_lr(self.lr, kl, cfg.kl_threshold, cfg.lr_min, cfg.lr_max)
                    set_learning_rate(self.optimizer, self.lr)
                values = {name: float(part.detach()) for name, part in parts.items()}
                values.update(
                    kl=kl,
                    clip_fraction=float(((ratio - 1.0).abs() > cfg.clip).float().mean()),
                    grad_norm=step["actor_grad_norm"],
                    grad_norm_clipped=step["actor_grad_norm_clipped"],
                    nonfinite_grad_steps=step["nonfinite_actor_grad"],
                )
                for name, value_ in values.items():
                    sums[name] = sums.get(name, 0.0) + value_
                steps += 1
        metrics = {name: total / steps for name, total in sums.items()}
        metrics["nonfinite_grad_steps"] = sums["nonfinite_grad_steps"]  # a count, not a mean
        return metrics

    def nonfinite_totals(self) -> dict[str, int]:
        """Update steps skipped over the whole run because their gradient had nan/inf entries."""
        return {"nonfinite_update_steps": self.update_step.nonfinite_windows}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: network, optimiser, learning rate, normalisers, RNG,
        episode statistics, env state."""
        return {
            **super().state_dict(),
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr": self.lr,
            "value_rms": self.value_rms.state_dict() if self.value_rms is not None else None,
            "consecutive_nonfinite": self.update_step.consecutive_nonfinite,
            "nonfinite_update_steps": self.update_step.nonfinite_windows,
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr = state["lr"]
        if self.value_rms is not None:
            self.value_rms.load_state_dict(state["value_rms"])
        self.update_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.update_step.nonfinite_windows = state["nonfinite_update_steps"]
        self.env.load_state_dict(state["env"])
