"""Rigid-body dynamics against MuJoCo on the same compiled models (passive terms and contact off)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from envs.sim.autograd import control_step
from envs.sim.model import PhysicsParams, build_model
from envs.sim.simulator import Simulator
from tests.helpers import asset_model, random_states

NO_PASSIVE = dict(joint_stiffness=0.0, joint_damping=0.0, contact_ke=0.0, contact_kd=0.0, contact_kf=0.0)


def mujoco_without_passive(name: str) -> mujoco.MjModel:
    m = asset_model(name)
    flags = mujoco.mjtDisableBit
    m.opt.disableflags |= (
        flags.mjDSBL_SPRING | flags.mjDSBL_DAMPER | flags.mjDSBL_CONTACT | flags.mjDSBL_CONSTRAINT
    )
    return m


@pytest.mark.parametrize("name", ["ant", "humanoid"])
def test_mass_matrix_bias_and_accelerations_match_mujoco(name):
    m = mujoco_without_passive(name)
    model = build_model(m, PhysicsParams(substeps=1, mass_matrix_interval=1, **NO_PASSIVE))
    q, qd = random_states(m, num=6, seed=3)
    tau_applied = np.random.default_rng(4).normal(size=(6, m.nv)) * 20
    tau_applied[:, :6] = 0
    sim = Simulator(model, 6)
    dynamics = sim.dynamics(torch.tensor(q), torch.tensor(qd), torch.tensor(tau_applied))
    M_engine, tau, qdd = dynamics.mass_matrix.numpy(), dynamics.force.numpy(), dynamics.qdd.numpy()
    d = mujoco.MjData(m)
    for e in range(6):
        d.qpos[:], d.qvel[:], d.qfrc_applied[:] = q[e], qd[e], tau_applied[e]
        mujoco.mj_forward(m, d)
        M = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, d, M)
        bias_engine = tau_applied[e] - tau[e]
        assert np.abs(M_engine[e] - M).max() <= 1e-4 * np.abs(M).max()
        assert np.abs(bias_engine - d.qfrc_bias).max() <= 1e-4 * np.abs(d.qfrc_bias).max()
        assert np.abs(qdd[e] - d.qacc).max() <= 1e-4 * np.abs(d.qacc).max()


@pytest.mark.parametrize("name", ["ant", "humanoid"])
def test_free_flight_trajectory_matches_mujoco(name):
    """0.5 s of free flight from random states: world body positions agree with MuJoCo's."""
    m = mujoco_without_passive(name)
    substeps, steps = 16, 30
    m.opt.timestep = 1.0 / 60.0 / substeps
    m.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
    model = build_model(m, PhysicsParams(substeps=substeps, mass_matrix_interval=1, **NO_PASSIVE))
    q, qd = random_states(m, num=2, seed=5, velocity_scale=0.5)
    sim = Simulator(model, 2)
    qt, qdt = torch.tensor(q), torch.tensor(qd)
    zero = torch.zeros(2, m.nv, dtype=torch.float64)
    for _ in range(steps):
        qt, qdt = control_step(sim, qt, qdt, zero)
    links = torch.as_tensor(model.body_link[1:])
    engine_pos = sim.link_transforms(qt)[:, links, :3].numpy()
    d = mujoco.MjData(m)
    for e in range(2):
        d.qpos[:], d.qvel[:] = q[e], qd[e]
        for _ in range(steps * substeps):
            mujoco.mj_step(m, d)
        mujoco.mj_kinematics(m, d)  # mj_step leaves xpos at the state before its last integration
        # Both integrate semi-implicitly; the quaternion update differs at second order in the step.
        np.testing.assert_allclose(engine_pos[e], d.xpos[1:], atol=1e-4)
