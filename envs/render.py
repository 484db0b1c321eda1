"""Pictures of engine states with MuJoCo's own renderer (``mujoco.Renderer``), headless.

The engine keeps its state in MuJoCo's ``qpos`` layout and conventions on the same compiled model
(``envs/sim/model.py``), so an env's state is drawn by copying it into ``MjData.qpos`` and running MuJoCo's
kinematics (:func:`mirror_state`): what is drawn is exactly what was simulated. On top of MuJoCo's scene
this module adds what the model itself does not show: a 1 m grid on the ground (motion is invisible on a
plain plane under a tracking camera) and, for muscle models, the straight segments the engine applies its
muscle forces along, coloured by activation.

Headless OpenGL: MuJoCo picks its GL backend from ``MUJOCO_GL`` when it is first imported (GLFW, which needs a
display, when unset); ``bench.headless`` chooses EGL or OSMesa before that.
"""

from __future__ import annotations

import copy
import math

import mujoco
import numpy as np
import torch

CAMERAS = ("track", "fixed")
SEGMENT_WIDTH = 3.0
"""Width in pixels of the muscle-segment lines (capsules would triple the frame time in software GL)."""
GRID_SPACING = 1.0
"""Ground grid spacing in metres."""
GRID_HALF_LINES = 12
"""Grid lines drawn on each side of the camera target, in each direction."""


def mirror_state(model: mujoco.MjModel, data: mujoco.MjData, q: np.ndarray | torch.Tensor) -> None:
    """Load one env's engine coordinates ``q`` [nq] into ``data`` and compute MuJoCo's kinematics.

    A plain copy: the engine's ``q`` is MuJoCo's ``qpos`` (same layout, quaternions w-first).
    """
    q = q.detach().cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
    if q.shape != (model.nq,):
        raise ValueError(f"q must have shape ({model.nq},), got {q.shape}")
    data.qpos[:] = q
    mujoco.mj_kinematics(model, data)


