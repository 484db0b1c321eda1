"""Gymnasium ids of the warpbench envs, registered by entry-point strings (nothing is imported)."""

from __future__ import annotations

import gymnasium

GYM_IDS = {
    "ant": "warpbench/Ant-v0",
    "humanoid": "warpbench/Humanoid-v0",
    "snu_humanoid": "warpbench/SNUHumanoid-v0",
    "cartpole": "warpbench/CartPole-v0",
    "double_pendulum": "warpbench/DoublePendulum-v0",
    "hopper": "warpbench/Hopper-v0",
    "cheetah": "warpbench/Cheetah-v0",
}


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
