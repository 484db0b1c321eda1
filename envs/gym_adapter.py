"""Gymnasium views of the batched torch envs (numpy in and out, no gradients).

``WarpVectorEnv`` is a ``gymnasium.vector.VectorEnv`` that resets finished envs inside ``step``
(``AutoresetMode.SAME_STEP``): when some env finished, ``info`` carries gymnasium's ``final_obs`` (an
object array holding the observation each finished env reached, None elsewhere), ``final_info`` and
their masks ``_final_obs``/``_final_info``. ``WarpSingleEnv`` is a one-env ``gymnasium.Env``.
Registered ids: ``envs/gym_ids.py`` (``warpbench/Ant-v0``, ``warpbench/Hopper-v0``, ...)::

    gymnasium.make("warpbench/Ant-v0")
    gymnasium.make_vec("warpbench/Ant-v0", num_envs=64, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from envs.registry import make


def _as_actions(actions: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``actions`` as a float32 tensor, checked to have exactly ``shape`` before any reshape."""
    try:
        array = np.asarray(actions, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"actions must be numeric with shape {shape}: {error}") from None
    if array.shape != shape:
        raise ValueError(f"actions must have shape {shape}, got {array.shape}")
    return torch.as_tensor(array, device=device)


def _seed_generator(env: Any, seed: int | list[int] | None) -> None:
    """Reseed the batch's one generator from an int, or from a list of per-env ints (hashed together:
    the same list gives the same resets; each env's noise is not tied to its own entry)."""
    if seed is None:
        return
    if isinstance(seed, list | tuple):
        if len(seed) != env.num_envs or not all(isinstance(s, int) and s >= 0 for s in seed):
            raise ValueError(f"seed must be an int or a list of {env.num_envs} ints >= 0, got {seed!r}")
        seed = int(np.random.SeedSequence(list(seed)).generate_state(1, np.uint64)[0])
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 or a list of them, got {seed!r}")
    env.generator.manual_seed(int(seed))


def _spaces(env: Any) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    obs = gymnasium.spaces.Box(-np.inf, np.inf, (env.obs_dim,), np.float32)
    act = gymnasium.spaces.Box(-1.0, 1.0, (env.act_dim,), np.float32)
    return obs, act


class WarpVectorEnv(gymnasium.vector.VectorEnv):
    """A batch of ``num_envs`` envs of ``env_name`` behind the gymnasium vector API."""

    metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self, env_name: str, num_envs: int = 1, device: str = "cpu", seed: int = 0, **overrides: Any
    ):
        self.env_name, self.device, self.overrides = env_name, device, overrides
        self.env = make(env_name, num_envs=num_envs, device=device, seed=seed, **overrides)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.env)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        _seed_generator(self.env, seed)
        with torch.no_grad():
            obs = self.env.reset()
        return obs.cpu().numpy(), {}

    def step(self, actions: np.ndarray):
        actions = _as_actions(actions, (self.num_envs, self.env.act_dim), self.env.device)
        with torch.no_grad():
            obs, reward, terminated, truncated, info = self.env.step(actions)
        terminated, truncated = terminated.cpu().numpy(), truncated.cpu().numpy()
        done = terminated | truncated
        out_info: dict[str, Any] = {}
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            before_reset = info["obs_before_reset"].cpu().numpy()
            for i in np.flatnonzero(done):
                final_obs[i] = before_reset[i]
            # gymnasium's same-step keys: per-env final observation and (empty) final info, with masks.
            out_info = {"final_obs": final_obs, "_final_obs": done, "final_info": {}, "_final_info": done}
        return obs.cpu().numpy(), reward.cpu().numpy().astype(np.float64), terminated, truncated, out_info


class WarpSingleEnv(gymnasium.Env):
    """One env of ``env_name`` behind the plain gymnasium API."""

    metadata = {"render_modes": []}

    def __init__(self, env_name: str, device: str = "cpu", seed: int = 0, **overrides: Any):
        self.env = make(env_name, num_envs=1, device=device, seed=seed, **overrides)
        self.observation_space, self.action_space = _spaces(self.env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        _seed_generator(self.env, seed)
        with torch.no_grad():
            obs = self.env.reset()
        return obs[0].cpu().numpy(), {}

    def step(self, action: np.ndarray):
        action = _as_actions(action, (self.env.act_dim,), self.env.device)
        with torch.no_grad():
            obs, reward, terminated, truncated, info = self.env.step(action[None])
        if bool(terminated[0] | truncated[0]):
            obs = info["obs_before_reset"]  # the episode ended here; the caller calls reset()
        return obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}
