"""Engine model: a compiled ``mujoco.MjModel`` turned into per-link Warp arrays.

Links follow the dflex convention of one link per joint: a MuJoCo body with k joints becomes a chain of
k links, the first k-1 massless, the body's inertia and geoms on the last (a body without joints is one
link with a fixed joint). Since the massless links share the body's frame up to each joint's own motion,
this is exactly MuJoCo's kinematics.

State conventions are MuJoCo's (so any MuJoCo ``qpos``/``qvel`` loads as is): quaternions (w, x, y, z)
in ``q``; free joint ``qd`` = (linear velocity of the body origin in world, angular velocity in the body
frame); ball joint ``qd`` = angular velocity in the child frame. Internally all spatial quantities are
world-frame vectors at the world origin, ordered (angular, linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import warp as wp

JOINT_FREE, JOINT_BALL, JOINT_HINGE, JOINT_SLIDE, JOINT_FIXED = 0, 1, 2, 3, 4
_MJ_TO_JOINT = {
    int(mujoco.mjtJoint.mjJNT_FREE): JOINT_FREE,
    int(mujoco.mjtJoint.mjJNT_BALL): JOINT_BALL,
    int(mujoco.mjtJoint.mjJNT_HINGE): JOINT_HINGE,
    int(mujoco.mjtJoint.mjJNT_SLIDE): JOINT_SLIDE,
}
# Element types of the per-link, per-dof and per-point tables below.
Indices = wp.array(dtype=wp.int32)
Reals = wp.array(dtype=wp.float64)
Vec3s = wp.array(dtype=wp.vec3d)

_JOINT_NDOF = {JOINT_FREE: 6, JOINT_BALL: 3, JOINT_HINGE: 1, JOINT_SLIDE: 1, JOINT_FIXED: 0}


@dataclass
class PhysicsParams:
    """Physical parameters a task sets on top of the MuJoCo model (envs spec §2-§5, §7.2)."""

    substeps: int = 16
    """Physics substeps per control step; the actuation is held over all of them."""
    mass_matrix_interval: int = 16
    """Refresh the mass matrix and its Cholesky factor when (substep index mod this) == 0."""
    control_dt: float = 1.0 / 60.0
    """Control step in seconds; the physics substep is control_dt / substeps."""
    contact_ke: float = 1e4
    """Ground-contact normal stiffness."""
    contact_kd: float = 1e3
    """Ground-contact damping, scaled by penetration depth, resisting approach only."""
    contact_kf: float = 1e3
    """Ground-contact friction stiffness (viscous in the tangential speed)."""
    contact_mu: float = 0.5
    """Friction coefficient; friction is capped at mu * contact_ke * depth."""
    limit_ke: float | np.ndarray = 0.0
    """Joint-limit spring stiffness, scalar or per dof (hinge/slide only)."""
    limit_kd: float | np.ndarray = 0.0
    """Joint damping k_ld applied at all times (dflex quirk Q8), scalar or per dof."""
    joint_stiffness: float | np.ndarray | None = None
    """Passive stiffness per dof; None takes MuJoCo's jnt_stiffness."""
    joint_damping: float | np.ndarray | None = None
    """Passive damping per dof; None takes MuJoCo's dof_damping."""
    armature: float | np.ndarray | None = None
    """Diagonal added to the mass matrix (never on free joints); None takes MuJoCo's dof_armature."""
    friction_smoothing: float = 0.0
    """If > 0, |v_t| is replaced by sqrt(|v_t|^2 + s^2) - s in the friction law (default off)."""
    ground: bool = True
    """Whether there is a ground to touch; False gives no contact points (the cart-pole and the pendulum)."""

    def __post_init__(self) -> None:
        if self.substeps < 1 or self.mass_matrix_interval < 1:
            raise ValueError("substeps and mass_matrix_interval must be >= 1")


@wp.struct
class Links:
    """The kinematic tree, one link per joint, in tree order (every parent before its children)."""

    parent: Indices
    """Parent link index, -1 for a child of the world."""
    joint_type: Indices
    q_start: Indices
    """First coordinate of the link's joint in ``q``."""
    qd_start: Indices
    """First dof of the link's joint in ``qd``."""


