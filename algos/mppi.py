"""MPPI planning in a latent model: TD-MPC2's planner (algorithms §5, ``mpc=true``), as a pure function.

:func:`plan` searches action sequences a_0..a_{H-1} in [-1, 1] from latent states z_0 by iterated
importance sampling. Each iteration samples ``num_samples - num_policy_trajectories`` sequences from
N(mean, std), clipped to [-1, 1], beside ``num_policy_trajectories`` sequences of the policy prior rolled
through the model; every sequence is scored by sum_t gamma^t R(z_t, a_t) + gamma^H V(z_H); the
``num_elites`` best are weighted by exp(temperature * (score - max score)), and mean and std (clamped to
[min_std, max_std]) are refitted to them. The action returned is the first step of one elite drawn by its
weight, plus N(0, std_0) noise when exploring. Warm start: pass the previous plan's mean shifted by one
step (:func:`shift`).

The model is anything with ``step(z, a) -> (z', r)``, ``value(z, generator)`` (the terminal value V) and
``policy(z, generator)`` (an action sample of the prior), all on batches with any leading shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from algos.config import JsonConfig


@dataclass(frozen=True)
class MPPIConfig(JsonConfig):
    """The planner's settings; defaults are TD-MPC2's (algorithms §5, MPPI planner)."""

    iterations: int = 6
    """Refits of the sampling distribution per planned action (TD-MPC2: 6)."""
    num_samples: int = 512
    """Action sequences scored per iteration, policy trajectories included (TD-MPC2: 512)."""
    num_elites: int = 64
    """Best sequences the distribution is refitted to (TD-MPC2: 64)."""
    num_policy_trajectories: int = 24
    """Sequences drawn from the policy prior instead of the Gaussian (TD-MPC2: 24)."""
    horizon: int = 3
    """Planning horizon H (TD-MPC2: 3)."""
    min_std: float = 0.05
    """Lower bound of the sampling std (TD-MPC2: 0.05)."""
    max_std: float = 2.0
    """Upper bound of the sampling std and its initial value (TD-MPC2: 2)."""
    temperature: float = 0.5
    """Elite weights exp(temperature * (score - max score)) (TD-MPC2: 0.5)."""

    def __post_init__(self) -> None:
        for name in ("iterations", "num_samples", "num_elites", "horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"mppi.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.num_policy_trajectories <= self.num_samples:
            raise ValueError("mppi.num_policy_trajectories must be in [0, num_samples]")
        if self.num_elites > self.num_samples:
            raise ValueError(f"mppi.num_elites ({self.num_elites}) exceeds num_samples ({self.num_samples})")
        if not 0 < self.min_std <= self.max_std:
            raise ValueError("mppi std bounds must satisfy 0 < min_std <= max_std")
        if self.temperature <= 0:
            raise ValueError(f"mppi.temperature must be > 0, got {self.temperature}")


class PlanningModel(Protocol):
    def step(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next latent, reward)."""
        ...

    def value(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Terminal value V(z_H) (it may sample, e.g. Q(z, a) at a policy sample a)."""
        ...

    def policy(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """An action in [-1, 1] sampled from the policy prior."""
        ...


@dataclass
class Plan:
    action: torch.Tensor
    """[B, A] the action to execute."""
    mean: torch.Tensor
    """[B, H, A] the refitted mean sequence (shift it for the next step's warm start)."""
    std: torch.Tensor
    """[B, H, A] the refitted std."""
    nonfinite_scores: int
    """Trajectory scores that were nan/inf (never elites; counted, not patched)."""


def shift(mean: torch.Tensor) -> torch.Tensor:
    """The warm start of the next step: ``mean`` [B, H, A] advanced one step, zeros appended."""
    return torch.cat([mean[:, 1:], torch.zeros_like(mean[:, :1])], dim=1)


def trajectory_scores(
    model: PlanningModel, z: torch.Tensor, actions: torch.Tensor, gamma: float, generator: torch.Generator
) -> torch.Tensor:
    """sum_t gamma^t R(z_t, a_t) + gamma^H V(z_H) for z [..., L] and actions [..., H, A]."""
    score = torch.zeros(actions.shape[:-2], device=z.device, dtype=z.dtype)
    discount = 1.0
    for t in range(actions.shape[-2]):
        z, reward = model.step(z, actions[..., t, :])
        score = score + discount * reward
        discount *= gamma
    return score + discount * model.value(z, generator)


def policy_trajectories(
    model: PlanningModel, z: torch.Tensor, horizon: int, generator: torch.Generator
) -> torch.Tensor:
    """[..., H, A] action sequences of the policy prior rolled through the model from z [..., L]."""
    actions = []
    for _ in range(horizon):
        action = model.policy(z, generator)
        actions.append(action)
        z, _ = model.step(z, action)
    return torch.stack(actions, dim=-2)


@torch.no_grad()
def plan(
    model: PlanningModel,
    z: torch.Tensor,
    config: MPPIConfig,
    gamma: float,
    generator: torch.Generator,
    act_dim: int,
    init_mean: torch.Tensor | None = None,
    explore: bool = False,
) -> Plan:
    """Plan from latents ``z`` [B, L]; ``init_mean`` [B, H, A] warm-starts the mean (None: zeros).
    ``generator`` lives on z's device and draws every sample.

    FloatingPointError if every score of some state is nan/inf (nothing left to plan with).
    """
    cfg = config
    batch, device = z.shape[0], z.device
    horizon, samples, num_pi = cfg.horizon, cfg.num_samples, cfg.num_policy_trajectories
    mean = torch.zeros(batch, horizon, act_dim, device=device) if init_mean is None else init_mean.clone()
    std = torch.full((batch, horizon, act_dim), cfg.max_std, device=device)
    z_samples = z[:, None].expand(batch, samples, z.shape[-1])
    actions = torch.empty(batch, samples, horizon, act_dim, device=device)
    if num_pi:
        actions[:, :num_pi] = policy_trajectories(model, z_samples[:, :num_pi], horizon, generator)
    nonfinite = 0
    for _ in range(cfg.iterations):
        noise = torch.randn(batch, samples - num_pi, horizon, act_dim, generator=generator, device=device)
        actions[:, num_pi:] = (mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)
        scores = trajectory_scores(model, z_samples, actions, gamma, generator)
        finite = torch.isfinite(scores)
        nonfinite += int((~finite).sum())
        scores = torch.where(finite, scores, -torch.inf)
        elite_scores, elite_index = scores.topk(cfg.num_elites, dim=1)
        best = elite_scores[:, :1]
        if not bool(torch.isfinite(best).all()):
            raise FloatingPointError("MPPI: every trajectory score of a state is nan/inf")
        elites = actions.gather(1, elite_index[:, :, None, None].expand(-1, -1, horizon, act_dim))
        weights = torch.exp(cfg.temperature * (elite_scores - best))
        weights = weights / weights.sum(dim=1, keepdim=True)
        w = weights[:, :, None, None]
        mean = (w * elites).sum(dim=1)
        std = ((w * (elites - mean[:, None]).square()).sum(dim=1)).sqrt().clamp(cfg.min_std, cfg.max_std)
    chosen = torch.multinomial(weights, 1, generator=generator)
    action = elites[torch.arange(batch, device=device), chosen[:, 0], 0]
    if explore:
        noise = torch.randn(batch, act_dim, generator=generator, device=device)
        action = (action + std[:, 0] * noise).clamp(-1.0, 1.0)
    return Plan(action=action, mean=mean, std=std, nonfinite_scores=nonfinite)
