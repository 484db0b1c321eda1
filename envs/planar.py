"""Planar locomotion tasks (envs §7.1-§7.5): the hopper and the cheetah.

The root is a chain of three joints, slide x, slide z and hinge pitch (``rootx, rootz, rooty`` in the
MJCF), so ``q = (x, z, pitch, joints...)``. Observation: ``q[1:]`` then ``qd``, unscaled; the forward
speed is the x slide's velocity. Joint coordinates are the same in MuJoCo's Z-up frame and dflex's Y-up
one, so nothing is rotated.
"""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np
import torch

from envs.base import ArticulatedEnv

ROOT_DOFS = 3


class PlanarEnv(ArticulatedEnv):
    """Base of the planar tasks; a task sets the class attributes, ``build_physics`` and its reward."""

    asset: str
    start_height: float = 0.0
    """Start value of the root's z slide."""
    position_noise: float = 0.0
    """Reset noise U(b) on x, z, the pitch and every joint angle."""
    velocity_noise: float = 0.0
    """Reset noise U(b) on every velocity."""
    termination_height: float | None = None
    """Early termination when the z slide falls below this; None: no early termination."""
    gear: float = 200.0

    def spec(self) -> mujoco.MjSpec:
        return mujoco.MjSpec.from_file(str(resources.files("envs") / "assets" / f"{self.asset}.xml"))

    def start_state(self) -> np.ndarray:
        q = np.zeros(self.nq)
        q[1] = self.start_height
        return q

    def add_reset_noise(self, q: torch.Tensor, qd: torch.Tensor) -> None:
        q += self._uniform(tuple(q.shape), self.position_noise)
        qd += self._uniform(tuple(qd.shape), self.velocity_noise)

    def observation_blocks(self) -> list[tuple[str, int]]:
        joints = self.nq - ROOT_DOFS
        return [
            ("height", 1),
            ("pitch", 1),
            ("joint_q", joints),
            ("velocity", 2),
            ("pitch_rate", 1),
            ("joint_qd", joints),
        ]

    def observe(self, q, qd, last_action):
        parts = {
            "height": q[:, 1:2],
            "pitch": q[:, 2:3],
            "joint_q": q[:, ROOT_DOFS:],
            "velocity": qd[:, 0:2],
            "pitch_rate": qd[:, 2:3],
            "joint_qd": qd[:, ROOT_DOFS:],
        }
        return self.obs_layout.join(parts)

    def actuation(self, actions):
        return torch.cat((actions.new_zeros(actions.shape[0], ROOT_DOFS), self.gear * actions), dim=1), None

    def fallen(self, o):
        return None if self.termination_height is None else o["height"] < self.termination_height

    def primal(self, o):
        return o["velocity"][:, 0]