@wp.struct
class LinkBodies:
    """Per link: its joint's frame and axis, and the inertia of the body it carries."""

    X_pj: wp.array(dtype=wp.transformd)
    """Joint frame in the parent link's frame at zero joint coordinates."""
    anchor: Vec3s
    axis: Vec3s
    mass: Reals
    com: Vec3s
    inertia: wp.array(dtype=wp.mat33d)
    """Rotational inertia about the centre of mass, in the link frame."""


@wp.struct
class PassiveJoints:
    """Per-link passive joint parameters (all dofs of a joint share them; free joints have none)."""

    stiffness: Reals
    damping: Reals
    limit_lower: Reals
    limit_upper: Reals
    limit_ke: Reals
    limit_kd: Reals
    spring_ref: Reals


@wp.struct
class MassMatrixLayout:
    """Which link moves each dof, and the mass matrix's nonzero pattern."""

    dof_link: Indices
    row_start: Indices
    """Row d of the mass matrix has its nonzero columns at row_col[row_start[d]:row_start[d + 1]]."""
    row_col: Indices


@wp.struct
class GroundContact:
    """Contact points fixed on links, and the penalty law against the ground plane through the origin."""

    link: Indices
    point: Vec3s
    """Point in its link's frame."""
    offset: Reals
    """Radius of the geom around the point (0 for box corners)."""
    up: wp.vec3d
    ke: wp.float64
    kd: wp.float64
    kf: wp.float64
    mu: wp.float64
    friction_smoothing: wp.float64


@wp.struct
class MuscleSegments:
    """Straight muscle segments, each pulling two links (points in link frames) with its muscle's force."""

    muscle: Indices
    link_a: Indices
    point_a: Vec3s
    link_b: Indices
    point_b: Vec3s


@dataclass
class Model:
    """Engine arrays on one device; shared by every env of a batch (all envs simulate the same model)."""

    mjmodel: mujoco.MjModel
    params: PhysicsParams
    device: str
    num_links: int
    nq: int
    nv: int
    links: Links
    bodies: LinkBodies
    joints: PassiveJoints
    mass_layout: MassMatrixLayout
    dof_armature: wp.array
    """Diagonal added to the mass matrix, per dof."""
    contact: GroundContact
    gravity: np.ndarray
    up: np.ndarray
    body_link: np.ndarray
    """MuJoCo body id -> index of the link carrying that body's frame (-1 for the world)."""
    muscle_count: int = 0
    muscles: MuscleSegments | None = None
    """None for a model without muscles."""

    @property
    def num_contacts(self) -> int:
        return self.contact.link.shape[0]

    @property
    def num_segments(self) -> int:
        return 0 if self.muscles is None else self.muscles.muscle.shape[0]


def make_struct(cls: type, **fields: object) -> object:
    """An instance of the ``wp.struct`` ``cls`` with ``fields`` set."""
    instance = cls()
    for name, value in fields.items():
        setattr(instance, name, value)
    return instance


def _per_dof(value: float | np.ndarray | None, default: np.ndarray, name: str) -> np.ndarray:
    if value is None:
        return np.asarray(default, dtype=np.float64).copy()
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), default.shape).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _quat_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.array([q[1], q[2], q[3], q[0]], dtype=np.float64)


def _contact_points(
    m: mujoco.MjModel, body_link: np.ndarray
) -> tuple[list[int], list[np.ndarray], list[float]]:
    """Fixed contact points per geom (envs spec §5): sphere centre, capsule end centres, box corners."""
    links, points, offsets = [], [], []
    for g in range(m.ngeom):
        body = m.geom_bodyid[g]
        if body == 0:  # the ground plane and anything else on the world body
            continue
        gtype, size = m.geom_type[g], m.geom_size[g]
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, m.geom_quat[g])
        rot = rot.reshape(3, 3)
        if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
            local, radius = [np.zeros(3)], size[0]
        elif gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
            local, radius = [np.array([0, 0, size[1]]), np.array([0, 0, -size[1]])], size[0]
        elif gtype == mujoco.mjtGeom.mjGEOM_BOX:
            corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
            local, radius = list(corners * size[:3]), 0.0
        else:
            raise ValueError(f"geom {g} has type {gtype}; the engine supports sphere, capsule and box")
        for c in local:
            links.append(int(body_link[body]))
            points.append(m.geom_pos[g] + rot @ c)
            offsets.append(float(radius))
    return links, points, offsets


