"""The planar and fixed-base tasks (envs §7): dimensions, start states, spec rewards, termination,
determinism and bad input. MuJoCo parity of their models is in test_mujoco_parity.py, their gradients in
test_gradients.py."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

import envs

# name, obs dim, act dim, episode length, substeps, refresh interval
TASKS = [
    ("hopper", 11, 3, 1000, 16, 16),
    ("cheetah", 17, 6, 1000, 16, 16),
    ("cartpole", 5, 1, 240, 4, 8),
    ("double_pendulum", 6, 1, 240, 4, 8),
]
NAMES = [task[0] for task in TASKS]


@pytest.mark.parametrize("name, obs_dim, act_dim, episode_length, substeps, interval", TASKS)
def test_dimensions_and_engine_parameters(name, obs_dim, act_dim, episode_length, substeps, interval):
    env = envs.make(name, num_envs=3)
    assert (env.obs_dim, env.act_dim, env.num_envs, env.max_episode_steps) == (
        obs_dim,
        act_dim,
        3,
        episode_length,
    )
    assert (env.model.params.substeps, env.model.params.mass_matrix_interval) == (substeps, interval)
    obs = env.reset()
    assert obs.shape == (3, obs_dim) and obs.dtype == torch.float32
    obs, reward, terminated, truncated, info = env.step(torch.zeros(3, act_dim))
    assert obs.shape == (3, obs_dim) and reward.shape == (3,) and info["primal"].shape == (3,)


def test_planar_start_states_and_observation_layout():
    hopper = envs.make("hopper", stochastic_init=False, dtype="float64")
    assert torch.equal(hopper.reset(), torch.zeros(1, 11, dtype=torch.float64))
    assert hopper.model.num_contacts == 8  # 4 capsules x 2 end spheres
    cheetah = envs.make("cheetah", stochastic_init=False, dtype="float64")
    obs = cheetah.reset()[0]
    assert obs[0].item() == -0.2 and not obs[1:].any()
    assert cheetah.model.num_contacts == 16  # 8 capsules x 2
    layout = cheetah.obs_layout
    assert (layout.slices["velocity"].start, layout.slices["joint_qd"].stop) == (8, 17)  # x speed = obs[8]
    assert hopper.obs_layout.slices["velocity"].start == 5  # x speed = obs[5]


def test_planar_reset_noise():
    for name, position, velocity in (("hopper", 0.05, 0.05), ("cheetah", 0.1, 0.25)):
        env = envs.make(name, num_envs=1000, seed=0)
        q, qd = env.q - env.start_q, env.qd
        assert (q.abs() <= position).all() and (q.abs().amax(0) > 0.95 * position).all()
        assert (qd.abs() <= velocity).all() and (qd.abs().amax(0) > 0.95 * velocity).all()


def test_hopper_reward_terms_are_the_spec_quantities():
    env = envs.make("hopper", num_envs=3, seed=0, dtype="float64")
    q = torch.zeros(3, 6, dtype=torch.float64)
    q[:, 1] = torch.tensor([0.2, -0.35, -0.6], dtype=torch.float64)  # d = clip(z + 0.3, -1, 0.3)
    q[:, 2] = torch.tensor([0.1, -0.5, 0.0], dtype=torch.float64)
    qd = torch.zeros(3, 6, dtype=torch.float64)
    qd[:, 0] = torch.tensor([1.5, -0.2, 0.0], dtype=torch.float64)
    env.set_state(q, qd)
    actions = torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    info = env.step(actions)[4]  # pre-step reward (Q1): the state set above
    terms = info["reward_terms"]
    torch.testing.assert_close(terms["progress"], qd[:, 0])
    torch.testing.assert_close(
        terms["height"], torch.tensor([0.3, -200 * 0.05**2, -200 * 0.3**2], dtype=torch.float64)
    )
    torch.testing.assert_close(terms["angle"], 1 - q[:, 2] ** 2 / (math.pi / 6) ** 2)
    torch.testing.assert_close(
        terms["action_cost"], torch.tensor([-0.125, 0.0, -0.1], dtype=torch.float64)
    )  # clipped


def test_hopper_terminates_below_the_height_threshold():
    env = envs.make("hopper", num_envs=2, seed=0)
    with torch.no_grad():
        for _ in range(300):
            _, _, terminated, _, info = env.step(torch.zeros(2, 3))
            if terminated.any():
                break
    assert terminated.any()
    assert (info["obs_before_reset"][terminated, 0] < -0.45).all()


def test_hopper_falls_onto_the_plane_not_through_it():
    """Unactuated, the hopper topples and comes to rest lying on the ground: the torso (a capsule of
    radius 0.05, its origin 1.25 m above the z slide's zero) down at 0.05-0.1 m (measured: lying on the
    plane or propped on the foot), every body origin above the plane."""
    env = envs.make("hopper", num_envs=4, seed=0, early_termination=False)
    heights = []
    with torch.no_grad():
        for _ in range(600):
            heights.append(env.step(torch.zeros(4, 3))[0][:, 0].clone())
    torso = 1.25 + torch.stack(heights[-50:]).double()
    assert ((torso > 0.03) & (torso < 0.15)).all()
    assert (torso.amax(0) - torso.amin(0)).max() < 1e-2  # at rest
    assert (env.body_positions()[..., 2] > 0.02).all()


def test_cheetah_stands_on_the_plane():
    env = envs.make("cheetah", num_envs=4, seed=0)
    with torch.no_grad():
        for _ in range(300):
            obs, _, terminated, *_ = env.step(torch.zeros(4, 6))
            assert not terminated.any()  # no early termination
    assert ((obs[:, 0] > -0.5) & (obs[:, 0] < -0.4)).all()  # the torso about 0.55 m above the ground
    assert (env.body_positions()[..., 2] > 0.05).all()


def test_pendula_have_no_ground():
    for name in ("cartpole", "double_pendulum"):
        assert envs.make(name).model.num_contacts == 0


def test_cartpole_starts_hanging_unless_upright_is_asked_for():
    hanging = envs.make("cartpole", stochastic_init=False, dtype="float64").reset()[0]
    np.testing.assert_allclose(hanging, [0, 0, 0, -1, 0], atol=1e-12)  # sin(-pi), cos(-pi)
    upright = envs.make("cartpole", stochastic_init=False, cartpole_start="upright", dtype="float64").reset()
    np.testing.assert_allclose(upright[0], [0, 0, 0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="cartpole_start must be one of 'hanging', 'upright'"):
        envs.make("cartpole", cartpole_start="down")


def test_pendulum_reset_noise_spans_both_coordinates_by_half_pi():
    """Q13: U(pi/2) on the cart position (metres) and the pole angle, U(0.25) on both velocities."""
    env = envs.make("cartpole", num_envs=2000, seed=0, dtype="float64")
    q, qd = env.q - env.start_q, env.qd
    assert (q.abs() <= math.pi / 2).all() and (q.abs().amax(0) > 1.5).all()
    assert (qd.abs() <= 0.25).all() and (qd.abs().amax(0) > 0.24).all()


def test_cartpole_reward_is_the_spec_quantity_with_the_angle_wrapped():
    env = envs.make("cartpole", num_envs=2, seed=0, dtype="float64")
    q = torch.tensor([[0.3, 3 * math.pi / 2], [-1.0, -0.2]], dtype=torch.float64)  # 3pi/2 wraps to -pi/2
    qd = torch.tensor([[0.5, -2.0], [1.0, 0.1]], dtype=torch.float64)
    env.set_state(q, qd)
    info = env.step(torch.zeros(2, 1, dtype=torch.float64))[4]  # pre-step reward (Q1): the state set
    theta = torch.tensor([-math.pi / 2, -0.2], dtype=torch.float64)
    expected = -(theta**2 + 0.1 * qd[:, 1] ** 2 + 0.05 * q[:, 0] ** 2 + 0.1 * qd[:, 0] ** 2)
    total = sum(info["reward_terms"].values())
    torch.testing.assert_close(total, expected)


def test_double_pendulum_reward_and_only_the_second_joint_is_actuated():
    env = envs.make("double_pendulum", num_envs=1, dtype="float64")
    forces, _ = env.actuation(torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(forces, torch.tensor([[0.0, 1000.0]], dtype=torch.float64))
    q = torch.tensor([[0.5, -4.0]], dtype=torch.float64)  # -4 wraps to 2 pi - 4
    qd = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    env.set_state(q, qd)
    info = env.step(torch.zeros(1, 1, dtype=torch.float64))[4]
    expected = -(0.5**2 + (2 * math.pi - 4.0) ** 2) - 0.1 * (1.0 + 4.0)
    assert sum(info["reward_terms"].values()).item() == pytest.approx(expected)


def test_cartpole_force_pushes_the_cart_and_the_rail_limit_turns_it_back():
    """Full force for 10 s: free, the cart would run 0.5 (1000 / 52.5) 10^2 = 950 m; the rail's limit
    spring (100 N/m beyond 4 m, envs §7.2) balances the force at 14 m, so the cart swings about there."""
    env = envs.make("cartpole", num_envs=1, stochastic_init=False, episode_length=10_000)
    x, v = [], []
    with torch.no_grad():
        for _ in range(600):
            obs = env.step(torch.ones(1, 1))[0]
            x.append(obs[0, 0].item())
            v.append(obs[0, 1].item())
    assert x[10] > 0.0 and v[10] > 0.0
    assert 14.0 < max(x) < 30.0 and min(v[60:]) < 0.0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_rollouts(name):
    def rollout(seed):
        env = envs.make(name, num_envs=3, seed=seed)
        gen = torch.Generator().manual_seed(1)
        out = [env.reset()]
        with torch.no_grad():
            for _ in range(30):
                out.append(env.step(torch.rand(3, env.act_dim, generator=gen) * 2 - 1)[0])
        return torch.stack(out)

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7), rollout(8))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_and_truncation(name):
    env = envs.make(name, num_envs=2, seed=0, episode_length=6)
    with torch.no_grad():
        env.step(torch.full((2, env.act_dim), 0.3))
        state = env.state_dict()
        first = [env.step(torch.full((2, env.act_dim), -0.2)) for _ in range(5)]
        env.load_state_dict(state)
        second = [env.step(torch.full((2, env.act_dim), -0.2)) for _ in range(5)]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    assert first[-1][3].all() and not first[-2][3].any()  # truncated at step 6, reset inside step


@pytest.mark.parametrize("name", NAMES)
def test_reward_terms_sum_to_the_reward(name):
    env = envs.make(name, num_envs=3, seed=0, dtype="float64")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):
            actions = torch.rand(3, env.act_dim, generator=gen, dtype=torch.float64) * 2 - 1
            _, reward, _, _, info = env.step(actions)
            total = torch.stack(list(info["reward_terms"].values())).sum(0)
            torch.testing.assert_close(total, reward, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_bad_actions_and_overrides_raise_clear_errors(name):
    env = envs.make(name, num_envs=2)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, " + str(env.act_dim)):
        env.step(torch.zeros(2, env.act_dim + 1))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.full((2, env.act_dim), float("nan")))
    with pytest.raises(TypeError):
        env.step(torch.zeros(2, env.act_dim, dtype=torch.int64))
    with pytest.raises(ValueError, match="valid keys: .*episode_length"):
        envs.make(name, episode_lenght=10)
    with pytest.raises(ValueError, match="episode_length must be an int >= 1"):
        envs.make(name, episode_length=0)


@pytest.mark.parametrize("name", NAMES)
def test_gymnasium_ids(name):
    gym_id = envs.gym_ids.GYM_IDS[name]
    vec = gymnasium.make_vec(gym_id, num_envs=2, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=0)
    env = envs.make(name)
    assert obs.shape == (2, env.obs_dim)
    obs, reward, *_ = vec.step(np.zeros((2, env.act_dim), np.float32))
    assert reward.shape == (2,)
