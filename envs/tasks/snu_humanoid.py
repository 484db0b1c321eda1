"""SNU humanoid, lower body with 152 muscles (envs §7, §8): 53 observations, 152 actions.

Observation (``obs_layout``): height 0, rotation 1:5, velocity 5:8, angular_velocity 8:11, joint_q 11:33
(ball quaternions as x, y, z, w), joint_qd 33:51 (x 0.1), up 51, heading 52; no previous action.

Reference quirks reproduced by default and switchable: signed activations (Q2), the 0.36 f0 strength
scale from a doubly applied 0.6 (Q3), a height reward that is computed but never added (Q4), and reset
noise on every joint coordinate including ball-joint quaternion components, not renormalised (Q5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from envs.base import LocomotionConfig, LocomotionEnv
from envs.models.snu import load_snu
from envs.options import setting
from envs.rotations import axis_angle_quat
from envs.sim.model import PhysicsParams

SUBSTEPS = 48
"""Physics substeps per control step: the substep is 1/(60 x 48) s."""
MASS_MATRIX_INTERVAL = 8
"""Mass-matrix refresh every 8 substeps, 6 per control step (docs/quirks.md, envs §4)."""
START_POSITION = (0.0, 1.0, 0.0)
"""Pelvis joint frame at the start, Y-up (the data is Y-up already)."""
START_ROTATION = axis_angle_quat((0.0, 1.0, 0.0), 90.0)
"""+90 degrees about y, so the character faces +x (xyzw)."""
REFERENCE_MASS = 15.0
"""Joint passive parameters scale with s = (child body mass) / REFERENCE_MASS (envs §8.4)."""


def joint_passive(child_mass: float) -> dict[str, float]:
    """Passive parameters of a non-free joint whose child body has this mass (envs §8.4): spring
    k_e = 5 sqrt(s), damping k_d = 2 and armature 0.05 (unscaled), joint-limit spring k_le = 1e3 s and
    always-on limit damping k_ld = 10 s (Q8)."""
    s = child_mass / REFERENCE_MASS
    return {
        "stiffness": 5.0 * math.sqrt(s),
        "damping": 2.0,
        "armature": 0.05,
        "limit_ke": 1.0e3 * s,
        "limit_kd": 10.0 * s,
    }


CONTACT = {"contact_ke": 5.0e3, "contact_kd": 2.0e3, "contact_kf": 1.0e3, "contact_mu": 0.5}
"""Ground-contact material of every box corner (envs §7.2, §8.4)."""


@dataclass
class SnuConfig(LocomotionConfig):
    snu_strength_scale: float = setting(0.36, minimum=0.0)
    """Muscle force = activation x scale x f0; the reference applies 0.6 twice (Q3)."""
    snu_activation: str = setting("signed", choices=("signed", "unit"))
    """'signed': activation = clip(a, -1, 1), pushing muscles allowed (fork, Q2); 'unit': 0.5 a + 0.5."""
    snu_height_reward: bool = False
    """Add the height term the reference computes but never adds (Q4)."""
    snu_joint_noise: bool = True
    """Reset noise on all 22 joint coordinates incl. ball quaternions (fork, Q5); False: none (DiffRL)."""
    nan_grad_fix: bool = True
    """NaN-to-zero gradient hooks, on for SNU in the reference (Q11)."""
    snu_data_dir: str | None = setting(None, path=True)
    """Directory with human.xml and muscle284.xml (default: WARPBENCH_SNU_DIR, cache, or download)."""


class SnuHumanoid(LocomotionEnv):
    config_class = SnuConfig
    act_dim = 152
    start_rotation = START_ROTATION
    start_position = START_POSITION
    target_x = 10000.0
    termination_height = 0.46
    with_previous_action = False

    def build_physics(self, cfg):
        snu = load_snu(cfg.snu_data_dir, passive=joint_passive)
        self.joint_noise = 0.2 if cfg.snu_joint_noise else 0.0
        self._rest_joints = snu.mjmodel.qpos0[7:].copy()
        self._f0 = torch.as_tensor(snu.muscles.f0, dtype=torch.float64, device=self.device)
        m = snu.mjmodel
        index = []
        for j in range(1, m.njnt):  # joint 0 is the free root
            adr = int(m.jnt_qposadr[j])
            index += (
                [adr + 1, adr + 2, adr + 3, adr] if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL else [adr]
            )
        self._joint_obs_index = torch.tensor(index)
        params = PhysicsParams(
            substeps=SUBSTEPS,
            mass_matrix_interval=MASS_MATRIX_INTERVAL,
            limit_ke=snu.limit_ke,
            limit_kd=snu.limit_kd,
            **CONTACT,
        )
        return snu.spec, params, snu.muscles

    def start_joint_positions(self) -> np.ndarray:
        return self._rest_joints

    def joint_observation(self, q: torch.Tensor) -> torch.Tensor:
        """joint_q[7:] with each ball quaternion in dflex's (x, y, z, w) order."""
        return q[:, self._joint_obs_index]

    def actuation(self, actions):
        activation = actions if self.cfg.snu_activation == "signed" else 0.5 * actions + 0.5
        muscle_force = activation * (self.cfg.snu_strength_scale * self._f0)
        return actions.new_zeros(actions.shape[0], self.nv), muscle_force

    def reward_terms(self, o: dict[str, torch.Tensor], actions: torch.Tensor) -> dict[str, torch.Tensor]:
        activation = actions if self.cfg.snu_activation == "signed" else 0.5 * actions + 0.5
        terms = {
            "progress": o["velocity"][:, 0],
            "up": 0.1 * o["up"],
            "heading": 1.0 * o["heading"],
            "activation_cost": -0.001 * activation.abs().sum(1),
        }
        if self.cfg.snu_height_reward:  # computed but never added by the reference (Q4)
            d = torch.clamp(o["height"] - 0.51, -1.0, 0.05)
            terms["height"] = torch.where(d < 0, -200.0 * d * d, 4.0 * d)
        return terms
