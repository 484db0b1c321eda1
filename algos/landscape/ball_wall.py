"""The ball-and-wall launch: the PWM paper's pedagogical discontinuous objective (spec §6).

A ball leaves x = 0, y = 0 at speed 10 and angle θ, with horizontal acceleration 1 and gravity -9.81. A wall
of height 0 stands at x = 5: if the ball reaches x = 5 (within the 2 s) while at or below height 0, it stops
there (x clamped to 5). The objective is J(θ) = -x(t = 2), minimised over θ ∈ [-π, π]. Clearing the wall
gives the lowest J, just past the angle at which the ball would hit the wall's top; J jumps there.

Two regressors are fitted to J by MSE (Adam 2e-3, 100 epochs, batch 56): a plain MLP (1 -> [32, 32] -> 1,
Linear -> LayerNorm -> Mish hidden layers, the PWM version) and a SimNorm MLP (1 -> [32] -> 32 with
SimNorm(8), then a linear decoder). Positions are closed-form (no time stepping), so the jump is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from algos.world_model import NormedLinear, SimNorm


@dataclass(frozen=True)
class BallWall:
    speed: float = 10.0
    """Launch speed."""
    accel_x: float = 1.0
    """Constant horizontal acceleration."""
    gravity: float = -9.81
    """Vertical acceleration."""
    wall_x: float = 5.0
    """Position of the wall."""
    wall_height: float = 0.0
    """Top of the wall: a ball at x = wall_x at or below this height is stopped."""
    duration: float = 2.0
    """The objective reads the position at this time."""

    def objective(self, theta: torch.Tensor) -> torch.Tensor:
        """J(θ) = -x(duration); differentiable in θ where it is continuous (zero gradient where clamped)."""
        c, s = torch.cos(theta), torch.sin(theta)
        t_end = self.duration
        x_free = self.speed * c * t_end + 0.5 * self.accel_x * t_end**2
        # First time x reaches the wall: 0.5 a t^2 + v cos(θ) t - wall_x = 0 (positive root, a > 0).
        vx = self.speed * c
        t_wall = (-vx + torch.sqrt(vx**2 + 2.0 * self.accel_x * self.wall_x)) / self.accel_x
        y_wall = self.speed * s * t_wall + 0.5 * self.gravity * t_wall**2
        blocked = (t_wall <= t_end) & (y_wall <= self.wall_height)
        return -torch.where(blocked, torch.full_like(x_free, self.wall_x), x_free)


def plain_mlp() -> nn.Sequential:
    """1 -> [32, 32] -> 1 with Linear -> LayerNorm -> Mish hidden layers."""
    return nn.Sequential(NormedLinear(1, 32, nn.Mish()), NormedLinear(32, 32, nn.Mish()), nn.Linear(32, 1))


def simnorm_mlp() -> nn.Sequential:
    """1 -> [32] -> 32 latent with SimNorm(8), then a linear decoder to 1."""
    return nn.Sequential(NormedLinear(1, 32, nn.Mish()), NormedLinear(32, 32, SimNorm(8)), nn.Linear(32, 1))


MODELS = {"mlp": plain_mlp, "simnorm": simnorm_mlp}


@dataclass(frozen=True)
class FitConfig:
    samples: int = 1000
    """Training angles, evenly spaced over [-π, π]."""
    epochs: int = 100
    """Passes over the training set."""
    batch_size: int = 56
    """Minibatch size (the last batch of an epoch may be smaller)."""
    lr: float = 2e-3
    """Adam learning rate."""


def fit(
    model: nn.Module, theta: torch.Tensor, target: torch.Tensor, config: FitConfig, seed: int
) -> list[float]:
    """Fit ``model`` to (θ, J) by MSE with Adam; returns the mean loss of every epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = theta.reshape(-1, 1), target.reshape(-1, 1)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for start in range(0, x.shape[0], config.batch_size):
            index = order[start : start + config.batch_size]
            loss = (model(x[index]) - y[index]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / x.shape[0])
    return losses


def values_and_gradients(func: nn.Module | BallWall, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J(θ) and dJ/dθ by autodiff on a grid of angles."""
    t = torch.as_tensor(theta, dtype=torch.float32).clone().requires_grad_(True)
    value = func.objective(t) if isinstance(func, BallWall) else func(t.reshape(-1, 1)).reshape(-1)
    (grad,) = torch.autograd.grad(value.sum(), t)
    return value.detach().numpy().astype(np.float64), grad.numpy().astype(np.float64)


def optimality_gap(theta: np.ndarray, true_values: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Argmin of ``predicted`` on the grid, the true J there, and its gap to the true minimum on the grid."""
    i, best = int(np.argmin(predicted)), int(np.argmin(true_values))
    return {
        "argmin": float(theta[i]),
        "true_value_at_argmin": float(true_values[i]),
        "true_argmin": float(theta[best]),
        "true_min": float(true_values[best]),
        "gap": float(true_values[i] - true_values[best]),
    }


def grid(points: int) -> np.ndarray:
    """``points`` angles evenly spaced over [-π, π]."""
    return np.linspace(-math.pi, math.pi, points)
