"""Gymnasium views of the batched torch envs (numpy in and out, no gradients).

``WarpVectorEnv`` is a ``gymnasium.vector.VectorEnv`` that resets finished envs inside ``step``
(``AutoresetMode.SAME_STEP``: the observation reached before the reset is in ``info["final_obs"]``).
``WarpSingleEnv`` is a one-env ``gymnasium.Env``. Registered ids: ``warpbench/Ant-v0``,
``warpbench/Humanoid-v0`` (and ``warpbench/SNUHumanoid-v0`` when the SNU task is available)::

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

GYM_IDS = {
    "ant": "warpbench/Ant-v0",
    "humanoid": "warpbench/Humanoid-v0",
    "snu_humanoid": "warpbench/SNUHumanoid-v0",
}


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

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.generator.manual_seed(int(seed))
        with torch.no_grad():
            obs = self.env.reset()
        return obs.cpu().numpy(), {}

    def step(self, actions: np.ndarray):
        actions = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.env.device)
        with torch.no_grad():
            obs, reward, terminated, truncated, info = self.env.step(actions.reshape(self.num_envs, -1))
        out_info = {"final_obs": info["obs_before_reset"].cpu().numpy()}
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            out_info,
        )


class WarpSingleEnv(gymnasium.Env):
    """One env of ``env_name`` behind the plain gymnasium API."""

    metadata = {"render_modes": []}

    def __init__(self, env_name: str, device: str = "cpu", seed: int = 0, **overrides: Any):
        self.env = make(env_name, num_envs=1, device=device, seed=seed, **overrides)
        self.observation_space, self.action_space = _spaces(self.env)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.env.generator.manual_seed(int(seed))
        with torch.no_grad():
            obs = self.env.reset()
        return obs[0].cpu().numpy(), {}

    def step(self, action: np.ndarray):
        action = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.env.device)
        with torch.no_grad():
            obs, reward, terminated, truncated, info = self.env.step(action.reshape(1, -1))
        if bool(terminated[0] | truncated[0]):
            obs = info["obs_before_reset"]  # the episode ended here; the caller calls reset()
        return obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}


def register_gym_ids() -> None:
    """Register the gymnasium ids of every warpbench env (idempotent)."""
    for name, gym_id in GYM_IDS.items():
        if gym_id not in gymnasium.registry:
            gymnasium.register(
                id=gym_id,
                entry_point="envs.gym_adapter:WarpSingleEnv",
                vector_entry_point="envs.gym_adapter:WarpVectorEnv",
                kwargs={"env_name": name},
                max_episode_steps=None,
            )
