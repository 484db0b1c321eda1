"""One control step as a ``torch.autograd.Function``.

Forward runs the Warp substeps without recording; backward recomputes them and runs their adjoints (spec
issue: checkpointing per control step), so a rollout of H steps keeps only H step inputs alive.
"""

from __future__ import annotations

import torch

from envs.sim.simulator import Simulator


class _ControlStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim: Simulator, q, qd, actuation, muscle_force):  # noqa: ANN001 - autograd signature
        ctx.sim = sim
        ctx.save_for_backward(q, qd, actuation, muscle_force)
        return sim.forward(q, qd, actuation, muscle_force)

    @staticmethod
    def backward(ctx, adj_q, adj_qd):  # noqa: ANN001
        q, qd, actuation, muscle_force = ctx.saved_tensors
        adj_q_in, adj_qd_in, adj_act, adj_mf = ctx.sim.backward(
            q, qd, actuation, muscle_force if muscle_force.numel() else None, adj_q, adj_qd
        )
        if adj_mf is None:
            adj_mf = torch.zeros_like(muscle_force)
        return None, adj_q_in, adj_qd_in, adj_act, adj_mf


def control_step(
    sim: Simulator,
    q: torch.Tensor,
    qd: torch.Tensor,
    actuation: torch.Tensor,
    muscle_force: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance (q, qd) by one control step under generalized forces ``actuation`` [N, nv] and muscle
    forces ``muscle_force`` [N, num_muscles] (newtons, signed), all float64.

    Differentiable with respect to every tensor input when grad mode is on and any input requires grad;
    otherwise nothing is recorded.
    """
    if muscle_force is None:
        muscle_force = actuation.new_zeros((actuation.shape[0], 0))
    inputs = (q, qd, actuation, muscle_force)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _ControlStep.apply(sim, *inputs)
    return sim.forward(*(t.detach().contiguous() for t in inputs))
