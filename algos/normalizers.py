"""Running mean/variance normalisers and the return-normalised actor objective (algorithms §1)."""

from __future__ import annotations

import torch
from torch import nn

CLIP = 5.0
VAR_EPS = 1e-5


class RunningMeanStd(nn.Module):
    """Parallel-variance running mean and variance of samples of a fixed ``shape``.

    Statistics live in buffers, so ``state_dict`` / ``load_state_dict`` / ``copy.deepcopy`` carry them.
    ``update`` ignores samples with a non-finite entry: one NaN would otherwise poison the statistics for
    the rest of the run.
    """

    def __init__(self, shape: tuple[int, ...] = (), initial_count: float = 1e-4, device: str = "cpu") -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float32, device=device))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float32, device=device))
        self.register_buffer("count", torch.tensor(initial_count, dtype=torch.float32, device=device))

    @torch.no_grad()
    def update(self, samples: torch.Tensor) -> None:
        """Merge a batch of samples shaped [..., *shape] into the running statistics."""
        samples = samples.detach().reshape(-1, *self.shape).float()
        finite = torch.isfinite(samples).reshape(samples.shape[0], -1).all(dim=1)
        samples = samples[finite]
        if samples.shape[0] == 0:
            return
        batch_mean = samples.mean(dim=0)
        batch_var = samples.var(dim=0, unbiased=False)
        batch_count = samples.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = (
            self.var * self.count
            + batch_var * batch_count
            + delta.square() * self.count * batch_count / total
        )
        self.mean.add_(delta * batch_count / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + 1e-5), clamped to [-5, 5]; differentiable in x."""
        return ((x - self.mean) / torch.sqrt(self.var + VAR_EPS)).clamp(-CLIP, CLIP)


def normalized_actor_loss(
    per_env_loss: torch.Tensor, horizon: int, ret_rms: RunningMeanStd | None
) -> torch.Tensor:
    """Mean over envs of the per-env actor loss, divided by H or, with ``ret_rms``, by its running std.

    ``ret_rms`` tracks the variance of the per-env loss itself and is updated with this batch first
    (no mean shift, no clamp).
    """
    if ret_rms is None:
        return per_env_loss.mean() / horizon
    ret_rms.update(per_env_loss)
    return (per_env_loss / torch.sqrt(ret_rms.var + VAR_EPS)).mean()
