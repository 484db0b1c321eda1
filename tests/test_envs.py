"""Env behaviour: dimensions, contact, resets, determinism and bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs import memory

REPO = Path(__file__).resolve().parents[1]


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
    with pytest.raises(ValueError, match="valid names: ant, cartpole, cheetah"):
        envs.make("walker")
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
    assert reward.shape == (3,) and obs.shape == (3, 76)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name", ["ant", "humanoid", "snu_humanoid", "hopper", "cheetah", "cartpole", "double_pendulum"]
)
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


def test_importing_envs_loads_no_engine_and_registers_the_gym_ids():
    code = (
        "import sys, envs, gymnasium; "
        "heavy = [m for m in ('torch', 'warp', 'mujoco', 'envs.sim', 'envs.tasks.ant') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "assert 'warpbench/Ant-v0' in gymnasium.registry; print(envs.names())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    names = "['ant', 'cartpole', 'cheetah', 'double_pendulum', 'hopper', 'humanoid', 'snu_humanoid']"
    assert names in out.stdout


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"early_termination": "false"}, "early_termination must be a bool"),
        ({"early_termination": 0}, "early_termination must be a bool"),
        ({"episode_length": 2.5}, "episode_length must be an int >= 1"),
        ({"episode_length": True}, "episode_length must be an int"),
        ({"episode_length": 0}, "episode_length must be an int >= 1"),
        ({"contact_ke": -1}, "contact_ke must be a number >= 0 or null"),
        ({"contact_mu": "abc"}, "contact_mu must be a number"),
        ({"friction_smoothing": float("nan")}, "friction_smoothing must be a number"),
        ({"substeps": 0}, "substeps must be an int >= 1"),
        ({"dtype": "float16"}, "dtype must be one of 'float32', 'float64'"),
        ({"reward_timing": "later"}, "reward_timing must be one of 'pre', 'post'"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"seed": 2**64}, "seed must be an int"),
        ({"num_envs": 2.0}, "num_envs must be an int >= 1"),
    ],
)
def test_make_rejects_every_override_of_the_wrong_type_or_range(overrides, message):
    with pytest.raises(ValueError, match=message):
        envs.make("ant", **overrides)


def test_make_accepts_ints_for_floats_and_none_for_task_values():
    env = envs.make("ant", num_envs=1, contact_ke=20000, contact_mu=None, substeps=None)
    assert env.model.params.contact_ke == 20000.0 and isinstance(env.model.params.contact_ke, float)
    assert env.model.params.contact_mu == 0.75 and env.model.params.substeps == 16


@pytest.mark.parametrize(
    "key, text, value",
    [
        ("early_termination", "False", False),
        ("early_termination", "false", False),
        ("early_termination", "TRUE", True),
        ("stochastic_init", " true ", True),
        ("episode_length", "250", 250),
        ("contact_ke", "2e4", 2e4),
        ("contact_ke", "3", 3.0),
        ("contact_ke", "null", None),
        ("reward_timing", "post", "post"),
        ("reward_timing", '"post"', "post"),
        ("num_envs", "32", 32),
        ("seed", "7", 7),
    ],
)
def test_parse_override_converts_cli_text_with_the_same_table(key, text, value):
    parsed = envs.parse_override("ant", key, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("early_termination", "yes", "early_termination must be a bool"),
        ("early_termination", "0", "early_termination must be a bool"),
        ("episode_length", "2.5", "episode_length must be an int >= 1"),
        ("contact_ke", "-1", "contact_ke must be a number >= 0"),
        ("contact_mu", "abc", "contact_mu must be a number"),
        ("reward_timing", "later", "reward_timing must be one of"),
        ("early_terminaton", "false", "valid keys: num_envs, seed, device, episode_length"),
    ],
)
def test_parse_override_rejects_bad_text(key, text, message):
    with pytest.raises(ValueError, match=message):
        envs.parse_override("ant", key, text)


def test_parse_override_round_trips_every_default_of_every_task():
    for name in ("ant", "humanoid", "hopper", "cheetah", "cartpole", "double_pendulum"):
        config_class = envs.registry.factory(name).config_class
        for field in dataclasses.fields(config_class):
            text = json.dumps(field.default)
            assert envs.parse_override(name, field.name, text) == field.default, field.name


def test_parse_override_of_an_env_without_a_table_falls_back_to_json():
    envs.register("test_plain_factory", lambda num_envs=1, device="cpu", seed=0, **overrides: None)
    assert envs.parse_override("test_plain_factory", "anything", "false") is False
    assert envs.parse_override("test_plain_factory", "anything", "word") == "word"
    assert envs.parse_override("test_plain_factory", "num_envs", "4") == 4


def test_make_refuses_a_batch_that_cannot_fit_before_allocating(monkeypatch):
    with pytest.raises(ValueError, match=r"estimated .* GiB .* only .* GiB is available"):
        envs.make("ant", num_envs=10**9)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**30)
    with pytest.raises(ValueError, match=r"num_envs=1000000 needs an estimated 1\d\.\d GiB"):
        envs.make("ant", num_envs=10**6)


def test_memory_estimate_covers_the_engine_buffers():
    """The estimate against the Warp arrays the env holds after a forward and a backward step."""
    import warp as wp

    env = envs.make("humanoid", num_envs=4, seed=0)
    actions = torch.zeros(4, 21, requires_grad=True)
    env.step(actions)[0].sum().backward()  # through the engine (the pre-step reward is not)
    seen: set[int] = set()

    def nbytes(obj) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        if isinstance(obj, wp.array):
            return obj.capacity + (nbytes(obj.grad) if obj.grad is not None else 0)
        if isinstance(obj, list | tuple):
            return sum(nbytes(x) for x in obj)
        if wp.types.is_struct(obj) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
            return sum(nbytes(v) for v in vars(obj).values())
        return 0

    per_env_arrays = {k: v for k, v in vars(env.sim).items() if k != "model"}
    actual = nbytes(list(per_env_arrays.values()))
    forward, backward = memory.estimate_bytes(env.model, 4)
    assert 0.7 * (forward + backward) < actual < forward + backward


@pytest.mark.parametrize(
    "name, blocks",
    [
        (
            "ant",
            {
                "height": (0, 1),
                "velocity": (5, 8),
                "joint_q": (11, 19),
                "up": (27, 28),
                "heading": (28, 29),
                "previous_action": (29, 37),
            },
        ),
        (
            "humanoid",
            {
                "joint_q": (11, 32),
                "joint_qd": (32, 53),
                "up": (53, 54),
                "heading": (54, 55),
                "previous_action": (55, 76),
            },
        ),
    ],
)
def test_observation_layout_is_the_spec_table(name, blocks):
    layout = envs.make(name, num_envs=1).obs_layout
    for block, (start, stop) in blocks.items():
        assert (layout.slices[block].start, layout.slices[block].stop) == (start, stop), block


@pytest.mark.parametrize(
    "name, terms",
    [
        ("ant", ["progress", "up", "heading", "height"]),
        ("humanoid", ["progress", "up", "heading", "height", "action_cost"]),
    ],
)
def test_reward_terms_are_named_and_sum_to_the_reward(name, terms):
    env = envs.make(name, num_envs=3, seed=0, dtype="float64")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):
            _, reward, _, _, info = env.step(
                torch.rand(3, env.act_dim, generator=gen, dtype=torch.float64) * 2 - 1
            )
            assert list(info["reward_terms"]) == terms
            total = torch.stack(list(info["reward_terms"].values())).sum(0)
            torch.testing.assert_close(total, reward, rtol=1e-12, atol=1e-12)


def test_ant_reward_terms_are_the_spec_quantities():
    """Pre-step timing (Q1): the terms are read from the observation before the action."""
    env = envs.make("ant", num_envs=2, seed=1, dtype="float64")
    obs = env.reset()
    info = env.step(torch.zeros(2, 8, dtype=torch.float64))[4]
    terms = info["reward_terms"]
    torch.testing.assert_close(terms["progress"], obs[:, 5])
    torch.testing.assert_close(terms["up"], 0.1 * obs[:, 27])
    torch.testing.assert_close(terms["heading"], obs[:, 28])
    torch.testing.assert_close(terms["height"], obs[:, 0] - 0.27)


@pytest.mark.parametrize("shape", [(8, 4), (32,), (4, 16), (2, 8)])
def test_gym_vector_env_rejects_wrong_action_shapes_naming_the_shape_passed(shape):
    vec = gymnasium.make_vec("warpbench/Ant-v0", num_envs=4, vectorization_mode="vector_entry_point")
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=re.escape(f"actions must have shape (4, 8), got {shape}")):
        vec.step(np.zeros(shape, np.float32))


def test_gym_single_env_rejects_wrong_action_shapes():
    env = gymnasium.make("warpbench/Ant-v0").unwrapped
    env.reset(seed=0)
    for shape in [(1, 8), (16,), (4, 2)]:
        with pytest.raises(ValueError, match=re.escape(f"actions must have shape (8,), got {shape}")):
            env.step(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="numeric"):
        env.step(["a"] * 8)


def test_gym_vector_env_same_step_autoreset_keys():
    vec = gymnasium.make_vec(
        "warpbench/Ant-v0", num_envs=3, vectorization_mode="vector_entry_point", episode_length=2
    )
    vec.reset(seed=0)
    _, _, _, _, info = vec.step(np.zeros((3, 8), np.float32))
    assert "final_obs" not in info  # gymnasium adds the keys only on steps where an env finished
    obs, _, _, truncated, info = vec.step(np.zeros((3, 8), np.float32))
    assert truncated.all()
    assert info["_final_obs"].tolist() == [True] * 3 and info["_final_info"].tolist() == [True] * 3
    assert info["final_obs"].dtype == object and info["final_obs"][0].shape == (37,)
    assert not np.array_equal(info["final_obs"][0], obs[0])  # the observation before the reset
    assert isinstance(info["final_info"], dict)


def test_gym_vector_env_accepts_a_list_of_seeds():
    vec = gymnasium.make_vec("warpbench/Ant-v0", num_envs=3, vectorization_mode="vector_entry_point")
    first, _ = vec.reset(seed=[1, 2, 3])
    again, _ = vec.reset(seed=[1, 2, 3])
    other, _ = vec.reset(seed=[1, 2, 4])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError, match="list of 3 ints"):
        vec.reset(seed=[1, 2])