def segment_endpoints(data: mujoco.MjData, muscles: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """World endpoints [S, 3] x 2 of the muscle segments, from the body frames in ``data``."""
    ends = []
    for side in ("a", "b"):
        body, point = muscles[f"body_{side}"], muscles[f"point_{side}"]
        rotation = data.xmat[body].reshape(-1, 3, 3)
        ends.append(data.xpos[body] + np.einsum("sij,sj->si", rotation, point))
    return ends[0], ends[1]


def activation_colors(activation: np.ndarray) -> np.ndarray:
    """RGBA [M, 4] per muscle: grey at 0, red as the (pulling) activation goes to 1, blue below 0.

    Negative activations are the fork's signed 'pushing' muscles (SNU quirk Q2).
    """
    a = np.clip(np.asarray(activation, dtype=np.float64), -1.0, 1.0)
    pull, push = np.clip(a, 0.0, 1.0), np.clip(-a, 0.0, 1.0)
    grey = 0.55 * (1.0 - np.abs(a))
    rgba = np.stack([grey + pull, grey + 0.1 * (pull + push), grey + push, np.ones_like(a)], axis=1)
    return rgba.clip(0.0, 1.0)


def engine_muscles(env) -> dict[str, np.ndarray] | None:
    """Segment bodies, body-frame points and muscle ids of the env's muscles, or None without muscles."""
    model = env.model
    if model.num_segments == 0:
        return None
    segments = model.muscles
    body_of_link = {int(link): body for body, link in enumerate(model.body_link) if link >= 0}
    return {
        "muscle": segments.muscle.numpy(),
        "body_a": np.array([body_of_link[int(k)] for k in segments.link_a.numpy()]),
        "body_b": np.array([body_of_link[int(k)] for k in segments.link_b.numpy()]),
        "point_a": segments.point_a.numpy(),
        "point_b": segments.point_b.numpy(),
    }


def render_model(env, width: int, height: int) -> mujoco.MjModel:
    """A copy of the env's compiled model that differs only in visual fields (colours, light, framebuffer)."""
    m = copy.copy(env.model.mjmodel)
    m.vis.global_.offwidth = max(m.vis.global_.offwidth, width)
    m.vis.global_.offheight = max(m.vis.global_.offheight, height)
    world = m.geom_bodyid == 0
    m.geom_rgba[world] = (0.32, 0.36, 0.42, 1.0)
    robot_alpha = 0.45 if env.model.num_segments else 1.0  # let the muscles show through the bones
    m.geom_rgba[~world] = (0.85, 0.62, 0.38, robot_alpha)
    m.vis.headlight.ambient[:] = 0.35
    m.vis.headlight.diffuse[:] = 0.6
    return m


class EnvRenderer:
    """Frames of one env of a batch: ``frame(env, i, actions)`` -> uint8 [height, width, 3].

    ``camera``: ``track`` follows the root over the ground (its height held at the start height), ``fixed``
    looks from further away at the root's start position.
    """

    def __init__(self, env, width: int = 640, height: int = 480, camera: str = "track") -> None:
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; valid: {', '.join(CAMERAS)}")
        if width < 16 or height < 16:
            raise ValueError(f"width and height must be >= 16, got {width}x{height}")
        self.camera = camera
        self.muscles = engine_muscles(env)
        self.model = render_model(env, width, height)
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._full_force = None
        if self.muscles is not None:
            # Muscle force at full activation, to turn applied forces back into activations for colour.
            ones = torch.ones(1, env.act_dim, dtype=torch.float64, device=env.device)
            self._full_force = env.actuation(ones)[1][0].cpu().numpy()
        self.up = env.model.up / np.linalg.norm(env.model.up)
        forward = np.array([1.0, 0.0, 0.0]) - self.up[0] * self.up  # tasks walk along +x
        self.forward = forward / np.linalg.norm(forward)
        self.side = np.cross(self.up, self.forward)
        mirror_state(self.model, self.data, env.start_q)
        self.start_target = self.data.xpos[1].copy()
        self.size = self._robot_radius()

    def _robot_radius(self) -> float:
        """Distance from the root to the farthest geom surface at the start state (sets camera distance)."""
        robot = self.model.geom_bodyid > 0
        reach = np.linalg.norm(self.data.geom_xpos[robot] - self.data.xpos[1], axis=1)
        return float(np.max(reach + self.model.geom_rbound[robot]))

    def _target(self) -> np.ndarray:
        if self.camera == "fixed":
            return self.start_target
        root = self.data.xpos[1]
        height = (self.start_target - root) @ self.up
        return root + height * self.up

    def _place_camera(self, target: np.ndarray) -> None:
        distance = (2.2 if self.camera == "track" else 6.0) * self.size
        azimuth, elevation = math.radians(-105.0), math.radians(20.0)
        offset = math.cos(elevation) * (math.cos(azimuth) * self.forward + math.sin(azimuth) * self.side)
        position = target + distance * (offset + math.sin(elevation) * self.up)
        look = (target - position) / np.linalg.norm(target - position)
        up = self.up - (self.up @ look) * look
        for gl_camera in self.renderer.scene.camera:
            gl_camera.pos[:] = position
            gl_camera.forward[:] = look
            gl_camera.up[:] = up / np.linalg.norm(up)

    def _add_geom(self, kind: int, width: float, start: np.ndarray, end: np.ndarray, rgba) -> None:
        scene = self.renderer.scene
        if scene.ngeom >= scene.maxgeom:
            raise RuntimeError(f"the scene holds at most {scene.maxgeom} geoms")
        geom = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(geom, kind, np.zeros(3), np.zeros(3), np.eye(3).ravel(), np.asarray(rgba, "f4"))
        mujoco.mjv_connector(geom, kind, width, start, end)
        scene.ngeom += 1

    def _add_grid(self, target: np.ndarray) -> None:
        ground = target - (target @ self.up) * self.up  # the floor plane passes through the origin
        centre = [round(ground @ axis / GRID_SPACING) * GRID_SPACING for axis in (self.forward, self.side)]
        half = GRID_HALF_LINES * GRID_SPACING
        lift = 0.002 * self.up  # just above the plane, so the lines are not hidden in it
        for k in range(-GRID_HALF_LINES, GRID_HALF_LINES + 1):
            for axis, other, c_axis, c_other in (
                (self.forward, self.side, centre[0], centre[1]),
                (self.side, self.forward, centre[1], centre[0]),
            ):
                at = (c_axis + k * GRID_SPACING) * axis + lift
                self._add_geom(
                    mujoco.mjtGeom.mjGEOM_LINE,
                    2.0,
                    at + (c_other - half) * other,
                    at + (c_other + half) * other,
                    (0.55, 0.6, 0.68, 1.0),
                )

    def _add_muscles(self, muscle_force: np.ndarray) -> None:
        assert self.muscles is not None and self._full_force is not None
        activation = muscle_force / np.where(self._full_force == 0.0, 1.0, self._full_force)
        colors = activation_colors(activation)[self.muscles["muscle"]]
        start, end = segment_endpoints(self.data, self.muscles)
        for s in range(len(start)):
            self._add_geom(mujoco.mjtGeom.mjGEOM_LINE, SEGMENT_WIDTH, start[s], end[s], colors[s])

    def frame(self, env, index: int = 0, actions: torch.Tensor | None = None) -> np.ndarray:
        """The picture of env ``index`` now; ``actions`` [N, act_dim] colour the muscles (if any)."""
        mirror_state(self.model, self.data, env.q[index])
        self.renderer.update_scene(self.data)
        target = self._target()
        self._place_camera(target)
        self._add_grid(target)
        if self.muscles is not None:
            a = torch.zeros(1, env.act_dim, dtype=torch.float64, device=env.device)
            if actions is not None:
                a = actions[index : index + 1].to(torch.float64).clamp(-1.0, 1.0)
            self._add_muscles(env.actuation(a)[1][0].cpu().numpy())
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()
