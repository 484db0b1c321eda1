"""Autograd through env steps against central finite differences (float64 engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.sim.autograd import control_step
from envs.sim.model import PhysicsParams, build_model
from envs.sim.simulator import Simulator
from tests.helpers import asset_model, random_states

ANT_PARAMS = dict(
    limit_ke=1e3, limit_kd=10.0, contact_ke=4e4, contact_kd=1e4, contact_kf=3e3, contact_mu=0.75
)


def rollout_loss(sim, q0, qd0, actions, wq, wqd):
    q, qd = q0, qd0
    for a in actions:
        q, qd = control_step(sim, q, qd, a)
    return (q * wq).sum() + (qd * wqd).sum()


def relative_errors(sim, q0, qd0, actions, wq, wqd, probes, eps=1e-6):
    a = actions.clone().requires_grad_(True)
    rollout_loss(sim, q0, qd0, a, wq, wqd).backward()
    errors = []
    with torch.no_grad():
        for idx in probes:
            plus, minus = actions.clone(), actions.clone()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (rollout_loss(sim, q0, qd0, plus, wq, wqd) - rollout_loss(sim, q0, qd0, minus, wq, wqd)) / (
                2 * eps
            )
            errors.append(abs(a.grad[idx].item() - fd.item()) / max(abs(fd.item()), 1e-8))
    return np.array(errors)


def ant_problem(height: float, steps: int, seed: int = 1):
    m = asset_model("ant")
    sim = Simulator(build_model(m, PhysicsParams(substeps=16, mass_matrix_interval=16, **ANT_PARAMS)), 2)
    rng = np.random.default_rng(seed)
    q0 = np.tile(m.qpos0, (2, 1))
    q0[:, 2] = height
    q0[:, 7:] += rng.uniform(-0.2, 0.2, size=(2, 8))
    actions = torch.tensor(rng.uniform(-20, 20, size=(steps, 2, m.nv)))
    actions[:, :, :6] = 0
    wq, wqd = torch.tensor(rng.normal(size=(2, m.nq))), torch.tensor(rng.normal(size=(2, m.nv)))
    probes = [(0, 0, 6), (0, 1, 9), (steps // 2, 0, 7), (steps - 1, 1, 13), (1, 0, 10), (3, 1, 12)]
    q0t, qd0t = torch.tensor(q0), torch.tensor(rng.normal(size=(2, m.nv)) * 0.3)
    return sim, q0t, qd0t, actions, wq, wqd, probes


def test_action_gradients_match_finite_differences_over_16_steps_without_contact():
    errors = relative_errors(*ant_problem(height=3.0, steps=16))
    assert errors.max() < 1e-3, errors


def test_action_gradients_with_ground_contact():
    """Measured on this problem: relative errors <= 1.3e-4 (ant standing on the ground, 16 steps)."""
    errors = relative_errors(*ant_problem(height=0.55, steps=16))
    assert errors.max() < 1e-3, errors


@pytest.mark.parametrize("name", ["hopper", "cheetah", "cartpole", "double_pendulum"])
def test_action_and_state_gradients_of_planar_and_fixed_base_models(name):
    """16 steps from a random state with joint limits and damping on (contact off: the hopper and cheetah
    fly), generalized forces on every dof, the planar roots' slides included."""
    m = asset_model(name)
    params = PhysicsParams(
        substeps=8, mass_matrix_interval=8, limit_ke=1e3, limit_kd=10.0, armature=0.1, ground=False
    )
    sim = Simulator(build_model(m, params), 2)
    q0, qd0 = (torch.tensor(x) for x in random_states(m, num=2, seed=2, velocity_scale=0.3))
    rng = np.random.default_rng(3)
    actions = torch.tensor(rng.uniform(-5, 5, size=(16, 2, m.nv)))
    wq, wqd = torch.tensor(rng.normal(size=(2, m.nq))), torch.tensor(rng.normal(size=(2, m.nv)))
    probes = [(0, 0, 0), (3, 1, m.nv - 1), (8, 0, 1), (15, 1, 0)]
    errors = relative_errors(sim, q0, qd0, actions, wq, wqd, probes)
    assert errors.max() < 1e-3, errors
    q0 = q0.clone().requires_grad_(True)
    rollout_loss(sim, q0, qd0, actions, wq, wqd).backward()
    eps = 1e-6
    with torch.no_grad():
        for e, j in [(0, 0), (1, m.nq - 1)]:
            plus, minus = q0.detach().clone(), q0.detach().clone()
            plus[e, j] += eps
            minus[e, j] -= eps
            fd = rollout_loss(sim, plus, qd0, actions, wq, wqd) - rollout_loss(
                sim, minus, qd0, actions, wq, wqd
            )
            assert q0.grad[e, j].item() == pytest.approx(fd.item() / (2 * eps), rel=1e-4, abs=1e-8)


def test_state_gradients_match_finite_differences():
    sim, q0, qd0, actions, wq, wqd, _ = ant_problem(height=3.0, steps=8)
    q0 = q0.clone().requires_grad_(True)
    rollout_loss(sim, q0, qd0, actions, wq, wqd).backward()
    eps = 1e-6
    with torch.no_grad():
        for e, j in [(0, 2), (1, 5), (0, 9), (1, 14)]:
            plus, minus = q0.detach().clone(), q0.detach().clone()
            plus[e, j] += eps
            minus[e, j] -= eps
            fd = rollout_loss(sim, plus, qd0, actions, wq, wqd) - rollout_loss(
                sim, minus, qd0, actions, wq, wqd
            )
            assert q0.grad[e, j].item() == pytest.approx(fd.item() / (2 * eps), rel=1e-4)


@pytest.mark.parametrize("name", ["ant", "humanoid", "hopper", "cheetah", "cartpole", "double_pendulum"])
def test_reward_gradient_through_env_steps(name):
    """Sum of 16 rewards w.r.t. the actions through env.step (contact on where there is a ground), float64."""
    env = envs.make(name, num_envs=2, seed=0, dtype="float64", early_termination=False)
    torch.manual_seed(0)
    actions = torch.rand(16, 2, env.act_dim, dtype=torch.float64) * 1.2 - 0.6
    state = env.state_dict()

    def total_reward(a):
        env.load_state_dict(state)
        return sum(env.step(a[t])[1].sum() for t in range(len(a)))

    a = actions.clone().requires_grad_(True)
    total_reward(a).backward()
    eps = 1e-6
    with torch.no_grad():
        for idx in [(0, 0, 0), (4, 1, min(3, env.act_dim - 1)), (10, 0, env.act_dim - 1)]:
            plus, minus = actions.clone(), actions.clone()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (total_reward(plus) - total_reward(minus)).item() / (2 * eps)
            assert a.grad[idx].item() == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_detach_state_cuts_the_graph_and_no_grad_records_nothing():
    env = envs.make("ant", num_envs=2, seed=0)
    a = torch.zeros(2, 8, requires_grad=True)
    obs, reward, *_ = env.step(a)
    assert obs.requires_grad and not reward.requires_grad  # Q1: reward from the pre-step observation
    assert not env.detach_state().requires_grad
    with torch.no_grad():
        obs, reward, *_ = env.step(a)
    assert not obs.requires_grad and not reward.requires_grad
