"""The SNU humanoid env: muscle force directions, gradients, long rollouts, MuJoCo parity."""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

import envs
from envs import rotations as rot
from envs.models.snu import load_snu
from envs.sim.autograd import control_step
from envs.sim.model import PhysicsParams, build_model
from envs.sim.simulator import Simulator
from envs.tasks.snu_humanoid import joint_passive

pytestmark = pytest.mark.skipif(
    not os.environ.get("WARPBENCH_SNU_DIR"), reason="SNU data files not available (set WARPBENCH_SNU_DIR)"
)


@pytest.fixture(scope="module")
def env():
    return envs.make("snu_humanoid", num_envs=1, seed=0, stochastic_init=False)


def joint_force_of_muscle(env, muscle: str, force: float = 100.0) -> torch.Tensor:
    """Generalized force that ``force`` newtons in one muscle add at the start pose (zero velocity)."""
    q = env.start_q[None]
    zero = torch.zeros(1, env.nv, dtype=torch.float64)
    taus = []
    for f in (0.0, force):
        muscle_force = torch.zeros(1, env.act_dim, dtype=torch.float64)
        muscle_force[0, MUSCLES.index(muscle)] = f
        taus.append(env.sim.dynamics(q, zero, zero, muscle_force).force[0])
    return taus[1] - taus[0]


MUSCLES = load_snu().muscles.names if os.environ.get("WARPBENCH_SNU_DIR") else []


def displaced_body_position(env, joint: str, direction: torch.Tensor, body: str, eps: float = 1e-3):
    """Position change of ``body`` when ``joint`` moves by eps along ``direction`` (its dof space)."""
    m = env.model.mjmodel
    j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, joint) if joint else -1
    q = env.start_q.clone()
    adr = int(m.jnt_qposadr[j])
    if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
        axis = direction / direction.norm()
        delta = rot.quat_from_axis_angle(axis, torch.tensor(eps, dtype=torch.float64))
        q[adr : adr + 4] = rot.xyzw_to_wxyz(rot.quat_mul(rot.wxyz_to_xyzw(q[adr : adr + 4]), delta))
    else:
        q[adr] += eps * torch.sign(direction[0])
    b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body)
    positions = []
    for state in (env.start_q, q):
        env.set_state(state[None], torch.zeros(1, env.nv))
        positions.append(env.body_positions()[0, b - 1].clone())
    return positions[1] - positions[0]


def dof_slice(env, joint: str) -> slice:
    m = env.model.mjmodel
    j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, joint)
    n = 3 if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL else 1
    return slice(int(m.jnt_dofadr[j]), int(m.jnt_dofadr[j]) + n)


def joint_name_of_body(env, body: str) -> str:
    m = env.model.mjmodel
    b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body)
    return mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, int(m.body_jntadr[b]))


@pytest.mark.parametrize(
    "muscle, joint_body, moved_body, expected",
    [
        # The character faces +x after its start rotation; y is up.
        ("R_Vastus_Lateralis", "TibiaR", "TalusR", "forward"),  # knee extensor swings the shank forward
        ("R_Rectus_Femoris", "TibiaR", "TalusR", "forward"),
        ("R_Semitendinosus", "TibiaR", "TalusR", "backward"),  # hamstring flexes the knee
        ("R_Bicep_Femoris_Short", "TibiaR", "TalusR", "backward"),
        ("R_Soleus", "TalusR", "FootThumbR", "down"),  # plantarflexors point the toes down
        # In the MASS data the gastrocnemius heads run femur -> tibia only: a knee flexor here.
        ("R_Gastrocnemius_Medial_Head", "TibiaR", "TalusR", "backward"),
        ("R_Tibialis_Anterior", "TalusR", "FootThumbR", "up"),  # dorsiflexor lifts them
        ("L_Soleus", "TalusL", "FootThumbL", "down"),
        ("L_Vastus_Lateralis", "TibiaL", "TalusL", "forward"),
    ],
)
def test_each_muscle_moves_its_joint_the_anatomical_way(env, muscle, joint_body, moved_body, expected):
    joint = joint_name_of_body(env, joint_body)
    tau = joint_force_of_muscle(env, muscle)[dof_slice(env, joint)]
    assert tau.norm() > 1e-3, "the muscle exerts no torque on its joint"
    move = displaced_body_position(env, joint, tau, moved_body)
    component = {"forward": move[0], "backward": -move[0], "down": -move[1], "up": move[1]}[expected]
    assert component > 0, f"{muscle} moves {moved_body} by {move.tolist()}, expected {expected}"


