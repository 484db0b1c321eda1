"""The fast activations (algos.networks.Mish, the world model's SimNorm) against torch's own, and the critic
fit against a plain minibatch loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algos.critic import fit_critic
from algos.networks import CriticEnsemble, Mish, zero_nonfinite_gradients
from algos.world_model import SimNorm


def test_mish_matches_torch_in_value_and_gradient() -> None:
    x = torch.linspace(-60.0, 60.0, 200_001, requires_grad=True)
    reference = x.detach().double().requires_grad_(True)
    F.mish(reference).sum().backward()
    out = Mish()(x)
    out.sum().backward()
    assert (out.double() - F.mish(reference)).abs().max() < 4e-6
    assert (x.grad.double() - reference.grad).abs().max() < 1e-5
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), 0.0, -1e-30])
    torch.testing.assert_close(Mish()(special), F.mish(special), equal_nan=True)
    wide = (torch.randn(6, 9, dtype=torch.float64) * 6).requires_grad_(True)
    assert torch.autograd.gradcheck(Mish(), (wide,))


def test_simnorm_is_a_softmax_per_group() -> None:
    x = torch.randn(4, 3, 64) * 5
    out = SimNorm(8)(x)
    torch.testing.assert_close(out, x.unflatten(-1, (-1, 8)).softmax(-1).flatten(-2), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.unflatten(-1, (-1, 8)).sum(-1), torch.ones(4, 3, 8))
    assert torch.autograd.gradcheck(
        SimNorm(4), (torch.randn(3, 16, dtype=torch.float64, requires_grad=True),)
    )


def test_activations_work_under_vmap_and_its_gradient() -> None:
    """The landscape evaluates the actor with torch.func.vmap over stacked parameters and backpropagates."""
    weights = torch.randn(3, 4, 16, requires_grad=True)
    x = torch.randn(3, 5, 4)
    for module in (Mish(), SimNorm(8)):
        out = torch.func.vmap(lambda w, o, m=module: m(o @ w))(weights, x)
        torch.testing.assert_close(out, module(x @ weights))
        (grad,) = torch.autograd.grad(out.square().sum(), weights)
        (expected,) = torch.autograd.grad(module(x @ weights).square().sum(), weights)
        torch.testing.assert_close(grad, expected)


def _reference_fit(critic, optimizer, inputs, targets, iterations, num_batches, grad_clip, generator):
    """The plain loop: index every minibatch, zero nan/inf gradient entries, clip, step."""
    batch_size = inputs.shape[0] // num_batches
    params = list(critic.parameters())
    for _ in range(iterations):
        order = torch.randperm(inputs.shape[0], generator=generator)
        for start in range(0, batch_size * num_batches, batch_size):
            index = order[start : start + batch_size]
            loss = (critic(inputs[index]) - targets[index]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            zero_nonfinite_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()


def _fitted(fit, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    critic = CriticEnsemble(5, (16, 8), "mish", 3)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.7, 0.95))
    fit(critic, optimizer, inputs, targets, 3, 4, 0.5, torch.Generator().manual_seed(1))
    return torch.cat([p.detach().flatten() for p in critic.parameters()])


def test_fit_critic_equals_the_plain_minibatch_loop_bit_for_bit() -> None:
    """Gathering each pass once and checking for nan/inf only when the norm is not finite change nothing:
    the same parameters as the plain loop (within this process), and the same twice."""
    generator = torch.Generator().manual_seed(2)
    inputs, targets = torch.randn(103, 5, generator=generator), torch.randn(103, generator=generator) * 10
    fitted = _fitted(fit_critic, inputs, targets)
    assert torch.equal(fitted, _fitted(_reference_fit, inputs, targets))
    assert torch.equal(fitted, _fitted(fit_critic, inputs, targets))


def test_fit_critic_zeroes_and_counts_nonfinite_gradients() -> None:
    """A member whose gradients are nan is held (its entries are zeroed, Adam does not move it) while the
    others train, and every such step is counted."""
    torch.manual_seed(0)
    critic = CriticEnsemble(5, (16, 8), "mish", 2)
    with torch.no_grad():
        critic.members[0][0].weight[0, 0] = float("nan")
    before = [[p.detach().clone() for p in member.parameters()] for member in critic.members]
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    stats = fit_critic(
        critic, optimizer, torch.randn(40, 5), torch.randn(40), 2, 4, 1.0, torch.Generator().manual_seed(0)
    )
    assert stats.nonfinite_grad_steps == 8
    assert stats.grad_norm > 0.0
    held = [
        torch.allclose(p, q, rtol=0, atol=0, equal_nan=True)
        for p, q in zip(critic.members[0].parameters(), before[0], strict=True)
    ]
    assert all(held)
    assert not torch.equal(critic.members[1][0].weight, before[1][0])
