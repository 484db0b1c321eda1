"""Humanoid (envs §7, envs Appendix A.2): 76 observations, 21 actions, 48 substeps.

Observation (``obs_layout``): height 0, rotation 1:5, velocity 5:8, angular_velocity 8:11, joint_q 11:32,
joint_qd 32:53 (x 0.1), up 53, heading 54, previous_action 55:76.
"""

from __future__ import annotations

from importlib import resources

import mujoco
import torch

from envs.base import LocomotionEnv
from envs.rotations import axis_angle_quat
from envs.sim.model import PhysicsParams

# Actuator strengths in action order (envs §7.6); torque = 0.35 * strength * action.
STRENGTHS = (
    200,
    200,
    200,
    200,
    200,
    600,
    400,
    100,
    100,
    200,
    200,
    600,
    400,
    100,
    100,
    100,
    100,
    200,
    100,
    100,
    200,
)


class Humanoid(LocomotionEnv):
    act_dim = 21
    world_to_yup = axis_angle_quat((1.0, 0.0, 0.0), -90.0)  # the asset is Z-up
    start_rotation = world_to_yup
    start_position = (0.0, 1.35, 0.0)
    target_x = 200.0
    termination_height = 0.74
    joint_noise = 0.2

    def build_physics(self, cfg):
        spec = mujoco.MjSpec.from_file(str(resources.files("envs") / "assets" / "humanoid.xml"))
        # Stiffness, damping and armature come from the MJCF (per-joint values, else 5 / 0.1 / 0.007).
        params = PhysicsParams(
            substeps=48,
            mass_matrix_interval=48,
            limit_ke=1e3,
            limit_kd=10.0,
            contact_ke=2e4,
            contact_kd=2e3,
            contact_kf=1e3,
            contact_mu=0.75,
        )
        return spec, params, None

    def actuation(self, actions):
        forces = actions.new_zeros(actions.shape[0], self.nv)
        forces[:, 6:] = 0.35 * actions * actions.new_tensor(STRENGTHS)
        return forces, None

    def reward_terms(self, o: dict[str, torch.Tensor], actions: torch.Tensor) -> dict[str, torch.Tensor]:
        d = torch.clamp(o["height"] - (self.termination_height + 0.1), -1.0, 0.1)
        return {
            "progress": o["velocity"][:, 0],
            "up": 0.1 * o["up"],
            "heading": 1.0 * o["heading"],
            "height": torch.where(d < 0, -200.0 * d * d, 10.0 * d),  # kinked at d = 0 (Q14)
            "action_cost": -0.002 * (actions * actions).sum(1),
        }