def test_muscle_force_gradients_match_finite_differences():
    snu = load_snu(passive=joint_passive)
    sim = Simulator(
        build_model(
            snu.mjmodel,
            PhysicsParams(substeps=48, mass_matrix_interval=8, limit_ke=snu.limit_ke, limit_kd=snu.limit_kd),
            muscles=snu.muscles,
        ),
        1,
    )
    q0 = torch.tensor(snu.mjmodel.qpos0)[None].clone()
    q0[0, 1] = 3.0  # in the air: smooth dynamics
    qd0 = torch.zeros(1, snu.mjmodel.nv, dtype=torch.float64)
    zero = torch.zeros_like(qd0)
    rng = np.random.default_rng(0)
    forces = torch.tensor(rng.uniform(-50, 50, size=(8, 1, 152)))
    w = torch.tensor(rng.normal(size=(1, snu.mjmodel.nq)))

    def loss(f):
        q, qd = q0, qd0
        for t in range(len(f)):
            q, qd = control_step(sim, q, qd, zero, f[t])
        return (q * w).sum() + qd.sum()

    f = forces.clone().requires_grad_(True)
    loss(f).backward()
    eps = 1e-5
    with torch.no_grad():
        for idx in [(0, 0, 0), (3, 0, 40), (7, 0, 151), (1, 0, 100)]:
            plus, minus = forces.clone(), forces.clone()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (loss(plus) - loss(minus)).item() / (2 * eps)
            assert f.grad[idx].item() == pytest.approx(fd, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("activation", ["zero", "random"])
def test_1000_steps_stay_finite_and_the_pelvis_lands_on_the_ground(activation):
    env = envs.make("snu_humanoid", num_envs=2, seed=1, early_termination=False)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(1000):
            a = torch.zeros(2, 152) if activation == "zero" else torch.rand(2, 152, generator=gen) * 2 - 1
            positions = env.body_positions()  # before the step-1000 truncation resets the envs
            obs, reward, terminated, truncated, info = env.step(a)
            assert torch.isfinite(obs).all() and torch.isfinite(reward).all() and not terminated.any()
    assert truncated.all()
    final_height = info["obs_before_reset"][:, 0]
    assert (final_height > 0.0).all() and (final_height < 0.46).all()  # fallen, resting on the ground
    assert (positions[..., 1] > -0.03).all()


def test_dimensions_and_start_observation(env):
    obs = env.reset()
    assert (env.obs_dim, env.act_dim) == (53, 152) and obs.shape == (1, 53)
    assert obs[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert obs[0, 51].item() == pytest.approx(1.0) and obs[0, 52].item() == pytest.approx(1.0)


def test_skeleton_dynamics_match_mujoco():
    m = load_snu().mjmodel
    flags = mujoco.mjtDisableBit
    m.opt.disableflags |= (
        flags.mjDSBL_SPRING | flags.mjDSBL_DAMPER | flags.mjDSBL_CONTACT | flags.mjDSBL_CONSTRAINT
    )
    model = build_model(
        m,
        PhysicsParams(
            substeps=1,
            mass_matrix_interval=1,
            joint_stiffness=0.0,
            joint_damping=0.0,
            contact_ke=0.0,
            contact_kd=0.0,
            contact_kf=0.0,
        ),
    )
    rng = np.random.default_rng(2)
    q = np.tile(m.qpos0, (4, 1))
    for j in range(m.njnt):
        adr = m.jnt_qposadr[j]
        if m.jnt_type[j] in (mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_BALL):
            s = adr + 3 if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE else adr
            quat = rng.normal(size=(4, 4))
            q[:, s : s + 4] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
        else:
            q[:, adr] = rng.uniform(-1, 1, size=4)
    qd = rng.normal(size=(4, m.nv))
    sim = Simulator(model, 4)
    dynamics = sim.dynamics(torch.tensor(q), torch.tensor(qd), torch.zeros(4, m.nv, dtype=torch.float64))
    d = mujoco.MjData(m)
    for e in range(4):
        d.qpos[:], d.qvel[:] = q[e], qd[e]
        mujoco.mj_forward(m, d)
        M = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, d, M)
        H = dynamics.mass_matrix[e].numpy()
        assert np.abs(H - M).max() <= 1e-4 * np.abs(M).max()
        assert np.abs(-dynamics.force[e].numpy() - d.qfrc_bias).max() <= 1e-4 * np.abs(d.qfrc_bias).max()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"snu_activation": "pushing"}, "snu_activation must be one of 'signed', 'unit'"),
        ({"snu_height_reward": "true"}, "snu_height_reward must be a bool"),
        ({"snu_strength_scale": -0.1}, "snu_strength_scale must be a number >= 0"),
        ({"snu_data_dir": 3}, "snu_data_dir must be a string"),
    ],
)
def test_snu_overrides_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        envs.make("snu_humanoid", **overrides)


def test_snu_parse_override_uses_the_snu_table():
    assert envs.parse_override("snu_humanoid", "snu_height_reward", "True") is True
    assert envs.parse_override("snu_humanoid", "snu_activation", "unit") == "unit"
    assert envs.parse_override("snu_humanoid", "snu_data_dir", "/data/snu") == "/data/snu"
    with pytest.raises(ValueError, match="valid keys"):
        envs.parse_override("ant", "snu_height_reward", "true")


def test_snu_data_dir_accepts_a_path():
    env = envs.make("snu_humanoid", snu_data_dir=Path(os.environ["WARPBENCH_SNU_DIR"]))
    assert env.cfg.snu_data_dir == os.environ["WARPBENCH_SNU_DIR"]


@pytest.mark.parametrize("height_reward", [False, True])
def test_snu_reward_terms_sum_to_the_reward(height_reward):
    env = envs.make("snu_humanoid", num_envs=2, seed=0, dtype="float64", snu_height_reward=height_reward)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            a = torch.rand(2, 152, generator=gen, dtype=torch.float64) * 2 - 1
            obs = env.obs.clone()
            _, reward, _, _, info = env.step(a)
    terms = info["reward_terms"]
    expected = ["progress", "up", "heading", "activation_cost"] + (["height"] if height_reward else [])
    assert list(terms) == expected
    torch.testing.assert_close(torch.stack(list(terms.values())).sum(0), reward, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["activation_cost"], -0.001 * a.abs().sum(1))
    torch.testing.assert_close(terms["up"], 0.1 * obs[:, 51])  # pre-step observation (Q1)
