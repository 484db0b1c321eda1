"""Shared test utilities."""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np


def asset_model(name: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(resources.files("envs") / "assets" / f"{name}.xml"))


def random_states(m: mujoco.MjModel, num: int, seed: int, velocity_scale: float = 1.0):
    """Random (qpos, qvel) with a free root: position, unit quaternion, hinge angles in [-1, 1]."""
    rng = np.random.default_rng(seed)
    q = np.tile(m.qpos0, (num, 1))
    q[:, :3] += rng.normal(size=(num, 3))
    quat = rng.normal(size=(num, 4))
    q[:, 3:7] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    q[:, 7:] += rng.uniform(-1, 1, size=(num, m.nq - 7))
    qd = rng.normal(size=(num, m.nv)) * velocity_scale
    return q, qd
