"""SNU humanoid (MASS skeleton + muscles, lower body only) as a MuJoCo model plus a muscle table.

Spec: envs §8 (docs/quirks.md). The MASS files (``human.xml``, ``muscle284.xml``, Apache-2.0, lsw9021/MASS)
give every transform as a world-frame rest pose in metres, Y-up. ``load_snu`` keeps the 11 lower-body
nodes (pelvis, femurs, tibias, tali, big-toe and little-toe blocks), builds them as a ``mujoco.MjSpec`` and
compiles it, and converts the 152 muscle units whose waypoints all lie on kept bodies into straight
inter-body segments with body-local anchor points.

Conventions (MuJoCo's, which differ from dflex's):

- Quaternions in the ``MjModel``/``MjData`` and in this module are (w, x, y, z); dflex uses
  (x, y, z, w).
- Body frame of a node = the node's *joint* frame (envs §8.4 "link frame"); the joint sits at the body
  origin. The box geom is placed at inv(joint frame)·(body frame).
- Free joint (root): qpos = (p, quat) = position and orientation of the pelvis frame in world, as in dflex;
  qvel = (linear velocity of the pelvis origin in world, angular velocity in the *pelvis* frame).
  The dflex q̇ is (ω in world, v_O = velocity of the body point at the world origin).
- Ball joint: qpos = quaternion of the child relative to its rest orientation; qvel = angular velocity of
  the child relative to the parent, expressed in the *child* frame (3 dofs).
- Hinge: one coordinate (rad); axis (joint frame = body frame) and limits from the XML.
- Passive terms (envs §3/§8.4): the values come from the ``passive`` function the caller passes (the
  task's ``joint_passive`` in ``envs/tasks/snu_humanoid.py``, a function of the child body's mass); without
  one they are 0. ``jnt_stiffness`` applies to all dofs of the joint, ``dof_damping`` and ``dof_armature``
  per dof; all 0 on the free joint. The joint-limit spring and damper are not MuJoCo concepts; they are
  returned per dof in ``SnuModel.limit_ke``/``limit_kd`` (0 on the free-joint dofs). Note MuJoCo's own ball
  spring acts on the rotation vector (angle·axis), whereas dflex's acts on the quaternion vector part;
  MuJoCo enforces hinge limits as constraints. Both matter only if someone steps the model with MuJoCo.
- World: gravity (0, −9.81, 0); a ground plane at y = 0 with normal +y (a MuJoCo plane rotated −90° about
  x). Collision filter: boxes have contype 1/conaffinity 0 and the plane contype 0/conaffinity 1, so MuJoCo
  only collides boxes with the ground (the warpbench engine uses the 8 corners of each box instead).
- ``qpos0`` (= ``SnuModel.rest_qpos``) is the XML rest pose: the pelvis at its XML joint frame, ball joints
  at identity, hinges at 0 (body frames = XML world joint frames). The task's physical parameters (start
  pose, substeps, contact material) live in ``envs/tasks/snu_humanoid.py``; MuJoCo's own ``opt.timestep``
  and geom friction are left at MuJoCo's defaults, so whoever steps this model with MuJoCo sets them.

Data quirks (kept as in the file, like the reference): the ``FemurR``/``FemurL`` body rotations are not
orthonormal (third row starts with −0.21/+0.21, so the first column has length 1.02 and the matrix is not
symmetric where a rotation would need it). Like dflex's ``quat_from_matrix`` we convert every 3×3 with
Shepperd's method (``mujoco.mju_mat2Quat``, which averages the off-diagonal pairs) and normalise: the femur
boxes end up tilted ≈ 6° about y (entry ≈ −0.106); an SVD projection would differ by only 0.07°. On the
left foot the ``FootThumbL``/``FootPinkyL`` frames are swapped relative to the right foot (the "thumb"
block sits laterally, at about the mirror image of ``FootPinkyR``), while the left-side muscles attach at the
mirror images of the right-side points; anchors on those two blocks are therefore off the box, which is
harmless for the straight-segment model.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from envs.models.snu_data import SNU_FILE_SHA256, snu_data_files, verify_snu_file

SKELETON_FILE = "human.xml"
MUSCLE_FILE = "muscle284.xml"

KEPT_BODY_NAMES: frozenset[str] = frozenset(
    {
        "Pelvis",
        "FemurR",
        "TibiaR",
        "TalusR",
        "FootThumbR",
        "FootPinkyR",
        "FemurL",
        "TibiaL",
        "TalusL",
        "FootThumbL",
        "FootPinkyL",
    }
)
"""Lower-body nodes kept by the reference (envs §8.2); MuJoCo body order follows the file order."""

PassiveParameters = Callable[[float], Mapping[str, float]]
"""child body mass -> {"stiffness", "damping", "armature", "limit_ke", "limit_kd"} of its (non-free) joint."""


def no_passive(child_mass: float) -> dict[str, float]:
    """No joint springs, dampers, armature or limit forces."""
    return dict.fromkeys(("stiffness", "damping", "armature", "limit_ke", "limit_kd"), 0.0)


_JOINT_TYPES = {
    "Free": mujoco.mjtJoint.mjJNT_FREE,
    "Ball": mujoco.mjtJoint.mjJNT_BALL,
    "Revolute": mujoco.mjtJoint.mjJNT_HINGE,
}
_GROUND_QUAT = (math.cos(-math.pi / 4), math.sin(-math.pi / 4), 0.0, 0.0)  # maps +z to +y


@dataclass(frozen=True, eq=False)
class SkeletonNode:
    """One ``Node`` of the MASS skeleton file, transforms as given (world frame, rest pose).

    Rotations are the raw 3×3 matrices of the file (row-major ``linear`` attribute); they are not
    guaranteed to be orthonormal (see the module docstring).
    """

    name: str
    parent: str | None
    mass: float
    size: np.ndarray  # [3] full box extents x, y, z
    contact: bool  # XML flag; ignored by the reference (every box touches the ground)
    body_rotation: np.ndarray  # [3, 3]
    body_translation: np.ndarray  # [3]
    joint_type: str  # "Free" | "Ball" | "Revolute"
    joint_axis: np.ndarray | None  # [3] for Revolute
    joint_lower: np.ndarray | None  # [1] for Revolute, [3] for Ball (ignored)
    joint_upper: np.ndarray | None
    joint_rotation: np.ndarray  # [3, 3]
    joint_translation: np.ndarray  # [3]


@dataclass(frozen=True, eq=False)
class MuscleUnit:
    """One ``Unit`` of the MASS muscle file; waypoints are world-frame rest positions."""

    name: str
    f0: float
    lm: float
    lt: float
    pen_angle: float
    lmax: float
    waypoint_bodies: tuple[str, ...]
    waypoint_positions: np.ndarray  # [W, 3]


@dataclass(frozen=True, eq=False)
class MuscleSet:
    """Kept muscles as straight segments between bodies (envs §8.3, §8.5).

    Action index m = position of the unit among the kept ones in file order. A segment joins consecutive
    waypoints i, i+1 of one muscle that lie on different bodies; the force +α·n acts on ``body_a`` at
    ``point_a`` and −α·n on ``body_b`` at ``point_b`` (n = unit vector from a to b in world). Body ids are
    MuJoCo body ids (world = 0); points are in that body's MuJoCo frame (= the node's joint frame).
    """

    names: list[str]  # [M] file order
    f0: np.ndarray  # [M] float64, N
    waypoint_start: np.ndarray  # [M + 1] int32: waypoints of muscle m are [start[m], start[m + 1])
    waypoint_body: np.ndarray  # [W] int32 MuJoCo body id
    waypoint_point: np.ndarray  # [W, 3] float64, body-local
    waypoint_rest_world: np.ndarray  # [W, 3] float64, XML world-frame rest positions
    segment_muscle: np.ndarray  # [S] int32, index into names
    segment_body_a: np.ndarray  # [S] int32
    segment_point_a: np.ndarray  # [S, 3] float64, in body_a's frame
    segment_body_b: np.ndarray  # [S] int32
    segment_point_b: np.ndarray  # [S, 3] float64, in body_b's frame

    @property
    def num_muscles(self) -> int:
        """Number of kept muscles (= action dimension)."""
        return len(self.names)

    @property
    def num_segments(self) -> int:
        """Number of inter-body segments."""
        return int(self.segment_muscle.shape[0])


@dataclass(frozen=True, eq=False)
class SnuModel:
    """The compiled SNU lower-body model and what MuJoCo cannot hold (see the module docstring)."""

    mjmodel: mujoco.MjModel
    spec: mujoco.MjSpec  # what ``mjmodel`` was compiled from
    muscles: MuscleSet
    body_names: tuple[str, ...]  # kept nodes in MuJoCo body order; body id = index + 1
    limit_ke: np.ndarray  # [nv] joint-limit spring k_le per dof (0 on the free joint)
    limit_kd: np.ndarray  # [nv] joint-limit damper k_ld per dof (always on, Q8; 0 on the free joint)
    rest_qpos: np.ndarray  # [nq] pelvis at its XML rest transform, other joints at rest
    nodes: tuple[SkeletonNode, ...]  # parsed kept nodes, same order as body_names
    data_files: dict[str, Path]


def _floats(text: str) -> np.ndarray:
    """Whitespace-separated numbers of an XML attribute."""
    return np.array(text.split(), dtype=np.float64)


def parse_skeleton(path: str | Path) -> list[SkeletonNode]:
    """All nodes of a MASS ``Skeleton`` XML file (envs §8.1), in file order."""
    nodes = []
    for node in ET.parse(path).getroot().findall("Node"):
        body = node.find("Body")
        joint = node.find("Joint")
        if body is None or joint is None:
            raise ValueError(f"{path}: node {node.get('name')!r} lacks a Body or a Joint")
        body_tf = body.find("Transformation")
        joint_tf = joint.find("Transformation")
        if body_tf is None or joint_tf is None:
            raise ValueError(f"{path}: node {node.get('name')!r} lacks a Transformation")
        if body.get("type") != "Box":
            raise ValueError(f"{path}: node {node.get('name')!r} has body type {body.get('type')!r}, not Box")
        parent = node.get("parent")
        nodes.append(
            SkeletonNode(
                name=node.attrib["name"],
                parent=None if parent in (None, "None") else parent,
                mass=float(body.attrib["mass"]),
                size=_floats(body.attrib["size"]),
                contact=body.get("contact", "Off") == "On",
                body_rotation=_floats(body_tf.attrib["linear"]).reshape(3, 3),
                body_translation=_floats(body_tf.attrib["translation"]),
                joint_type=joint.attrib["type"],
                joint_axis=_floats(joint.attrib["axis"]) if "axis" in joint.attrib else None,
                joint_lower=_floats(joint.attrib["lower"]) if "lower" in joint.attrib else None,
                joint_upper=_floats(joint.attrib["upper"]) if "upper" in joint.attrib else None,
                joint_rotation=_floats(joint_tf.attrib["linear"]).reshape(3, 3),
                joint_translation=_floats(joint_tf.attrib["translation"]),
            )
        )
    return nodes


def parse_muscles(path: str | Path) -> list[MuscleUnit]:
    """All units of a MASS ``Muscle`` XML file (envs §8.1), in file order."""
    units = []
    for unit in ET.parse(path).getroot().findall("Unit"):
        waypoints = unit.findall("Waypoint")
        units.append(
            MuscleUnit(
                name=unit.attrib["name"],
                f0=float(unit.attrib["f0"]),
                lm=float(unit.attrib["lm"]),
                lt=float(unit.attrib["lt"]),
                pen_angle=float(unit.attrib["pen_angle"]),
                lmax=float(unit.attrib["lmax"]),
                waypoint_bodies=tuple(w.attrib["body"] for w in waypoints),
                waypoint_positions=np.array([_floats(w.attrib["p"]) for w in waypoints]).reshape(-1, 3),
            )
        )
    return units


def quat_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3×3 matrix (Shepperd's method; off-diagonal pairs averaged)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, dtype=np.float64).reshape(9))
    return quat / np.linalg.norm(quat)


def _relative_transform(
    frame_pos: np.ndarray, frame_quat: np.ndarray, pos: np.ndarray, quat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """inv(frame)·(pos, quat): a world transform expressed in ``frame`` (quaternions w, x, y, z)."""
    inverse_quat = np.zeros(4)
    mujoco.mju_negQuat(inverse_quat, frame_quat)
    local_pos = np.zeros(3)
    mujoco.mju_rotVecQuat(local_pos, np.asarray(pos, dtype=np.float64) - frame_pos, inverse_quat)
    local_quat = np.zeros(4)
    mujoco.mju_mulQuat(local_quat, inverse_quat, np.asarray(quat, dtype=np.float64))
    return local_pos, local_quat / np.linalg.norm(local_quat)


def _set_coefficient(joint: mujoco.MjsJoint, attribute: str, value: float) -> None:
    """Set a joint spring/damper coefficient (a scalar before MuJoCo 3.5, [k, poly...] since)."""
    current = getattr(joint, attribute)
    if isinstance(current, np.ndarray) and current.ndim == 1 and current.size > 1:
        coefficients = np.zeros_like(current)
        coefficients[0] = value
        setattr(joint, attribute, coefficients)
    else:
        setattr(joint, attribute, value)


def build_snu_spec(nodes: list[SkeletonNode], passive: PassiveParameters = no_passive) -> mujoco.MjSpec:
    """MjSpec of the given skeleton nodes (parents before children), conventions of the module docstring."""
    spec = mujoco.MjSpec()
    spec.modelname = "snu_humanoid_lower_body"
    spec.compiler.degree = False
    if hasattr(spec.compiler, "alignfree"):
        spec.compiler.alignfree = False
    spec.option.gravity = [0.0, -9.81, 0.0]
    spec.worldbody.add_geom(
        name="ground",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[0.0, 0.0, 1.0],
        quat=list(_GROUND_QUAT),
        contype=0,
        conaffinity=1,
    )

    joint_frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    spec_bodies: dict[str, mujoco.MjsBody] = {}
    for node in nodes:
        joint_quat = quat_from_matrix(node.joint_rotation)
        joint_frames[node.name] = (node.joint_translation, joint_quat)
        if node.parent is None:
            parent_body = spec.worldbody
            body_pos, body_quat = node.joint_translation, joint_quat
        else:
            if node.parent not in spec_bodies:
                raise ValueError(f"node {node.name!r}: parent {node.parent!r} is not built before it")
            parent_body = spec_bodies[node.parent]
            body_pos, body_quat = _relative_transform(
                *joint_frames[node.parent], node.joint_translation, joint_quat
            )
        body = parent_body.add_body(name=node.name, pos=list(body_pos), quat=list(body_quat))
        spec_bodies[node.name] = body

        if node.joint_type == "Free":
            joint = body.add_freejoint(name=node.name)
        else:
            values = passive(node.mass)
            joint = body.add_joint(name=node.name, type=_JOINT_TYPES[node.joint_type], pos=[0.0, 0.0, 0.0])
            if node.joint_type == "Revolute":
                if node.joint_axis is None or node.joint_lower is None or node.joint_upper is None:
                    raise ValueError(f"revolute node {node.name!r} lacks axis/lower/upper")
                joint.axis = list(node.joint_axis)
                joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE
                joint.range = [float(node.joint_lower[0]), float(node.joint_upper[0])]
            elif node.joint_type == "Ball":
                joint.limited = mujoco.mjtLimited.mjLIMITED_FALSE  # XML ball limits are ignored (envs §3)
            else:
                raise ValueError(f"node {node.name!r}: unsupported joint type {node.joint_type!r}")
            _set_coefficient(joint, "stiffness", values["stiffness"])
            _set_coefficient(joint, "damping", values["damping"])
            joint.armature = values["armature"]

        box_pos, box_quat = _relative_transform(
            node.joint_translation, joint_quat, node.body_translation, quat_from_matrix(node.body_rotation)
        )
        body.add_geom(
            name=node.name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=list(node.size / 2.0),
            pos=list(box_pos),
            quat=list(box_quat),
            density=node.mass / float(np.prod(node.size)),
            contype=1,
            conaffinity=0,
        )
    return spec


def _kept_nodes(nodes: list[SkeletonNode]) -> list[SkeletonNode]:
    """The lower-body nodes (envs §8.2) in file order, checked to form a tree rooted at the pelvis."""
    kept = [node for node in nodes if node.name in KEPT_BODY_NAMES]
    missing = KEPT_BODY_NAMES - {node.name for node in kept}
    if missing:
        raise ValueError(f"skeleton lacks the nodes {sorted(missing)}")
    for node in kept:
        if node.parent is not None and node.parent not in KEPT_BODY_NAMES:
            raise ValueError(f"kept node {node.name!r} has a dropped parent {node.parent!r}")
    return kept


def build_muscle_set(
    units: list[MuscleUnit], nodes: list[SkeletonNode], body_ids: Mapping[str, int]
) -> MuscleSet:
    """Keep the units whose waypoints all lie on ``nodes`` (envs §8.3) and express them body-locally.

    ``body_ids`` maps node names to MuJoCo body ids. A waypoint p on node n becomes inv(J_n)·p, J_n the
    node's world joint frame (= the MuJoCo body frame at the XML rest pose).
    """
    joint_frames = {
        node.name: (node.joint_translation, quat_from_matrix(node.joint_rotation)) for node in nodes
    }
    kept_units = [unit for unit in units if all(body in joint_frames for body in unit.waypoint_bodies)]

    waypoint_start = [0]
    waypoint_body: list[int] = []
    waypoint_point: list[np.ndarray] = []
    waypoint_world: list[np.ndarray] = []
    segment_muscle: list[int] = []
    segment_body_a: list[int] = []
    segment_point_a: list[np.ndarray] = []
    segment_body_b: list[int] = []
    segment_point_b: list[np.ndarray] = []
    for muscle_index, unit in enumerate(kept_units):
        local_points = []
        for body_name, world_point in zip(unit.waypoint_bodies, unit.waypoint_positions, strict=True):
            local_point, _ = _relative_transform(
                *joint_frames[body_name], world_point, np.array([1.0, 0, 0, 0])
            )
            local_points.append(local_point)
            waypoint_body.append(body_ids[body_name])
            waypoint_point.append(local_point)
            waypoint_world.append(world_point)
        waypoint_start.append(len(waypoint_body))
        for i in range(len(unit.waypoint_bodies) - 1):
            body_a, body_b = unit.waypoint_bodies[i], unit.waypoint_bodies[i + 1]
            if body_a == body_b:
                continue
            segment_muscle.append(muscle_index)
            segment_body_a.append(body_ids[body_a])
            segment_point_a.append(local_points[i])
            segment_body_b.append(body_ids[body_b])
            segment_point_b.append(local_points[i + 1])

    def points(values: list[np.ndarray]) -> np.ndarray:
        return np.array(values, dtype=np.float64).reshape(-1, 3)

    return MuscleSet(
        names=[unit.name for unit in kept_units],
        f0=np.array([unit.f0 for unit in kept_units], dtype=np.float64),
        waypoint_start=np.array(waypoint_start, dtype=np.int32),
        waypoint_body=np.array(waypoint_body, dtype=np.int32),
        waypoint_point=points(waypoint_point),
        waypoint_rest_world=points(waypoint_world),
        segment_muscle=np.array(segment_muscle, dtype=np.int32),
        segment_body_a=np.array(segment_body_a, dtype=np.int32),
        segment_point_a=points(segment_point_a),
        segment_body_b=np.array(segment_body_b, dtype=np.int32),
        segment_point_b=points(segment_point_b),
    )


def _resolve_files(
    data_dir_or_files: str | Path | Mapping[str, str | Path] | None, verify: bool
) -> dict[str, Path]:
    """Data file paths from the ``load_snu`` argument (see there)."""
    if data_dir_or_files is None:
        return snu_data_files()
    if isinstance(data_dir_or_files, Mapping):
        files = {name: Path(data_dir_or_files[name]) for name in SNU_FILE_SHA256}
    else:
        files = {name: Path(data_dir_or_files) / name for name in SNU_FILE_SHA256}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"SNU data file {name} not found at {path}")
        if verify:
            verify_snu_file(path, name, "passed to load_snu")
    return files


def load_snu(
    data_dir_or_files: str | Path | Mapping[str, str | Path] | None = None,
    *,
    verify: bool = True,
    passive: PassiveParameters = no_passive,
) -> SnuModel:
    """Build the SNU lower-body model (envs §8) from the MASS data files.

    Args:
        data_dir_or_files: None (find/download via ``snu_data_files``: ``WARPBENCH_SNU_DIR``, user cache,
            pinned download), a directory holding ``human.xml`` and ``muscle284.xml``, or a mapping from
            those two names to file paths.
        verify: check the pinned SHA-256 of explicitly given files (files found by ``snu_data_files`` are
            always checked).
        passive: the joints' passive parameters as a function of the child body's mass (the task's
            ``envs.tasks.snu_humanoid.joint_passive``); default none.

    Returns:
        ``SnuModel`` with the compiled ``MjModel`` (11 bodies + world, nq = 29, nv = 24, 37 kg), the 152
        kept muscles as 198 inter-body segments, and the per-dof joint-limit spring/damper arrays.
    """
    files = _resolve_files(data_dir_or_files, verify)
    nodes = _kept_nodes(parse_skeleton(files[SKELETON_FILE]))
    spec = build_snu_spec(nodes, passive)
    mjmodel = spec.compile()

    body_ids = {node.name: mujoco.mj_name2id(mjmodel, mujoco.mjtObj.mjOBJ_BODY, node.name) for node in nodes}
    order = sorted(nodes, key=lambda node: body_ids[node.name])
    muscles = build_muscle_set(parse_muscles(files[MUSCLE_FILE]), nodes, body_ids)

    limit_ke = np.zeros(mjmodel.nv)
    limit_kd = np.zeros(mjmodel.nv)
    rest_qpos = mjmodel.qpos0.copy()
    for node in nodes:
        joint_id = mujoco.mj_name2id(mjmodel, mujoco.mjtObj.mjOBJ_JOINT, node.name)
        dof_start = mjmodel.jnt_dofadr[joint_id]
        if node.joint_type == "Free":
            qpos_start = mjmodel.jnt_qposadr[joint_id]
            rest_qpos[qpos_start : qpos_start + 3] = node.joint_translation
            rest_qpos[qpos_start + 3 : qpos_start + 7] = quat_from_matrix(node.joint_rotation)
            continue
        dof_count = 3 if node.joint_type == "Ball" else 1
        values = passive(node.mass)
        limit_ke[dof_start : dof_start + dof_count] = values["limit_ke"]
        limit_kd[dof_start : dof_start + dof_count] = values["limit_kd"]

    return SnuModel(
        mjmodel=mjmodel,
        spec=spec,
        muscles=muscles,
        body_names=tuple(node.name for node in order),
        limit_ke=limit_ke,
        limit_kd=limit_kd,
        rest_qpos=rest_qpos,
        nodes=tuple(order),
        data_files=files,
    )
