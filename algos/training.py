"""Training pieces every actor-critic algorithm here shares (SHAC, PWM): learning-rate schedules, the
clipped actor step that skips non-finite gradients, and training-episode statistics.

The critic side (TD(lambda) targets and the critic update) lives in :mod:`algos.critic`.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from algos.networks import gradient_norm

LR_SCHEDULES = ("linear", "constant")
RECENT_EPISODES = 100


class NonFiniteGradientError(FloatingPointError):
    """Too many consecutive windows had a nan/inf actor gradient (the run fails, keeping its checkpoint)."""


def scheduled_lr(initial: float, iteration: int, max_epochs: int, schedule: str, final: float) -> float:
    """``constant``: ``initial``; ``linear``: initial + (final - initial) * iteration / max_epochs."""
    if schedule == "constant":
        return initial
    return initial + (final - initial) * iteration / max(max_epochs, 1)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def apply_schedule(
    optimizers: dict[str, tuple[torch.optim.Optimizer, float]],
    iteration: int,
    max_epochs: int,
    schedule: str,
    final: float,
) -> dict[str, float]:
    """Set each optimiser's learning rate for ``iteration``; returns ``{metric name: lr}``.

    ``optimizers`` maps a metric name (e.g. ``actor_lr``) to (optimiser, initial learning rate).
    """
    rates = {}
    for name, (optimizer, initial) in optimizers.items():
        rates[name] = scheduled_lr(initial, iteration, max_epochs, schedule, final)
        set_learning_rate(optimizer, rates[name])
    return rates


class ActorStep:
    """One clipped optimiser step on the actor's loss. A step whose gradient has nan/inf entries is skipped
    and counted (never patched); ``max_nonfinite`` such windows in a row raise NonFiniteGradientError."""

    def __init__(
        self, actor: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, max_nonfinite: int
    ) -> None:
        self.params = list(actor.parameters())
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.max_nonfinite = max_nonfinite
        self.consecutive_nonfinite = 0
        self.nonfinite_windows = 0

    def __call__(self, loss: torch.Tensor, iteration: int) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        # Gradients of the actor only: the loss also depends on critics (and PWM's world model), whose own
        # updates must not see them.
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        norm_before = gradient_norm(self.params)
        finite = math.isfinite(norm_before)
        if finite:
            self.consecutive_nonfinite = 0
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            norm_after = gradient_norm(self.params)
            self.optimizer.step()
        else:
            self.consecutive_nonfinite += 1
            self.nonfinite_windows += 1
            norm_after = float("nan")
            if self.consecutive_nonfinite >= self.max_nonfinite:
                raise NonFiniteGradientError(
                    f"actor gradient was nan/inf in {self.consecutive_nonfinite} consecutive windows "
                    f"(iteration {iteration}; limit max_nonfinite_windows={self.max_nonfinite})"
                )
        return {
            "actor_loss": float(loss.detach()),
            "actor_grad_norm": norm_before,
            "actor_grad_norm_clipped": norm_after,
            "nonfinite_actor_grad": float(not finite),
        }


class EpisodeTracker:
    """Returns and lengths of the training episodes (the stochastic policy's; labelled, never the score),
    and the per-iteration mean of each reward term an env reports in ``info["reward_terms"]``."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.episode_return = torch.zeros(num_envs, device=device)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[int] = deque(maxlen=RECENT_EPISODES)
        self.term_sums: dict[str, float] = {}
        self.term_steps = 0

    def add(self, reward: torch.Tensor, done: torch.Tensor, info: dict[str, Any]) -> None:
        """One env step: ``reward`` and ``done`` are [num_envs]; ``info`` as returned by ``env.step``."""
        self.episode_return += reward.detach()
        self.episode_length += 1
        if bool(done.any()):
            self.recent_returns.extend(self.episode_return[done].tolist())
            self.recent_lengths.extend(self.episode_length[done].tolist())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        terms = info.get("reward_terms")
        if terms:
            for name, value in terms.items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value.detach().float().mean())
            self.term_steps += 1

    def metrics(self) -> dict[str, float]:
        """``train_return`` and ``train_episode_length`` over the last 100 finished episodes (once there is
        one) and ``reward/<term>`` (mean over this iteration's env steps and envs); resets the term sums."""
        metrics = {}
        if self.recent_returns:
            metrics["train_return"] = sum(self.recent_returns) / len(self.recent_returns)
            metrics["train_episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
        for name, total in self.term_sums.items():
            metrics[f"reward/{name}"] = total / self.term_steps
        self.term_sums, self.term_steps = {}, 0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.episode_return.device
        self.episode_return = state["episode_return"].to(device)
        self.episode_length = state["episode_length"].to(device)
        self.recent_returns = deque(state["recent_returns"], maxlen=RECENT_EPISODES)
        self.recent_lengths = deque(state["recent_lengths"], maxlen=RECENT_EPISODES)
