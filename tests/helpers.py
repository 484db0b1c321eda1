"""Shared test utilities."""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np


def asset_model(name: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(resources.files("envs") / "assets" / f"{name}.xml"))


def random_states(m: mujoco.MjModel, num: int, seed: int, velocity_scale: float = 1.0):
    """Random (qpos, qvel): a free root's position ~ N(0, 1) and a random unit quaternion; every other
    coordinate qpos0 + U(-1, 1) (planar roots' slides and hinges included; ball quaternions are left
    unnormalised)."""
    rng = np.random.default_rng(seed)
    q = np.tile(m.qpos0, (num, 1))
    free = m.jnt_type == mujoco.mjtJoint.mjJNT_FREE
    if free.any():
        q[:, :3] += rng.normal(size=(num, 3))
        quat = rng.normal(size=(num, 4))
        q[:, 3:7] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    first = 7 if free.any() else 0
    q[:, first:] += rng.uniform(-1, 1, size=(num, m.nq - first))
    qd = rng.normal(size=(num, m.nv)) * velocity_scale
    return q, qd
