"""SNU humanoid, lower body with 152 muscles (envs spec §7, §8): 53 observations, 152 actions.

Reference quirks reproduced by default and switchable: signed activations (Q2), the 0.36 f0 strength
scale from a doubly applied 0.6 (Q3), a height reward that is computed but never added (Q4), and reset
noise on every joint coordinate including ball-joint quaternion components, not renormalised (Q5).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from envs.base import LocomotionConfig, LocomotionEnv
from envs.models.snu import CONTACT_MATERIAL, load_snu
from envs.rotations import axis_angle_quat
from envs.sim.model import PhysicsParams


@dataclass
class SnuConfig(LocomotionConfig):
    snu_strength_scale: float = 0.36
    """Muscle force = activation x scale x f0; the reference applies 0.6 twice (Q3)."""
    snu_activation: str = "signed"
    """'signed': activation = clip(a, -1, 1), pushing muscles allowed (fork, Q2); 'unit': 0.5 a + 0.5."""
    snu_height_reward: bool = False
    """Add the height term the reference computes but never adds (Q4)."""
    snu_joint_noise: bool = True
    """Reset noise on all 22 joint coordinates incl. ball quaternions (fork, Q5); False: none (DiffRL)."""
    nan_grad_fix: bool = True
    """NaN-to-zero gradient hooks, on for SNU in the reference (Q11)."""
    snu_data_dir: str | None = None
    """Directory with human.xml and muscle284.xml (default: WARPBENCH_SNU_DIR, cache, or download)."""


class SnuHumanoid(LocomotionEnv):
    config_class = SnuConfig
    act_dim = 152
    start_rotation = axis_angle_quat((0.0, 1.0, 0.0), 90.0)  # the data is Y-up already
    start_position = (0.0, 1.0, 0.0)
    target_x = 10000.0
    termination_height = 0.46
    with_previous_action = False

    def build_physics(self, cfg):
        if cfg.snu_activation not in ("signed", "unit"):
            raise ValueError(f"snu_activation must be 'signed' or 'unit', got {cfg.snu_activation!r}")
        snu = load_snu(cfg.snu_data_dir)
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
            substeps=48,
            mass_matrix_interval=8,
            limit_ke=snu.limit_ke,
            limit_kd=snu.limit_kd,
            contact_ke=CONTACT_MATERIAL["ke"],
            contact_kd=CONTACT_MATERIAL["kd"],
            contact_kf=CONTACT_MATERIAL["kf"],
            contact_mu=CONTACT_MATERIAL["mu"],
        )
        return snu.mjmodel, params, snu.muscles

    def start_joint_positions(self) -> np.ndarray:
        return self._rest_joints

    def joint_observation(self, q: torch.Tensor) -> torch.Tensor:
        """joint_q[7:] with each ball quaternion in the spec's (x, y, z, w) order."""
        return q[:, self._joint_obs_index]

    def actuation(self, actions):
        activation = actions if self.cfg.snu_activation == "signed" else 0.5 * actions + 0.5
        muscle_force = activation * (self.cfg.snu_strength_scale * self._f0)
        return actions.new_zeros(actions.shape[0], self.nv), muscle_force

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        activation = actions if self.cfg.snu_activation == "signed" else 0.5 * actions + 0.5
        reward = obs[:, 5] + 0.1 * obs[:, 51] + 1.0 * obs[:, 52] - 0.001 * activation.abs().sum(1)
        if self.cfg.snu_height_reward:
            d = torch.clamp(obs[:, 0] - 0.51, -1.0, 0.05)
            reward = reward + torch.where(d < 0, -200.0 * d * d, 4.0 * d)
        return reward
