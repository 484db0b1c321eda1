"""Actor and critic MLPs shared by SHAC and PWM, and the optimiser helpers that go with them.

Spec: algorithms §1. Every hidden layer is Linear -> activation -> LayerNorm; the output layer is linear.
Mish is :class:`Mish`, a faster formulation of ``torch.nn.Mish`` (same function, rounding differs by
~1e-6; see there).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


class _MishFunction(torch.autograd.Function):
    """mish(x) = x tanh(softplus(x)) from one sigmoid s = sigmoid(x): tanh(softplus(x)) = n / (2 - n) with
    n = s (2 - s) (no cancellation for small s); d mish / dx = t + x s (1 - t^2), t = tanh(softplus(x))."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205 - autograd signature
        s = torch.sigmoid(x)
        n = (2.0 - s).mul_(s)
        t = n.div_(2.0 - n)
        ctx.save_for_backward(x, s, t)
        return x * t

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, s, t = ctx.saved_tensors
        return torch.rsub(t * t, 1.0).mul_(s).mul_(x).add_(t).mul_(grad)


class Mish(nn.Module):
    """Mish, as ``torch.nn.Mish`` but faster forward and backward on a CPU core (torch's kernel evaluates
    tanh and softplus per element; this takes a few vectorised passes from one sigmoid). The values differ
    from torch's by rounding only (< 4e-6 absolute on [-60, 60] in float32; tests/test_networks.py).
    Under ``torch.func`` transforms (the landscape's vmap) it is torch's kernel: a functorch-style version of
    the function above, with its two saved intermediates as extra outputs, was slower than torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch._C._are_functorch_transforms_active():
            return nn.functional.mish(x)
        return _MishFunction.apply(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "mish": Mish, "relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    """Linear -> activation -> LayerNorm for every hidden width, then a linear output layer."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.LayerNorm(size)]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class StochasticActor(nn.Module):
    """Gaussian policy: mean mu(obs) from an MLP, state-independent log-std parameter.

    The env receives tanh of a sample (training) or tanh(mu) (deterministic). Sampling is reparameterised,
    so gradients flow from the action into the mean and the log-std.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        activation: str,
        logstd_init: float = -1.0,
        logstd_min: float | None = None,
    ) -> None:
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden, act_dim, activation)
        self.logstd = nn.Parameter(torch.full((act_dim,), float(logstd_init)))
        self.logstd_min = logstd_min

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean mu(obs) of the pre-squash Gaussian."""
        return self.mean_net(obs)

    def std(self) -> torch.Tensor:
        logstd = self.logstd if self.logstd_min is None else self.logstd.clamp(min=self.logstd_min)
        return logstd.exp()

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised pre-squash sample a_raw = mu + std * eps."""
        mean = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.std() * noise

    def act(
        self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The action sent to the env: tanh(mu) if deterministic, else tanh(sample)."""
        return torch.tanh(self(obs) if deterministic else self.sample(obs, generator))


class CriticEnsemble(nn.Module):
    """K value MLPs, orthogonal init (gain sqrt 2, zero bias); the value estimate is the member minimum."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str, num_critics: int = 1) -> None:
        super().__init__()
        if num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {num_critics}")
        self.members = nn.ModuleList(mlp(obs_dim, hidden, 1, activation) for _ in range(num_critics))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, gain=math.sqrt(2.0))
                nn.init.zeros_(module.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Every member's value, shape [K, *batch]."""
        return torch.stack([member(obs).squeeze(-1) for member in self.members])

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """min over members, shape [*batch]."""
        return self(obs).min(dim=0).values


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gradient_norm(parameters: Iterable[nn.Parameter]) -> float:
    """Global L2 norm of the gradients (inf or nan if any entry is)."""
    grads = [p.grad.detach().flatten() for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.cat(grads)))


def zero_nonfinite_gradients(parameters: Iterable[nn.Parameter]) -> bool:
    """Replace nan/inf gradient entries by 0 in place; True if any were found."""
    found = False
    for p in parameters:
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            found = True
            p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    return found
