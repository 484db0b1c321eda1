"""Ant (envs §7, envs Appendix A.1): 37 observations, 8 actions, 16 substeps.

Observation (``obs_layout``): height 0, rotation 1:5, velocity 5:8, angular_velocity 8:11, joint_q 11:19,
joint_qd 19:27 (x 0.1), up 27, heading 28, previous_action 29:37.
"""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np
import torch

from envs.base import LocomotionEnv
from envs.rotations import axis_angle_quat
from envs.sim.model import PhysicsParams


class Ant(LocomotionEnv):
    act_dim = 8
    world_to_yup = axis_angle_quat((1.0, 0.0, 0.0), -90.0)  # the asset is Z-up
    start_rotation = world_to_yup
    start_position = (0.0, 0.75, 0.0)
    target_x = 10000.0
    termination_height = 0.27
    joint_noise = 0.2
    gear = 200.0

    def build_physics(self, cfg):
        spec = mujoco.MjSpec.from_file(str(resources.files("envs") / "assets" / "ant.xml"))
        params = PhysicsParams(
            substeps=16,
            mass_matrix_interval=16,
            joint_stiffness=0.0,
            joint_damping=1.0,
            armature=0.05,
            limit_ke=1e3,
            limit_kd=10.0,
            contact_ke=4e4,
            contact_kd=1e4,
            contact_kf=3e3,
            contact_mu=0.75,
        )
        return spec, params, None

    def start_joint_positions(self) -> np.ndarray:
        return np.array([0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0])

    def actuation(self, actions):
        forces = actions.new_zeros(actions.shape[0], self.nv)
        forces[:, 6:] = self.gear * actions
        return forces, None

    def reward_terms(self, o: dict[str, torch.Tensor], actions: torch.Tensor) -> dict[str, torch.Tensor]:
        # The action cost has weight 0 in the reference (envs §7.4), so it is not a term.
        return {
            "progress": o["velocity"][:, 0],
            "up": 0.1 * o["up"],
            "heading": o["heading"],
            "height": o["height"] - self.termination_height,
        }
