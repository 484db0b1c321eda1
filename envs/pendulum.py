"""Fixed-base pendulum tasks (envs §7.1-§7.5): the cart-pole and the double pendulum.

What both share: no ground, 4 substeps with one mass-matrix refresh per control step (F = 8 >= 4),
armature 0.1, no joint springs or dampers, joint limits 100 / 1 (the limit damping acts at all times, Q8),
240-step episodes without early termination, and reset noise U(pi/2) on *both* coordinates, the cart's
position in metres included (Q13), and U(0.25) on both velocities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import mujoco
import torch

from envs.base import ArticulatedEnv, LocomotionConfig
from envs.options import setting
from envs.sim.model import PhysicsParams


@dataclass
class PendulumConfig(LocomotionConfig):
    episode_length: int = setting(240, minimum=1)
    """Control steps before truncation (240 for the pendula)."""


def wrap_angle(sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The angle in (-pi, pi] from its sine and cosine (the reference wraps angles before its reward)."""
    return torch.atan2(sin, cos)


class PendulumEnv(ArticulatedEnv):
    """Base of the fixed-base pendula; a task sets ``asset``, ``act_dim``, its observation and reward."""

    config_class = PendulumConfig
    asset: str

    def build_physics(self, cfg):
        spec = mujoco.MjSpec.from_file(str(resources.files("envs") / "assets" / f"{self.asset}.xml"))
        params = PhysicsParams(
            substeps=4,
            mass_matrix_interval=8,
            joint_stiffness=0.0,
            joint_damping=0.0,
            armature=0.1,
            limit_ke=100.0,
            limit_kd=1.0,
            ground=False,
        )
        return spec, params, None

    def add_reset_noise(self, q: torch.Tensor, qd: torch.Tensor) -> None:
        q += self._uniform(tuple(q.shape), math.pi / 2)  # Q13: the cart position too
        qd += self._uniform(tuple(qd.shape), 0.25)
