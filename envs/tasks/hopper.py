"""Hopper (envs §7): 11 observations, 3 actions (200·a on thigh, leg, foot), 16 substeps, planar root.

Observation (``obs_layout``): height 0 (the z slide; 0 with the torso at 1.25 m), pitch 1, joint_q 2:5,
velocity 5:7 (x, z), pitch_rate 7, joint_qd 8:11. Early termination when z < -0.45; the pitch only
shapes the reward.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from envs.planar import ROOT_DOFS, PlanarEnv
from envs.sim.model import PhysicsParams


class Hopper(PlanarEnv):
    asset = "hopper"
    act_dim = 3
    position_noise = 0.05
    velocity_noise = 0.05
    termination_height = -0.45

    def build_physics(self, cfg):
        spec = self.spec()
        nv = ROOT_DOFS + self.act_dim
        params = PhysicsParams(
            substeps=16,
            mass_matrix_interval=16,
            joint_stiffness=0.0,
            # 2.0 on the leg's joints, 0 on the root's (its MJCF attribute in the reference's file).
            joint_damping=np.r_[np.zeros(ROOT_DOFS), np.full(nv - ROOT_DOFS, 2.0)],
            armature=1.0,  # every dof, the root's slides included
            limit_ke=1e3,
            limit_kd=10.0,  # always on (Q8), on every hinge and slide, the root's too
            contact_ke=2e4,
            contact_kd=2e3,
            contact_kf=1e3,
            contact_mu=0.9,
        )
        return spec, params, None

    def reward_terms(self, o, actions):
        d = torch.clamp(o["height"] - (self.termination_height + 0.15), -1.0, 0.3)
        return {
            "progress": o["velocity"][:, 0],
            "height": torch.where(d < 0, -200.0 * d * d, d),
            "angle": 1.0 - o["pitch"] ** 2 / (math.pi / 6) ** 2,
            "action_cost": -0.1 * (actions * actions).sum(1),
        }
