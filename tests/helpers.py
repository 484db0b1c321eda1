"""Shared test utilities."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import mujoco
import numpy as np
import torch

from bench.harness import evaluate
from tests.toy_envs import make_toy_env


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


def toy_learning(
    build: Callable[[Any, int], Any],
    seeds: Iterable[int],
    iterations: int,
    num_envs: int,
    **env_overrides: Any,
) -> list[tuple[float, float]]:
    """(return before, return after ``iterations``) of the trainer ``build(env, seed)`` on the toy env per
    seed: the deterministic policy on 16 evaluation envs (toy optimum about 140, a fresh policy near 0);
    ``env_overrides`` apply to both envs."""
    results = []
    for seed in seeds:
        torch.manual_seed(seed)
        trainer = build(make_toy_env(num_envs=num_envs, seed=seed, **env_overrides), seed)
        eval_env = make_toy_env(num_envs=16, seed=100 + seed, **env_overrides)

        before = float(evaluate(eval_env, trainer.act).returns.mean())
        for _ in range(iterations):
            trainer.train_iteration()
        results.append((before, float(evaluate(eval_env, trainer.act).returns.mean())))
    return results
