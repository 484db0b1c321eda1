"""Batched torch envs over the Warp engine (envs §6, §7.3, §7.5).

``ArticulatedEnv`` owns what every task shares: the state, the step loop, invalid-state terminations,
resets inside ``step``, determinism and input checks. A task says which model, which physical
parameters, how actions become forces, its observation, start state, reset noise and reward.
``LocomotionEnv`` is the free-root family (ant, humanoid, SNU): the shared locomotion observation block,
whose quantities are dflex's Y-up ones whatever the model's own up axis (MuJoCo assets are Z-up).
Planar and fixed-base tasks build on ``ArticulatedEnv`` directly (``envs/planar.py``, ``envs/tasks/``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch

from envs import rotations as rot
from envs.layout import ObsLayout
from envs.memory import check_fits
from envs.options import build_config, setting
from envs.sim.autograd import control_step
from envs.sim.model import Model, PhysicsParams, build_model
from envs.sim.simulator import Simulator


@dataclass
class LocomotionConfig:
    """Options every env accepts as ``envs.make(name, **overrides)`` (the name is historical: the planar and
    pendulum tasks take them too; the contact settings do nothing where there is no ground).

    Each field's type and range (``setting``) is checked when the env is made and when CLI text is
    parsed (``envs.parse_override``): this dataclass is the one table of env settings.
    """

    episode_length: int = setting(1000, minimum=1)
    """Control steps before truncation."""
    early_termination: bool = True
    """Terminate when the root height falls below the task's threshold, for tasks that have one (invalid
    states always terminate)."""
    stochastic_init: bool = True
    """Add the task's uniform reset noise at every reset (docs/quirks.md, envs §7.5)."""
    reward_timing: str = setting("pre", choices=("pre", "post"))
    """'pre': reward from the observation before the action (fork, Q1); 'post': after it (DiffRL)."""
    nan_grad_fix: bool = False
    """Replace NaN gradients flowing into state and actions by 0, counting them (Q11)."""
    dtype: str = setting("float32", choices=("float32", "float64"))
    """Dtype of observations and rewards (the engine always runs in float64)."""
    substeps: int | None = setting(None, minimum=1)
    """Physics substeps per control step (None: the task's value)."""
    mass_matrix_interval: int | None = setting(None, minimum=1)
    """Mass-matrix refresh interval in substeps (None: the task's value)."""
    contact_ke: float | None = setting(None, minimum=0.0)
    """Contact stiffness (None: the task's value)."""
    contact_kd: float | None = setting(None, minimum=0.0)
    """Contact damping (None: the task's value)."""
    contact_kf: float | None = setting(None, minimum=0.0)
    """Contact friction stiffness (None: the task's value)."""
    contact_mu: float | None = setting(None, minimum=0.0)
    """Friction coefficient (None: the task's value)."""
    friction_smoothing: float = setting(0.0, minimum=0.0)
    """Huber-type smoothing of the tangential speed in the friction law (0 = off, the reference)."""


# Config fields that, when set, replace the task's engine parameters of the same name.
PHYSICS_OVERRIDES = (
    "substeps",
    "mass_matrix_interval",
    "contact_ke",
    "contact_kd",
    "contact_kf",
    "contact_mu",
)


