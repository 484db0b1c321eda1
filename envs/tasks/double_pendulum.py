"""DoublePendulum (envs §7; fork only): 6 observations, 1 action (torque on the second joint only),
4 substeps, 240 steps. Both angles are 0 upright; the start is q = qd = 0 (plus the reset noise).

Observation (``obs_layout``): cos1 0, sin1 1, cos2 2, sin2 3, joint_qd 4:6 (unscaled).
"""

from __future__ import annotations

import numpy as np
import torch

from envs.pendulum import PendulumEnv, wrap_angle


class DoublePendulum(PendulumEnv):
    asset = "double_pendulum"
    act_dim = 1
    torque = 1000.0

    def start_state(self) -> np.ndarray:
        return np.zeros(2)

    def observation_blocks(self) -> list[tuple[str, int]]:
        return [("cos1", 1), ("sin1", 1), ("cos2", 1), ("sin2", 1), ("joint_qd", 2)]

    def observe(self, q, qd, last_action):
        c, s = torch.cos(q), torch.sin(q)
        parts = {"cos1": c[:, 0:1], "sin1": s[:, 0:1], "cos2": c[:, 1:2], "sin2": s[:, 1:2], "joint_qd": qd}
        return self.obs_layout.join(parts)

    def actuation(self, actions):
        # The first joint is passive.
        return torch.cat((actions.new_zeros(actions.shape[0], 1), self.torque * actions), dim=1), None

    def _angles(self, o):
        return wrap_angle(o["sin1"], o["cos1"]), wrap_angle(o["sin2"], o["cos2"])

    def reward_terms(self, o, actions):
        theta1, theta2 = self._angles(o)
        return {
            "angles": -(theta1 * theta1 + theta2 * theta2),
            "velocities": -0.1 * (o["joint_qd"] ** 2).sum(1),
        }

    def primal(self, o):
        theta1, theta2 = self._angles(o)
        return -(theta1 * theta1 + theta2 * theta2)
