"""The simulator's public diagnostics, its replayed launch plans, and the Warp behaviour they rely on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import warp as wp

from envs.sim.model import PhysicsParams, build_model, make_struct
from envs.sim.plan import Clear, Launch, adjoint_ops, forward_ops
from envs.sim.simulator import Simulator
from tests.helpers import asset_model, random_states


@wp.struct
class Table:
    scale: wp.array(dtype=wp.float64)
    offset: wp.float64


@wp.kernel
def _scaled_sine(
    table: Table,
    shift: wp.vec3d,
    stride: int,
    x: wp.array2d(dtype=wp.float64),
    y: wp.array2d(dtype=wp.float64),
):
    e, i = wp.tid()
    y[e, i] = wp.sin(x[e, i] * table.scale[i] + table.offset) * shift[i % 3] * wp.float64(stride)


@wp.kernel
def _sum_squares(y: wp.array2d(dtype=wp.float64), total: wp.array(dtype=wp.float64)):
    e, i = wp.tid()
    wp.atomic_add(total, e, y[e, i] * y[e, i])


def test_plan_adjoint_is_what_warp_tape_backward_computes():
    """The plan builds adjoint launches itself from Warp's public API; if a Warp release changes how it
    differentiates a recorded launch (argument adjoints, structs, scalars), this fails before the
    simulator's gradients silently change."""
    rng = np.random.default_rng(0)
    table = make_struct(Table, scale=wp.array(rng.normal(size=5), dtype=wp.float64), offset=wp.float64(0.3))
    shift, stride = wp.vec3d(0.5, -1.0, 2.0), 3

    x_values, seed = rng.normal(size=(4, 5)), rng.normal(size=4)

    def arrays():
        x = wp.array(x_values, dtype=wp.float64, requires_grad=True)
        y = wp.zeros((4, 5), dtype=wp.float64, requires_grad=True)
        total = wp.zeros(4, dtype=wp.float64, requires_grad=True)
        return x, y, total

    x, y, total = arrays()
    steps = [
        Launch(_scaled_sine, (4, 5), [table, shift, stride, x], [y]),
        Clear(total),
        Launch(_sum_squares, (4, 5), [y], [total]),
    ]
    for op in forward_ops(steps, "cpu"):
        op()
    total.grad.assign(seed)
    for op in adjoint_ops(steps, "cpu"):
        op()

    x_ref, y_ref, total_ref = arrays()
    tape = wp.Tape()
    with tape:
        wp.launch(_scaled_sine, dim=(4, 5), inputs=[table, shift, stride, x_ref], outputs=[y_ref])
        wp.launch(_sum_squares, dim=(4, 5), inputs=[y_ref], outputs=[total_ref])
    tape.backward(grads={total_ref: wp.array(seed, dtype=wp.float64)})

    assert np.abs(x.grad.numpy()).min() > 0  # the comparison below is not between zeros
    np.testing.assert_array_equal(total.numpy(), total_ref.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), x_ref.grad.numpy())


@pytest.fixture(scope="module")
def ant():
    m = asset_model("ant")
    params = PhysicsParams(substeps=4, mass_matrix_interval=2, contact_ke=4e4, contact_kd=1e4, contact_kf=3e3)
    q, qd = random_states(m, num=3, seed=7, velocity_scale=0.5)
    q[:, 2] = 0.4  # low enough that some contact points touch the ground
    actuation = np.random.default_rng(8).normal(size=(3, m.nv)) * 10
    actuation[:, :6] = 0
    sim = Simulator(build_model(m, params), 3)
    return sim, torch.tensor(q), torch.tensor(qd), torch.tensor(actuation)


def test_dynamics_is_the_first_substep(ant):
    """M qdd = force, M symmetric, and one substep's velocity is qd + h qdd."""
    sim, q, qd, actuation = ant
    dynamics = sim.dynamics(q, qd, actuation)
    M = dynamics.mass_matrix
    assert torch.equal(M, M.transpose(1, 2))
    residual = torch.linalg.vector_norm(M @ dynamics.qdd.unsqueeze(-1) - dynamics.force.unsqueeze(-1))
    assert residual <= 1e-9 * torch.linalg.vector_norm(dynamics.force)
    one_substep = Simulator(build_model(sim.model.mjmodel, replace(sim.model.params, substeps=1)), 3)
    h = sim.model.params.control_dt
    _, qd_next = one_substep.forward(q, qd, actuation)
    torch.testing.assert_close(qd_next, qd + h * dynamics.qdd, rtol=1e-12, atol=1e-12)


def test_diagnostics_do_not_disturb_stepping(ant):
    sim, q, qd, actuation = ant
    first = sim.forward(q, qd, actuation)
    sim.dynamics(q + 0.1, qd, actuation * 2)
    sim.link_transforms(q - 0.1)
    second = sim.forward(q, qd, actuation)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_backward_repeats_exactly(ant):
    """Every gradient buffer is cleared between calls: nothing accumulates across control steps."""
    sim, q, qd, actuation = ant
    adj_q, adj_qd = torch.ones_like(q), torch.full_like(qd, 0.5)
    first = sim.backward(q, qd, actuation, None, adj_q, adj_qd)
    sim.backward(q + 0.05, qd, actuation, None, adj_q * 3, adj_qd)
    second = sim.backward(q, qd, actuation, None, adj_q, adj_qd)
    assert first[3] is None  # the ant has no muscles
    assert first[2].abs().max() > 0
    assert all(torch.equal(a, b) for a, b in zip(first[:3], second[:3], strict=True))
