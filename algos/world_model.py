"""The TD-MPC2-style world model PWM differentiates through (algorithms §3.1, §3.9; two-hot rewards §5).

Three MLPs over a latent z: encoder E(obs) -> z, deterministic dynamics F(z, a) -> z', reward R(z, a).
Hidden layers are ``NormedLinear`` (Linear -> dropout -> LayerNorm -> Mish); the latent layers of E and F
end in ``SimNorm(8)`` (softmax over groups of 8: a product of simplices); R ends in a plain linear layer
with zero-initialised weights. An optional learnable task embedding is concatenated to every input.

Optional termination head (``WorldModelConfig.termination_head``; TD-MPC2's, for episodic tasks, not part
of PWM): an MLP T(z') -> logit of "the env's termination condition holds at the state reached", trained
with binary cross-entropy (``algos.wm_training``) and used by PWM's offline mode to end imagined returns.
This is warpbench's extension beyond the PWM reference.

Ablation variants (``WorldModelConfig.variant``): ``mish`` (the latent layers end in Mish instead of
SimNorm) and ``relu`` (plain Linear -> ReLU MLPs without LayerNorm, linear latent layers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from algos.config import JsonConfig
from algos.networks import Mish

VARIANTS = ("simnorm", "mish", "relu")
Task = torch.Tensor | int | None
"""Task ids of a multi-task model (broadcastable to the batch shape); None for single-task models."""
REWARD_DECODES = ("symlog", "symexp")

# Widths per size (algorithms §3.9). "single" is the single-task model of the paper (TD-MPC2's 5M widths
# with a scalar reward); the multi-task sizes predict two-hot rewards; "small" is the CPU size (about a third
# of a paper-size step's time on one core; measured in shared/notes/pwm-online-calibration.md); "tiny" is
# for smoke runs and tests.
SIZES: dict[str, dict[str, Any]] = {
    "single": {"encoder_hidden": (256,), "hidden": (512, 512), "latent_dim": 512, "reward_bins": 0},
    "5M": {"encoder_hidden": (256,), "hidden": (512, 512), "latent_dim": 512, "reward_bins": 101},
    "19M": {"encoder_hidden": (1024, 1024), "hidden": (1024, 1024), "latent_dim": 768, "reward_bins": 101},
    "48M": {"encoder_hidden": (1792,) * 3, "hidden": (1792, 1792), "latent_dim": 768, "reward_bins": 101},
    "317M": {"encoder_hidden": (4096,) * 4, "hidden": (4096, 4096), "latent_dim": 1376, "reward_bins": 101},
    "small": {"encoder_hidden": (256,), "hidden": (256, 256), "latent_dim": 128, "reward_bins": 0},
    "tiny": {"encoder_hidden": (32,), "hidden": (32, 32), "latent_dim": 32, "reward_bins": 0},
}


@dataclass(frozen=True)
class WorldModelConfig(JsonConfig):
    encoder_hidden: tuple[int, ...] = (256,)
    """Hidden widths of the encoder E."""
    hidden: tuple[int, ...] = (512, 512)
    """Hidden widths of the dynamics F and of the reward head R."""
    latent_dim: int = 512
    """Size of the latent z."""
    simnorm_dim: int = 8
    """Group size of SimNorm (each group of the latent is a softmax)."""
    variant: str = "simnorm"
    """simnorm (paper), mish (no SimNorm: Mish ends the latent layers) or relu (plain ReLU MLPs)."""
    dropout: float = 0.0
    """Dropout rate in the first layer of every MLP (TD-MPC2 style; 0 = none)."""
    reward_bins: int = 0
    """0: scalar reward trained with MSE; >= 2: two-hot classification over this many bins (TD-MPC2: 101)."""
    reward_vmin: float = -10.0
    """Lowest two-hot bin (symlog space)."""
    reward_vmax: float = 10.0
    """Highest two-hot bin (symlog space)."""
    reward_decode: str = "symlog"
    """Two-hot decoding: symlog (expected bin value in symlog space, as PWM) or symexp (TD-MPC2's decoder)."""
    num_tasks: int = 0
    """Rows of the task-embedding table; 0 = single-task, no embedding."""
    task_dim: int = 96
    """Width of the task embedding (max-norm 1), used when num_tasks > 0."""
    termination_head: bool = False
    """Add TD-MPC2's termination head T(z') (hidden widths ``hidden``; our extension, used offline)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.reward_decode not in REWARD_DECODES:
            raise ValueError(f"reward_decode must be one of {', '.join(REWARD_DECODES)}")
        if self.variant == "simnorm" and self.latent_dim % self.simnorm_dim:
            raise ValueError(f"latent_dim {self.latent_dim} is not a multiple of {self.simnorm_dim}")
        if self.reward_bins == 1 or self.reward_bins < 0:
            raise ValueError(f"reward_bins must be 0 (scalar) or >= 2, got {self.reward_bins}")
        if not self.reward_vmin < self.reward_vmax:
            raise ValueError("reward_vmin must be below reward_vmax")


def world_model_config(size: str = "single", **changes: Any) -> WorldModelConfig:
    """The :data:`SIZES` entry ``size`` with ``changes`` applied (e.g. ``variant="mish"``)."""
    if size not in SIZES:
        raise ValueError(f"unknown world-model size {size!r}; valid: {', '.join(SIZES)}")
    return replace(WorldModelConfig(**SIZES[size]), **changes)


class _GroupSoftmax(torch.autograd.Function):
    """Softmax over the last dim, written out: torch's kernel is slow for groups as short as 8 on a CPU core.
    Same function, rounding differs (~1e-7). Functorch style, so ``torch.func.vmap`` works."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):  # noqa: ANN001, ANN205 - autograd signature
        y = (x - x.amax(dim=-1, keepdim=True)).exp_()
        return y.div_(y.sum(dim=-1, keepdim=True))

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: ANN001, ANN205
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (y,) = ctx.saved_tensors
        return (grad - (grad * y).sum(dim=-1, keepdim=True)).mul_(y)


class SimNorm(nn.Module):
    """Softmax over consecutive groups of ``dim`` features: every group lies on a simplex."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GroupSoftmax.apply(x.unflatten(-1, (-1, self.dim))).flatten(-2)


class NormedLinear(nn.Module):
    """Linear -> (dropout) -> LayerNorm -> activation."""

    def __init__(self, in_dim: int, out_dim: int, activation: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.norm = nn.LayerNorm(out_dim)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.activation(self.norm(x))


def _mlp(
    in_dim: int, hidden: tuple[int, ...], out_dim: int, config: WorldModelConfig, latent: bool
) -> nn.Sequential:
    """Hidden layers of ``config.variant``; last layer: the latent layer (``latent``) or a linear output."""
    plain = config.variant == "relu"
    layers: list[nn.Module] = []
    width = in_dim
    for i, size in enumerate(hidden):
        dropout = config.dropout if i == 0 else 0.0
        if plain:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        else:
            layers.append(NormedLinear(width, size, Mish(), dropout))
        width = size
    if latent and not plain:
        last = SimNorm(config.simnorm_dim) if config.variant == "simnorm" else Mish()
        layers.append(NormedLinear(width, out_dim, last))
    else:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class WorldModel(nn.Module):
    """Encoder, latent dynamics and reward head over observations of ``obs_dim`` and actions of ``act_dim``.

    ``task`` arguments (multi-task models only) are integer task ids broadcastable to the batch shape.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: WorldModelConfig) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        task_dim = config.task_dim if config.num_tasks > 0 else 0
        self.task_embedding = nn.Embedding(config.num_tasks, task_dim, max_norm=1.0) if task_dim else None
        latent = config.latent_dim
        self.encoder = _mlp(obs_dim + task_dim, config.encoder_hidden, latent, config, latent=True)
        self.dynamics = _mlp(latent + act_dim + task_dim, config.hidden, latent, config, latent=True)
        outputs = config.reward_bins if config.reward_bins else 1
        self.reward_head = _mlp(latent + act_dim + task_dim, config.hidden, outputs, config, latent=False)
        self.termination_head = (
            _mlp(latent + task_dim, config.hidden, 1, config, latent=False)
            if config.termination_head
            else None
        )
        self._init_weights()
        if config.reward_bins:
            bins = torch.linspace(config.reward_vmin, config.reward_vmax, config.reward_bins)
            self.register_buffer("bins", bins, persistent=False)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.reward_head[-1].weight)

    def _with_task(self, x: torch.Tensor, task: Task) -> torch.Tensor:
        if self.task_embedding is None:
            if task is not None:
                raise ValueError("this world model has no task embedding (num_tasks = 0)")
            return x
        if task is None:
            raise ValueError("a multi-task world model needs task ids")
        task = torch.as_tensor(task, device=x.device)
        embedding = self.task_embedding(task).expand(*x.shape[:-1], -1)
        return torch.cat([x, embedding], dim=-1)

    def encode(self, obs: torch.Tensor, task: Task = None) -> torch.Tensor:
        """z = E(obs)."""
        return self.encoder(self._with_task(obs, task))

    def next(self, z: torch.Tensor, action: torch.Tensor, task: Task = None) -> torch.Tensor:
        """z' = F(z, a)."""
        return self.dynamics(self._with_task(torch.cat([z, action], dim=-1), task))

    def reward_output(self, z: torch.Tensor, action: torch.Tensor, task: Task = None) -> torch.Tensor:
        """Raw reward-head output: [..., 1] (scalar) or [..., reward_bins] logits (two-hot)."""
        return self.reward_head(self._with_task(torch.cat([z, action], dim=-1), task))

    def decode_reward(self, output: torch.Tensor) -> torch.Tensor:
        """Scalar reward [...] from a reward-head output (two-hot: expected bin value, see reward_decode)."""
        if not self.config.reward_bins:
            return output.squeeze(-1)
        value = (output.softmax(dim=-1) * self.bins).sum(dim=-1)
        return symexp(value) if self.config.reward_decode == "symexp" else value

    def reward_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss [...]: squared error (scalar) or cross-entropy against two-hot(symlog(target))."""
        if not self.config.reward_bins:
            return (output.squeeze(-1) - target).square()
        return -(self.two_hot(target) * output.log_softmax(dim=-1)).sum(dim=-1)

    def two_hot(self, target: torch.Tensor) -> torch.Tensor:
        """Two-hot encoding [..., bins] of symlog(target) clamped to [vmin, vmax]."""
        cfg = self.config
        bin_size = (cfg.reward_vmax - cfg.reward_vmin) / (cfg.reward_bins - 1)
        position = (symlog(target).clamp(cfg.reward_vmin, cfg.reward_vmax) - cfg.reward_vmin) / bin_size
        lower = position.floor().clamp(max=cfg.reward_bins - 2)
        upper_weight = (position - lower).unsqueeze(-1)
        lower = lower.long().unsqueeze(-1)
        encoded = torch.zeros(*target.shape, cfg.reward_bins, device=target.device, dtype=target.dtype)
        encoded.scatter_(-1, lower, 1.0 - upper_weight)
        encoded.scatter_(-1, lower + 1, upper_weight)
        return encoded

    def termination_logit(self, z: torch.Tensor, task: Task = None) -> torch.Tensor:
        """Logit [...] that the termination condition holds at the state of latent ``z`` (a state reached by a
        transition, TD-MPC2's convention); ValueError without a termination head."""
        if self.termination_head is None:
            raise ValueError("this world model has no termination head (termination_head = False)")
        return self.termination_head(self._with_task(z, task)).squeeze(-1)

    def step(
        self, z: torch.Tensor, action: torch.Tensor, task: Task = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F(z, a), decoded R(z, a))."""
        inputs = self._with_task(torch.cat([z, action], dim=-1), task)
        return self.dynamics(inputs), self.decode_reward(self.reward_head(inputs))
