"""TD(lambda) value targets and critic fitting, shared by SHAC and PWM (algorithms §1, §3.6)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.networks import CriticEnsemble, zero_nonfinite_gradients


@torch.no_grad()
def td_lambda_targets(
    rewards: torch.Tensor, next_values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) returns over one window, all tensors shaped [H, N].

    ``next_values[t]`` is V(s_{t+1}) (already 0 where the episode terminated at step t); ``dones[t]`` marks
    termination or truncation at step t. The last window step always counts as done:
    G_t = r_t + gamma * V'_t if done_t, else r_t + gamma * ((1 - lam) * V'_t + lam * G_{t+1}).
    """
    targets = torch.empty_like(rewards)
    following = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        done = dones[t] | (t == rewards.shape[0] - 1)
        mixed = (1.0 - lam) * next_values[t] + lam * following
        targets[t] = rewards[t] + gamma * torch.where(done, next_values[t], mixed)
        following = targets[t]
    return targets


@dataclass
class CriticFitStats:
    loss: float
    """Mean squared error over the last pass (mean over members and samples)."""
    grad_norm: float
    """Mean pre-clip gradient norm over all minibatch steps."""
    nonfinite_grad_steps: int
    """Minibatch steps whose gradient had nan/inf entries (zeroed before the step)."""


def fit_critic(
    critic: CriticEnsemble,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    iterations: int,
    num_batches: int,
    grad_clip: float,
    generator: torch.Generator,
) -> CriticFitStats:
    """Regress every ensemble member on ``targets`` for ``iterations`` shuffled passes of ``num_batches``.

    ``inputs`` [M, d] and ``targets`` [M] (M >= 1) carry no gradient; a remainder of M mod num_batches
    samples is left out of each pass. Loss = mean over members of (V_k(s) - G)^2.
    Non-finite gradient entries are zeroed (and counted), the gradient norm is clipped, then Adam steps.
    """
    count = inputs.shape[0]
    num_batches = min(num_batches, count)
    batch_size = count // num_batches
    used = batch_size * num_batches
    params = list(critic.parameters())
    grad_norms = []
    nonfinite_steps = 0
    pass_losses = []
    for _ in range(iterations):
        order = torch.randperm(count, generator=generator, device=generator.device).to(inputs.device)
        # One gather per pass, the minibatches are views of it.
        batch_inputs = inputs[order[:used]].view(num_batches, batch_size, -1)
        batch_targets = targets[order[:used]].view(num_batches, batch_size)
        pass_losses = []
        for x, target in zip(batch_inputs, batch_targets, strict=True):
            loss = (critic(x) - target).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads)
            if not bool(torch.isfinite(norm)):  # only then look for nan/inf entries, one parameter at a time
                nonfinite_steps += int(zero_nonfinite_gradients(params))
                norm = torch.nn.utils.get_total_norm(grads)
            torch.nn.utils.clip_grads_with_norm_(params, grad_clip, norm)
            grad_norms.append(norm)
            optimizer.step()
            pass_losses.append(loss.detach())
    losses, norms = torch.stack(pass_losses).tolist(), torch.stack(grad_norms).tolist()
    return CriticFitStats(
        loss=sum(losses) / len(losses),
        grad_norm=sum(norms) / len(norms),
        nonfinite_grad_steps=nonfinite_steps,
    )


@torch.no_grad()
def polyak_update(target: torch.nn.Module, source: torch.nn.Module, alpha: float) -> None:
    """theta' <- alpha * theta' + (1 - alpha) * theta."""
    for target_param, param in zip(target.parameters(), source.parameters(), strict=True):
        target_param.mul_(alpha).add_(param, alpha=1.0 - alpha)


class CriticUpdate:
    """Fit a critic ensemble to one window's TD(lambda) targets, leaving out (and counting) non-finite
    samples; ``nonfinite_steps`` totals the minibatch steps whose gradients had nan/inf entries."""

    def __init__(
        self,
        critic: CriticEnsemble,
        optimizer: torch.optim.Optimizer,
        iterations: int,
        num_batches: int,
        grad_clip: float,
    ) -> None:
        self.critic = critic
        self.optimizer = optimizer
        self.iterations = iterations
        self.num_batches = num_batches
        self.grad_clip = grad_clip
        self.nonfinite_steps = 0

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        """``inputs`` [H, N, d] (critic inputs of the window's states) and ``targets`` [H, N]."""
        inputs = inputs.reshape(-1, inputs.shape[-1])
        targets = targets.reshape(-1)
        finite = torch.isfinite(targets) & torch.isfinite(inputs).all(dim=1)
        metrics = {
            "critic_nonfinite_targets": float((~finite).sum()),
            "value_target_mean": float(targets.mean()),
        }
        if bool(finite.any()):
            stats = fit_critic(
                self.critic,
                self.optimizer,
                inputs[finite],
                targets[finite],
                self.iterations,
                self.num_batches,
                self.grad_clip,
                generator,
            )
            self.nonfinite_steps += stats.nonfinite_grad_steps
            metrics.update(
                critic_loss=stats.loss,
                critic_grad_norm=stats.grad_norm,
                nonfinite_critic_grad_steps=float(stats.nonfinite_grad_steps),
            )
        return metrics