class ArticulatedEnv:
    """Base class of every task. Subclasses set ``act_dim`` and implement the hooks below."""

    config_class: type = LocomotionConfig
    act_dim: int

    # -- hooks ----------------------------------------------------------------------------------
    def build_physics(self, cfg: Any) -> tuple[mujoco.MjSpec, PhysicsParams, Any]:
        """Return the MuJoCo model as an uncompiled spec, the engine parameters and the muscle set (or None).

        A spec, so that a MuJoCo reference can change it before compiling (``bench.perf`` turns on
        MuJoCo's ground contact, which it cannot once compiled)."""
        raise NotImplementedError

    def start_state(self) -> np.ndarray | torch.Tensor:
        """Joint coordinates ``q`` [nq] of the start state, before noise (MuJoCo layout); velocities are 0."""
        raise NotImplementedError

    def add_reset_noise(self, q: torch.Tensor, qd: torch.Tensor) -> None:
        """Add the task's reset noise (envs §7.5) to start states ``q`` [n, nq], ``qd`` [n, nv] in place."""
        raise NotImplementedError

    def observation_blocks(self) -> list[tuple[str, int]]:
        """(name, size) of each observation block, in order (becomes ``obs_layout``)."""
        raise NotImplementedError

    def observe(self, q: torch.Tensor, qd: torch.Tensor, last_action: torch.Tensor) -> torch.Tensor:
        """The observation [N, obs_dim] in float64 at (q, qd) after ``last_action`` (envs §7.3)."""
        raise NotImplementedError

    def actuation(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Map clipped actions to (generalized forces [N, nv], muscle forces [N, M] or None), float64."""
        raise NotImplementedError

    def reward_terms(self, o: dict[str, torch.Tensor], actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named [N] reward terms from the named observation ``o`` (``obs_layout.split``); their sum,
        in this order, is the reward."""
        raise NotImplementedError

    def fallen(self, o: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """[N] bool: the early-termination test on the named observation, or None for a task without one."""
        return None

    def primal(self, o: dict[str, torch.Tensor]) -> torch.Tensor:
        """[N] the task's main quantity, logged as ``info["primal"]`` (envs §7.4)."""
        raise NotImplementedError

    # -- construction ---------------------------------------------------------------------------
    def __init__(self, num_envs: int = 1, device: str = "cpu", seed: int = 0, **overrides: Any):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device; use device='cpu'")
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
        if self.device.type == "cuda" and self.device.index is None:
            # Tensors made on "cuda" report "cuda:<current>": an unindexed env device never equals theirs.
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.cfg = build_config(self.config_class, overrides)
        self.num_envs = num_envs
        spec, params, muscles = self.build_physics(self.cfg)
        mjmodel = spec.compile()
        changes = {
            key: getattr(self.cfg, key) for key in PHYSICS_OVERRIDES if getattr(self.cfg, key) is not None
        }
        params = dataclasses.replace(params, friction_smoothing=self.cfg.friction_smoothing, **changes)
        self.model: Model = build_model(mjmodel, params, device=str(self.device), muscles=muscles)
        check_fits(self.model, num_envs, self.device)
        self.sim = Simulator(self.model, num_envs)
        self.nq, self.nv = self.model.nq, self.model.nv
        self.max_episode_steps = self.cfg.episode_length
        self.obs_dtype = getattr(torch, self.cfg.dtype)
        self.start_q = torch.as_tensor(self.start_state(), dtype=torch.float64, device=self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.nan_grad_count = 0
        self.obs_layout = ObsLayout(self.observation_blocks())
        """Named blocks of the observation (envs §7.3); ``obs_layout.split(obs)["height"]`` etc."""
        self.obs_dim = self.obs_layout.dim
        self.reset()

    # -- state ----------------------------------------------------------------------------------
    def _uniform(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        x = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return ((2.0 * x - 1.0) * bound).to(self.device)

    def _start_states(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Start (q, qd) for ``count`` envs, with reset noise if ``stochastic_init`` (envs §7.5)."""
        q = self.start_q.expand(count, -1).clone()
        qd = torch.zeros(count, self.nv, dtype=torch.float64, device=self.device)
        if self.cfg.stochastic_init:
            self.add_reset_noise(q, qd)
        return q, qd

    def reset(self) -> torch.Tensor:
        """Reset every env; returns the observation (no gradient history)."""
        self.q, self.qd = self._start_states(self.num_envs)
        self.last_action = torch.zeros(self.num_envs, self.act_dim, dtype=torch.float64, device=self.device)
        self.progress = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.obs = self.observe(self.q, self.qd, self.last_action)
        return self.obs.to(self.obs_dtype)

    def detach_state(self) -> torch.Tensor:
        """Cut the autograd graph at the current state (SHAC's window start); physics unchanged."""
        self.q, self.qd = self.q.detach(), self.qd.detach()
        self.last_action, self.obs = self.last_action.detach(), self.obs.detach()
        return self.obs.to(self.obs_dtype)

    def set_state(self, qpos: np.ndarray | torch.Tensor, qvel: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Load MuJoCo ``qpos`` [N, nq] / ``qvel`` [N, nv] (MuJoCo conventions) into every env."""
        q = torch.as_tensor(qpos, dtype=torch.float64, device=self.device).reshape(self.num_envs, self.nq)
        qd = torch.as_tensor(qvel, dtype=torch.float64, device=self.device).reshape(self.num_envs, self.nv)
        self.q, self.qd = q.clone(), qd.clone()
        self.obs = self.observe(self.q, self.qd, self.last_action)
        return self.obs.to(self.obs_dtype)

    def body_positions(self) -> torch.Tensor:
        """World-frame positions [N, nbody-1, 3] of MuJoCo bodies 1.. in the model's own frame."""
        links = torch.as_tensor(self.model.body_link[1:], device=self.device)
        return self.sim.link_transforms(self.q)[:, links, :3]

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.detach().cpu(),
            "qd": self.qd.detach().cpu(),
            "last_action": self.last_action.detach().cpu(),
            "progress": self.progress.cpu(),
            "generator": self.generator.get_state(),
            "nan_grad_count": self.nan_grad_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q = state["q"].to(self.device)
        self.qd = state["qd"].to(self.device)
        self.last_action = state["last_action"].to(self.device)
        self.progress = state["progress"].to(self.device)
        self.generator.set_state(state["generator"])
        self.nan_grad_count = int(state["nan_grad_count"])
        self.obs = self.observe(self.q, self.qd, self.last_action)

    # -- step -----------------------------------------------------------------------------------
    def _check_actions(self, actions: Any) -> None:
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor, got {type(actions).__name__}")
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(
                f"actions must have shape {(self.num_envs, self.act_dim)}, got {tuple(actions.shape)}"
            )
        if not actions.is_floating_point():
            raise TypeError(f"actions must be a floating-point tensor, got {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the env is on {self.device}")
        if not bool(torch.isfinite(actions).all()):
            raise ValueError("actions contain NaN or infinite values")

    def _nan_to_zero_hook(self, grad: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(grad)
        count = int(bad.sum())
        if count:
            self.nan_grad_count += count
            return torch.where(bad, torch.zeros_like(grad), grad)
        return grad

    def step(self, actions: torch.Tensor):
        """Advance every env one control step; returns (obs, reward, terminated, truncated, info)."""
        self._check_actions(actions)
        a = actions.to(torch.float64).clamp(-1.0, 1.0)
        q, qd = self.q, self.qd
        if self.cfg.nan_grad_fix and torch.is_grad_enabled():
            for t in (q, qd, a):
                if t.requires_grad:
                    t.register_hook(self._nan_to_zero_hook)
        joint_force, muscle_force = self.actuation(a)
        q, qd = control_step(self.sim, q, qd, joint_force, muscle_force)
        self.progress = self.progress + 1
        obs = self.observe(q, qd, a)
        named = self.obs_layout.split(obs)
        terms = self.reward_terms(
            self.obs_layout.split(self.obs) if self.cfg.reward_timing == "pre" else named, a
        )
        invalid = ~(torch.isfinite(q).all(1) & torch.isfinite(qd).all(1))
        invalid |= (q.abs() > 1e6).any(1) | (qd.abs() > 1e6).any(1)
        terms = {name: torch.where(invalid, torch.zeros_like(term), term) for name, term in terms.items()}
        reward = functools.reduce(torch.add, terms.values())
        # The termination condition, reported even when early termination is off (datasets record it so
        # that an offline world model can learn where episodes would end).
        fallen = self.fallen(named)
        would_terminate = invalid.clone() if fallen is None else invalid | fallen
        terminated = would_terminate if self.cfg.early_termination else invalid.clone()
        truncated = self.progress >= self.cfg.episode_length
        info = {
            "obs_before_reset": obs.to(self.obs_dtype),
            "invalid": invalid,
            "would_terminate": would_terminate,
            "primal": self.primal(named).detach().to(self.obs_dtype),
            "reward_terms": {name: term.detach().to(self.obs_dtype) for name, term in terms.items()},
        }
        done = terminated | truncated
        self.last_action = a
        if bool(done.any()):
            start_q, start_qd = self._start_states(int(done.sum()))
            rows = done.nonzero().squeeze(1)
            q = q.index_put((rows,), start_q)
            qd = qd.index_put((rows,), start_qd)
            self.last_action = a.index_put((rows,), a.new_zeros(len(rows), self.act_dim))
            self.progress = torch.where(done, torch.zeros_like(self.progress), self.progress)
            obs = self.observe(q, qd, self.last_action)
        self.q, self.qd, self.obs = q, qd, obs
        return obs.to(self.obs_dtype), reward.to(self.obs_dtype), terminated, truncated, info


class LocomotionEnv(ArticulatedEnv):
    """Free-root locomotion tasks (ant, humanoid, SNU): the shared observation block, start pose and noise."""

    world_to_yup: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    """xyzw rotation from the model's world frame to dflex's Y-up frame."""
    start_rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    """Root start orientation in the Y-up frame (xyzw)."""
    start_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Root start position in the Y-up frame."""
    target_x: float = 10000.0
    termination_height: float = 0.0
    joint_noise: float = 0.2
    with_previous_action: bool = True

    def start_joint_positions(self) -> np.ndarray:
        """Joint coordinates after the root's 7 (MuJoCo layout)."""
        return np.zeros(self.nq - 7)

    def joint_observation(self, q: torch.Tensor) -> torch.Tensor:
        """The joint_q[7:] block of the observation (SNU reorders ball quaternions)."""
        return q[:, 7:]

    def start_state(self) -> torch.Tensor:
        # Also keeps the Y-up rotations and start pose that observe() and add_reset_noise() use.
        f64 = dict(dtype=torch.float64, device=self.device)
        self._to_yup = torch.tensor(self.world_to_yup, **f64)
        self._from_yup = rot.quat_conjugate(self._to_yup)
        self._start_rot_inv = rot.quat_conjugate(torch.tensor(self.start_rotation, **f64))
        self._start_pos = torch.tensor(self.start_position, **f64)
        start_rot_model = rot.quat_mul(self._from_yup, torch.tensor(self.start_rotation, **f64))
        return torch.cat(
            (
                rot.quat_rotate(self._from_yup, self._start_pos),
                rot.xyzw_to_wxyz(start_rot_model),
                torch.as_tensor(self.start_joint_positions(), **f64),
            )
        )

    def observation_blocks(self) -> list[tuple[str, int]]:
        blocks = [
            ("height", 1),
            ("rotation", 4),
            ("velocity", 3),
            ("angular_velocity", 3),
            ("joint_q", self.nq - 7),
            ("joint_qd", self.nv - 6),
            ("up", 1),
            ("heading", 1),
        ]
        if self.with_previous_action:
            blocks.append(("previous_action", self.act_dim))
        return blocks

    def fallen(self, o: dict[str, torch.Tensor]) -> torch.Tensor:
        return o["height"] < self.termination_height

    def primal(self, o: dict[str, torch.Tensor]) -> torch.Tensor:
        return o["velocity"][:, 0]

    def observe(self, q: torch.Tensor, qd: torch.Tensor, last_action: torch.Tensor) -> torch.Tensor:
        """Locomotion observation block (envs §7.3) in float64."""
        n = q.shape[0]
        to_yup = self._to_yup.expand(n, 4)
        pos = rot.quat_rotate(to_yup, q[:, 0:3])
        root_rot_model = rot.wxyz_to_xyzw(q[:, 3:7])
        root_rot = rot.quat_mul(to_yup, root_rot_model)
        v = rot.quat_rotate(to_yup, qd[:, 0:3])
        w = rot.quat_rotate(root_rot, qd[:, 3:6])  # body-frame angular velocity -> Y-up world
        relative = rot.quat_mul(root_rot, self._start_rot_inv.expand(n, 4))
        up = rot.quat_rotate(relative, pos.new_tensor([0.0, 1.0, 0.0]).expand(n, 3))
        heading_vec = rot.quat_rotate(relative, pos.new_tensor([1.0, 0.0, 0.0]).expand(n, 3))
        to_target = pos.new_tensor([self.target_x, 0.0, 0.0]) + self._start_pos - pos
        to_target = to_target * pos.new_tensor([1.0, 0.0, 1.0])
        target_dir = to_target / torch.linalg.vector_norm(to_target, dim=1, keepdim=True).clamp_min(1e-12)
        heading = (heading_vec * target_dir).sum(dim=1, keepdim=True)
        parts = {
            "height": pos[:, 1:2],
            "rotation": root_rot,
            "velocity": v,
            "angular_velocity": w,
            "joint_q": self.joint_observation(q),
            "joint_qd": 0.1 * qd[:, 6:],
            "up": up[:, 1:2],
            "heading": heading,
        }
        if self.with_previous_action:
            parts["previous_action"] = last_action
        return self.obs_layout.join(parts)

    def add_reset_noise(self, q: torch.Tensor, qd: torch.Tensor) -> None:
        """Root position, orientation and joints, and the spatial twist (Q9), in place."""
        count = q.shape[0]
        q[:, 0:3] += self._uniform((count, 3), 0.1)
        axis = self._uniform((count, 3), 0.5)
        axis = axis / torch.linalg.vector_norm(axis, dim=1, keepdim=True).clamp_min(1e-12)
        delta = rot.quat_from_axis_angle(axis, self._uniform((count,), math.pi / 24))
        root = rot.quat_mul(rot.wxyz_to_xyzw(q[:, 3:7]), delta)
        q[:, 3:7] = rot.xyzw_to_wxyz(root)
        q[:, 7:] += self._uniform((count, self.nq - 7), self.joint_noise)
        # Noise on the spatial twist (omega, v at the world origin) in the Y-up frame, then MuJoCo's
        # free-joint velocity: origin velocity in world, angular velocity in the body frame.
        w_yup, v0_yup = self._uniform((count, 3), 0.25), self._uniform((count, 3), 0.25)
        from_yup = self._from_yup.expand(count, 4)
        w_world, v0_world = rot.quat_rotate(from_yup, w_yup), rot.quat_rotate(from_yup, v0_yup)
        qd[:, 0:3] = v0_world + torch.linalg.cross(w_world, q[:, 0:3], dim=1)
        qd[:, 3:6] = rot.quat_rotate(rot.quat_conjugate(root), w_world)
        qd[:, 6:] = self._uniform((count, self.nv - 6), 0.25)