def build_model(
    mjmodel: mujoco.MjModel,
    params: PhysicsParams,
    device: str = "cpu",
    muscles: object | None = None,
) -> Model:
    """Build engine arrays from a compiled MuJoCo model.

    ``muscles`` is optional: any object with ``segment_muscle``, ``segment_body_a``, ``segment_point_a``,
    ``segment_body_b``, ``segment_point_b`` (MuJoCo body ids, points in body frames) and ``names``.
    """
    m = mjmodel
    link_parent, link_type, q_start, qd_start = [], [], [], []
    X_pj, anchor, axis, mass, com, inertia = [], [], [], [], [], []
    jnt_of_link: list[int] = []
    body_link = np.full(m.nbody, -1, dtype=np.int64)
    for b in range(1, m.nbody):
        parent_body = m.body_parentid[b]
        joints = list(range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b])) or [-1]
        for k, j in enumerate(joints):
            link_parent.append(int(body_link[parent_body]) if k == 0 else len(link_parent) - 1)
            if k == 0:
                X_pj.append(np.concatenate([m.body_pos[b], _quat_wxyz_to_xyzw(m.body_quat[b])]))
            else:
                X_pj.append(np.array([0, 0, 0, 0, 0, 0, 1.0]))
            if j < 0:
                link_type.append(JOINT_FIXED)
                q_start.append(0)
                qd_start.append(0)
                anchor.append(np.zeros(3))
                axis.append(np.zeros(3))
            else:
                jtype = _MJ_TO_JOINT[int(m.jnt_type[j])]
                if jtype == JOINT_FREE and parent_body != 0:
                    raise ValueError(f"free joint {j} must belong to a child of the world body")
                if jtype in (JOINT_HINGE, JOINT_SLIDE) and m.qpos0[m.jnt_qposadr[j]] != 0.0:
                    raise ValueError(f"joint {j} has a nonzero reference position; not supported")
                link_type.append(jtype)
                q_start.append(int(m.jnt_qposadr[j]))
                qd_start.append(int(m.jnt_dofadr[j]))
                anchor.append(m.jnt_pos[j].copy())
                axis.append(m.jnt_axis[j].copy())
            jnt_of_link.append(j)
            last = k == len(joints) - 1
            mass.append(float(m.body_mass[b]) if last else 0.0)
            com.append(m.body_ipos[b].copy() if last else np.zeros(3))
            if last:
                rot = np.zeros(9)
                mujoco.mju_quat2Mat(rot, m.body_iquat[b])
                rot = rot.reshape(3, 3)
                inertia.append(rot @ np.diag(m.body_inertia[b]) @ rot.T)
            else:
                inertia.append(np.zeros((3, 3)))
        body_link[b] = len(link_parent) - 1

    num_links = len(link_parent)
    nv = m.nv
    stiffness_default = np.zeros(nv)
    damping_default = m.dof_damping.copy()
    armature_default = m.dof_armature.copy()
    for j in range(m.njnt):
        adr, n = m.jnt_dofadr[j], _JOINT_NDOF[_MJ_TO_JOINT[int(m.jnt_type[j])]]
        stiffness_default[adr : adr + n] = m.jnt_stiffness[j]
    stiffness = _per_dof(params.joint_stiffness, stiffness_default, "joint_stiffness")
    damping = _per_dof(params.joint_damping, damping_default, "joint_damping")
    armature = _per_dof(params.armature, armature_default, "armature")
    limit_ke = _per_dof(params.limit_ke, np.zeros(nv), "limit_ke")
    limit_kd = _per_dof(params.limit_kd, np.zeros(nv), "limit_kd")

    # Per-link passive parameters (all dofs of a joint share them); free joints have none.
    per_link = {k: np.zeros(num_links) for k in ("ke", "kd", "lo", "hi", "lke", "lkd", "ref")}
    dof_link = np.zeros(nv, dtype=np.int32)
    for link, j in enumerate(jnt_of_link):
        if j < 0:
            continue
        jtype, d = link_type[link], qd_start[link]
        dof_link[d : d + _JOINT_NDOF[jtype]] = link
        if jtype == JOINT_FREE:
            armature[d : d + 6] = 0.0
            continue
        per_link["ke"][link], per_link["kd"][link] = stiffness[d], damping[d]
        per_link["lkd"][link] = limit_kd[d]
        if jtype in (JOINT_HINGE, JOINT_SLIDE):
            per_link["ref"][link] = m.qpos_spring[m.jnt_qposadr[j]]
            if m.jnt_limited[j]:
                per_link["lo"][link], per_link["hi"][link] = m.jnt_range[j]
                per_link["lke"][link] = limit_ke[d]
            else:
                per_link["lo"][link], per_link["hi"][link] = -1e30, 1e30  # never reached

    # Mass-matrix sparsity: (row dof, column dof) with the column's link an ancestor-or-self of the row's.
    rows, cols = [], []
    for d in range(nv):
        link = dof_link[d]
        ancestors = []
        a = link
        while a >= 0:
            ancestors.append(a)
            a = link_parent[a]
        for c in range(d + 1):
            if dof_link[c] in ancestors:
                rows.append(d)
                cols.append(c)

    contact_links, contact_points, contact_offsets = (
        _contact_points(m, body_link) if params.ground else ([], [], [])
    )
    gravity = m.opt.gravity.copy()
    if np.linalg.norm(gravity) == 0:
        raise ValueError("the model has zero gravity; the ground normal is taken as -gravity")
    up = -gravity / np.linalg.norm(gravity)

    def arr(values, dtype):
        return wp.array(np.asarray(values), dtype=dtype, device=device)

    f64 = wp.float64
    model = Model(
        mjmodel=m,
        params=params,
        device=device,
        num_links=num_links,
        nq=m.nq,
        nv=nv,
        links=make_struct(
            Links,
            parent=arr(link_parent, wp.int32),
            joint_type=arr(link_type, wp.int32),
            q_start=arr(q_start, wp.int32),
            qd_start=arr(qd_start, wp.int32),
        ),
        bodies=make_struct(
            LinkBodies,
            X_pj=arr(np.array(X_pj), wp.transformd),
            anchor=arr(np.array(anchor), wp.vec3d),
            axis=arr(np.array(axis), wp.vec3d),
            mass=arr(mass, f64),
            com=arr(np.array(com), wp.vec3d),
            inertia=arr(np.array(inertia), wp.mat33d),
        ),
        joints=make_struct(
            PassiveJoints,
            stiffness=arr(per_link["ke"], f64),
            damping=arr(per_link["kd"], f64),
            limit_lower=arr(per_link["lo"], f64),
            limit_upper=arr(per_link["hi"], f64),
            limit_ke=arr(per_link["lke"], f64),
            limit_kd=arr(per_link["lkd"], f64),
            spring_ref=arr(per_link["ref"], f64),
        ),
        mass_layout=make_struct(
            MassMatrixLayout,
            dof_link=arr(dof_link, wp.int32),
            row_start=arr(np.searchsorted(rows, np.arange(nv + 1)), wp.int32),
            row_col=arr(cols, wp.int32),
        ),
        dof_armature=arr(armature, f64),
        contact=make_struct(
            GroundContact,
            link=arr(np.array(contact_links, dtype=np.int32).reshape(-1), wp.int32),
            point=arr(np.array(contact_points).reshape(-1, 3), wp.vec3d),
            offset=arr(np.array(contact_offsets).reshape(-1), f64),
            up=wp.vec3d(*up),
            ke=f64(params.contact_ke),
            kd=f64(params.contact_kd),
            kf=f64(params.contact_kf),
            mu=f64(params.contact_mu),
            friction_smoothing=f64(params.friction_smoothing),
        ),
        gravity=gravity,
        up=up,
        body_link=body_link,
    )
    if muscles is not None:
        model.muscle_count = len(muscles.names)
        model.muscles = make_struct(
            MuscleSegments,
            muscle=arr(np.asarray(muscles.segment_muscle, dtype=np.int32), wp.int32),
            link_a=arr(body_link[np.asarray(muscles.segment_body_a)].astype(np.int32), wp.int32),
            point_a=arr(np.asarray(muscles.segment_point_a, dtype=np.float64), wp.vec3d),
            link_b=arr(body_link[np.asarray(muscles.segment_body_b)].astype(np.int32), wp.int32),
            point_b=arr(np.asarray(muscles.segment_point_b, dtype=np.float64), wp.vec3d),
        )
    return model
