"""CartPole swing-up (envs §7): 5 observations, 1 action (force on the cart), 4 substeps, 240 steps.

Observation (``obs_layout``): cart_position 0, cart_velocity 1, pole_sin 2, pole_cos 3, pole_velocity 4.
The pole angle is 0 upright; the start is hanging (theta = -pi, DiffRL) unless ``cartpole_start="upright"``
(the fork's default, which turns swing-up into balancing; Q12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from envs.options import setting
from envs.pendulum import PendulumConfig, PendulumEnv, wrap_angle


@dataclass
class CartPoleConfig(PendulumConfig):
    cartpole_start: str = setting("hanging", choices=("hanging", "upright"))
    """Pole start angle: 'hanging' (-pi, DiffRL's swing-up) or 'upright' (0, the fork's default; Q12)."""


class CartPole(PendulumEnv):
    config_class = CartPoleConfig
    asset = "cartpole"
    act_dim = 1
    force = 1000.0

    def start_state(self) -> np.ndarray:
        return np.array([0.0, -math.pi if self.cfg.cartpole_start == "hanging" else 0.0])

    def observation_blocks(self) -> list[tuple[str, int]]:
        names = ("cart_position", "cart_velocity", "pole_sin", "pole_cos", "pole_velocity")
        return [(name, 1) for name in names]

    def observe(self, q, qd, last_action):
        parts = {
            "cart_position": q[:, 0:1],
            "cart_velocity": qd[:, 0:1],
            "pole_sin": torch.sin(q[:, 1:2]),
            "pole_cos": torch.cos(q[:, 1:2]),
            "pole_velocity": qd[:, 1:2],
        }
        return self.obs_layout.join(parts)

    def actuation(self, actions):
        return torch.cat((self.force * actions, actions.new_zeros(actions.shape[0], 1)), dim=1), None

    def reward_terms(self, o, actions):
        # The action cost has weight 0 in the reference (envs §7.4), so it is not a term.
        theta = wrap_angle(o["pole_sin"], o["pole_cos"])
        return {
            "pole_angle": -(theta * theta),
            "pole_velocity": -0.1 * o["pole_velocity"] ** 2,
            "cart_position": -0.05 * o["cart_position"] ** 2,
            "cart_velocity": -0.1 * o["cart_velocity"] ** 2,
        }

    def primal(self, o):
        theta = wrap_angle(o["pole_sin"], o["pole_cos"])
        return -(theta * theta)
