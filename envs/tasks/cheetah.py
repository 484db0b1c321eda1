"""Cheetah (envs §7): 17 observations, 6 actions (200·a), 16 substeps, planar root, no early termination.

Observation (``obs_layout``): height 0 (the z slide; 0 with the root frame at 1 m, start -0.2), pitch 1,
joint_q 2:8, velocity 8:10 (x, z), pitch_rate 10, joint_qd 11:17. Joint springs and dampers come from
the MJCF (bthigh 240/6, bshin 180/4.5, bfoot 120/3, fthigh 180/4.5, fshin 120/3, ffoot 60/1.5; root 0).
"""

from __future__ import annotations

from envs.planar import PlanarEnv
from envs.sim.model import PhysicsParams


class Cheetah(PlanarEnv):
    asset = "cheetah"
    act_dim = 6
    start_height = -0.2
    position_noise = 0.1
    velocity_noise = 0.25

    def build_physics(self, cfg):
        params = PhysicsParams(
            substeps=16,
            mass_matrix_interval=16,
            armature=0.1,  # every dof, the root's slides included
            limit_ke=1e3,
            limit_kd=10.0,  # always on (Q8), on every hinge and slide, the root's too
            contact_ke=2e4,
            contact_kd=2e3,
            contact_kf=1e3,
            contact_mu=1.0,
        )
        return self.spec(), params, None

    def reward_terms(self, o, actions):
        return {"progress": o["velocity"][:, 0], "action_cost": -0.1 * (actions * actions).sum(1)}
