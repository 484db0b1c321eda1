"""Env behaviour: dimensions, contact, resets, determinism and bad input."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs


@pytest.mark.parametrize("name, obs_dim, act_dim", [("ant", 37, 8), ("humanoid", 76, 21)])
def test_dimensions(name, obs_dim, act_dim):
    env = envs.make(name, num_envs=3)
    assert (env.obs_dim, env.act_dim, env.num_envs, env.max_episode_steps) == (obs_dim, act_dim, 3, 1000)
    obs = env.reset()
    assert obs.shape == (3, obs_dim) and obs.dtype == torch.float32


def test_ant_start_observation_is_the_spec_start_state():
    env = envs.make("ant", num_envs=1, stochastic_init=False)
    obs = env.reset()[0].double()
    assert obs[0].item() == pytest.approx(0.75)
    np.testing.assert_allclose(obs[1:5], [-np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-7)  # -90 deg about x
    np.testing.assert_allclose(obs[11:19], [0, 1, 0, -1, 0, -1, 0, 1], atol=1e-7)
    assert obs[27].item() == pytest.approx(1.0)  # up
    assert obs[28].item() == pytest.approx(1.0)  # heading towards +x


def test_ant_lands_and_rests_at_a_stable_height():
    env = envs.make("ant", num_envs=4, seed=0, early_termination=False)
    env.reset()
    heights = []
    with torch.no_grad():
        for _ in range(400):
            obs, *_ = env.step(torch.zeros(4, 8))
            heights.append(obs[:, 0].clone())
    final = torch.stack(heights[-50:])
    # Legs splay without actuation and the torso sphere (radius 0.25) rests on the ground.
    assert (final.max(0).values - final.min(0).values).max() < 2e-3
    assert ((final > 0.23) & (final < 0.26)).all()
    pos = env.body_positions()
    contact_depth = 0.25 - pos[:, 0, 2]  # torso sphere penetration
    assert (contact_depth < 0.01).all()


def test_humanoid_falls_onto_the_plane_not_through_it():
    env = envs.make("humanoid", num_envs=2, seed=0, early_termination=False)
    env.reset()
    with torch.no_grad():
        for _ in range(300):
            obs, *_ = env.step(torch.zeros(2, 21))
    assert (obs[:, 0] < 0.5).all() and (obs[:, 0] > 0.05).all()
    assert (env.body_positions()[..., 2] > -0.02).all()  # body origins sit on or above the ground


def test_truncation_resets_and_reports_the_final_observation():
    env = envs.make("ant", num_envs=2, episode_length=5, early_termination=False)
    env.reset()
    with torch.no_grad():
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 8))
    assert truncated.all() and not terminated.any()
    assert not torch.equal(obs, info["obs_before_reset"])
    assert (env.progress == 0).all()


def test_early_termination_below_the_height_threshold():
    env = envs.make("ant", num_envs=2, seed=0)
    env.reset()
    with torch.no_grad():
        for _ in range(300):
            _, _, terminated, _, info = env.step(torch.zeros(2, 8))
            if terminated.any():
                break
    assert terminated.any()
    assert (info["obs_before_reset"][terminated, 0] < 0.27).all()


def test_same_seed_gives_identical_rollouts():
    def rollout(seed):
        env = envs.make("ant", num_envs=3, seed=seed)
        gen = torch.Generator().manual_seed(1)
        out = [env.reset()]
        with torch.no_grad():
            for _ in range(40):
                out.append(env.step(torch.rand(3, 8, generator=gen) * 2 - 1)[0])
        return torch.stack(out)

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7), rollout(8))


def test_state_dict_round_trip_continues_identically():
    env = envs.make("ant", num_envs=2, seed=0)
    with torch.no_grad():
        for _ in range(3):
            env.step(torch.full((2, 8), 0.3))
        state = env.state_dict()
        first = [env.step(torch.full((2, 8), -0.2))[0] for _ in range(3)]
        env.load_state_dict(state)
        second = [env.step(torch.full((2, 8), -0.2))[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    "actions, error",
    [
        (torch.zeros(2, 7), ValueError),
        (torch.zeros(3, 8), ValueError),
        (torch.zeros(2, 8, dtype=torch.int64), TypeError),
        (torch.full((2, 8), float("nan")), ValueError),
        (np.zeros((2, 8)), TypeError),
    ],
)
def test_bad_actions_raise_clear_errors(actions, error):
    env = envs.make("ant", num_envs=2)
    with pytest.raises(error):
        env.step(actions)


def test_unknown_env_and_override_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid names: ant"):
        envs.make("hopper")
    with pytest.raises(ValueError, match="valid keys: .*early_termination"):
        envs.make("ant", early_terminaton=False)
    with pytest.raises(ValueError, match="reward_timing"):
        envs.make("ant", reward_timing="later")
    with pytest.raises(ValueError, match="num_envs"):
        envs.make("ant", num_envs=0)


# Observations are unbounded (velocities, positions), which the checker flags as a warning only.
@pytest.mark.filterwarnings("ignore:.*observation space (minimum|maximum) value is:UserWarning")
def test_gymnasium_single_env_passes_check_env_and_vector_env_steps():
    check_env(gymnasium.make("warpbench/Ant-v0").unwrapped, skip_render_check=True)
    vec = gymnasium.make_vec("warpbench/Humanoid-v0", num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 76)
    obs, reward, terminated, truncated, info = vec.step(np.zeros((3, 21), np.float32))
    assert reward.shape == (3,) and info["final_obs"].shape == (3, 76)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["ant", "humanoid", "snu_humanoid"])
def test_cuda_rollouts_and_gradients_match_cpu(name):
    """The same code path on cuda: observations and action gradients agree with the CPU's."""
    results = []
    for device in ("cpu", "cuda"):
        env = envs.make(name, num_envs=4, seed=3, device=device, dtype="float64")
        actions = (
            (
                torch.rand(8, 4, env.act_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
                * 2
                - 1
            )
            .to(device)
            .requires_grad_(True)
        )
        total = sum(env.step(actions[t])[0].sum() for t in range(8))
        total.backward()
        results.append((env.obs.detach().cpu(), actions.grad.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-8)
