"""Differentiable Warp kernels of one physics substep (envs spec §3-§5, §8.5).

Spatial vectors are world-frame, at the world origin, ordered (angular, linear). One thread per env
walks the links in tree order. Warp differentiates these kernels automatically; its adjoint is exact
only when every value carried from one loop iteration to the next goes through an array that is
written once (or accumulated with ``atomic_add``), never through a reassigned local. Every kernel
here keeps to that rule.

Arguments come bundled in ``wp.struct``s (the model's in ``envs.sim.model``, the per-substep buffers
below). Kernels load the buffer arrays they use in loops into locals first, and ``link_dynamics`` (the
costliest adjoint) its model arrays too: Warp's generated adjoint copies a struct's array field at every
access, which made the backward pass up to 9% slower per kernel.
"""

from __future__ import annotations

import warp as wp

from envs.sim.model import (
    JOINT_BALL,
    JOINT_FREE,
    JOINT_HINGE,
    JOINT_SLIDE,
    GroundContact,
    LinkBodies,
    Links,
    MassMatrixLayout,
    MuscleSegments,
    PassiveJoints,
)

f64 = wp.float64
vec3 = wp.vec3d
quat = wp.quatd
transform = wp.transformd
spatial_vector = wp.spatial_vectord
mat33 = wp.mat33d

FREE = wp.constant(JOINT_FREE)
BALL = wp.constant(JOINT_BALL)
HINGE = wp.constant(JOINT_HINGE)
SLIDE = wp.constant(JOINT_SLIDE)


@wp.func
def motion_cross(a: spatial_vector, b: spatial_vector) -> spatial_vector:
    """a x b for motion vectors: (wa x wb, wa x vb + va x wb)."""
    wa = wp.spatial_top(a)
    va = wp.spatial_bottom(a)
    wb = wp.spatial_top(b)
    vb = wp.spatial_bottom(b)
    return spatial_vector(wp.cross(wa, wb), wp.cross(wa, vb) + wp.cross(va, wb))


@wp.func
def force_cross(a: spatial_vector, f: spatial_vector) -> spatial_vector:
    """a x* f for a motion vector a and a force f = (torque, force): (wa x n + va x f, wa x f)."""
    wa = wp.spatial_top(a)
    va = wp.spatial_bottom(a)
    n = wp.spatial_top(f)
    ff = wp.spatial_bottom(f)
    return spatial_vector(wp.cross(wa, n) + wp.cross(va, ff), wp.cross(wa, ff))


@wp.func
def inertia_times(m: f64, h: vec3, J: mat33, x: spatial_vector) -> spatial_vector:
    """Spatial inertia (mass m, first moment h = m*com, rotational inertia J about the origin) times x."""
    w = wp.spatial_top(x)
    v = wp.spatial_bottom(x)
    return spatial_vector(J * w + wp.cross(h, v), m * v - wp.cross(h, w))


@wp.func
def quat_from_wxyz(q: wp.array2d(dtype=f64), e: int, i: int) -> quat:
    return wp.normalize(quat(q[e, i + 1], q[e, i + 2], q[e, i + 3], q[e, i]))


@wp.func
def unit(i: int) -> vec3:
    v = vec3(f64(0.0), f64(0.0), f64(0.0))
    v[i] = f64(1.0)
    return v


@wp.struct
class State:
    """Joint coordinates ``q`` and velocities ``qd`` per env, in MuJoCo's conventions."""

    q: wp.array2d(dtype=f64)
    qd: wp.array2d(dtype=f64)


# [env, link] arrays of the per-link buffers below
LinkTransforms = wp.array2d(dtype=transform)
LinkSpatialVectors = wp.array2d(dtype=spatial_vector)
LinkVec3s = wp.array2d(dtype=vec3)
LinkMat33s = wp.array2d(dtype=mat33)
LinkReals = wp.array2d(dtype=f64)


@wp.struct
class Motion:
    """Per env and link, world frame: what ``link_dynamics`` computes from (q, qd)."""

    X: LinkTransforms
    """Link frame."""
    V: LinkSpatialVectors
    """Spatial velocity."""
    A: LinkSpatialVectors
    """Bias acceleration (the acceleration at qdd = 0, gravity included as a base acceleration)."""


@wp.struct
class Inertia:
    """Per env and link, world frame: the spatial inertia at the current pose, and the bias force."""

    h: LinkVec3s
    """First moment of mass, m * com."""
    J: LinkMat33s
    """Rotational inertia about the world origin."""
    f: LinkSpatialVectors
    """Bias force I*A + V x* I*V."""


@wp.struct
class Subtree:
    """Per env and link: mass, first moment and rotational inertia of the link's strict descendants."""

    m: LinkReals
    h: LinkVec3s
    J: LinkMat33s


@wp.kernel
def link_dynamics(
    links: Links,
    bodies: LinkBodies,
    base_acceleration: vec3,
    state: State,
    motion: Motion,
    inertia: Inertia,
    joint_S: wp.array2d(dtype=spatial_vector),
):
    """Forward kinematics, velocities, bias accelerations and bias forces I*a + v x* I*v per link."""
    e = wp.tid()
    q = state.q
    qd = state.qd
    body_X = motion.X
    body_V = motion.V
    body_A = motion.A
    body_h = inertia.h
    body_J = inertia.J
    body_f = inertia.f
    link_parent = links.parent
    link_type = links.joint_type
    link_q_start = links.q_start
    link_qd_start = links.qd_start
    link_X_pj = bodies.X_pj
    link_anchor = bodies.anchor
    link_axis = bodies.axis
    link_mass = bodies.mass
    link_com = bodies.com
    link_inertia = bodies.inertia
    zero3 = vec3(f64(0.0), f64(0.0), f64(0.0))
    for link in range(link_parent.shape[0]):
        p = link_parent[link]
        X_parent = wp.transform_identity(dtype=f64)
        V_parent = spatial_vector(zero3, zero3)
        A_parent = spatial_vector(zero3, base_acceleration)
        if p >= 0:
            X_parent = body_X[e, p]
            V_parent = body_V[e, p]
            A_parent = body_A[e, p]
        X_pre = X_parent * link_X_pj[link]
        jtype = link_type[link]
        qs = link_q_start[link]
        ds = link_qd_start[link]
        c = link_anchor[link]
        X = X_pre
        V = V_parent
        A = A_parent
        if jtype == FREE:
            pos = vec3(q[e, qs], q[e, qs + 1], q[e, qs + 2])
            rot = quat_from_wxyz(q, e, qs + 3)
            X = transform(pos, rot)
            v_origin = vec3(qd[e, ds], qd[e, ds + 1], qd[e, ds + 2])
            w = wp.quat_rotate(rot, vec3(qd[e, ds + 3], qd[e, ds + 4], qd[e, ds + 5]))
            for i in range(3):
                joint_S[e, ds + i] = spatial_vector(zero3, unit(i))
                axis_w = wp.quat_rotate(rot, unit(i))
                joint_S[e, ds + 3 + i] = spatial_vector(axis_w, wp.cross(pos, axis_w))
            V = spatial_vector(w, v_origin + wp.cross(pos, w))
            A = A_parent + spatial_vector(zero3, wp.cross(v_origin, w))
        elif jtype == BALL:
            r = quat_from_wxyz(q, e, qs)
            X = X_pre * transform(c - wp.quat_rotate(r, c), r)
            P = wp.transform_point(X_pre, c)
            rot = wp.transform_get_rotation(X)
            w = wp.quat_rotate(rot, vec3(qd[e, ds], qd[e, ds + 1], qd[e, ds + 2]))
            for i in range(3):
                axis_w = wp.quat_rotate(rot, unit(i))
                joint_S[e, ds + i] = spatial_vector(axis_w, wp.cross(P, axis_w))
            Vj = spatial_vector(w, wp.cross(P, w))
            V = V_parent + Vj
            A = A_parent + motion_cross(V, Vj)
        elif jtype == HINGE:
            a = link_axis[link]
            r = wp.quat_from_axis_angle(a, q[e, qs])
            X = X_pre * transform(c - wp.quat_rotate(r, c), r)
            P = wp.transform_point(X_pre, c)
            axis_w = wp.transform_vector(X_pre, a)
            S = spatial_vector(axis_w, wp.cross(P, axis_w))
            joint_S[e, ds] = S
            Vj = S * qd[e, ds]
            V = V_parent + Vj
            A = A_parent + motion_cross(V, Vj)
        elif jtype == SLIDE:
            a = link_axis[link]
            X = X_pre * transform(a * q[e, qs], wp.quat_identity(dtype=f64))
            S = spatial_vector(zero3, wp.transform_vector(X_pre, a))
            joint_S[e, ds] = S
            Vj = S * qd[e, ds]
            V = V_parent + Vj
            A = A_parent + motion_cross(V, Vj)
        body_X[e, link] = X
        body_V[e, link] = V
        body_A[e, link] = A
        # World-frame spatial inertia about the origin: mass m, h = m*com, J = I_com + m(|c|^2 1 - c c^T).
        m = link_mass[link]
        if m > f64(0.0):  # links added for extra joints of one body are massless
            com = wp.transform_point(X, link_com[link])
            R = wp.quat_to_matrix(wp.transform_get_rotation(X))
            h = m * com
            J = R * link_inertia[link] * wp.transpose(R) + m * (
                wp.dot(com, com) * wp.identity(n=3, dtype=f64) - wp.outer(com, com)
            )
            body_h[e, link] = h
            body_J[e, link] = J
            body_f[e, link] = inertia_times(m, h, J, A) + force_cross(V, inertia_times(m, h, J, V))
        else:
            body_h[e, link] = zero3
            body_J[e, link] = mat33()
            body_f[e, link] = spatial_vector(zero3, zero3)


@wp.kernel
def ground_contact(
    contact: GroundContact,
    motion: Motion,
    body_fext: wp.array2d(dtype=spatial_vector),
):
    """Penalty contact of fixed body points with the ground plane through the origin (spec §5)."""
    e, k = wp.tid()
    body_X = motion.X
    body_V = motion.V
    link = contact.link[k]
    up = contact.up
    ke = contact.ke
    kf = contact.kf
    p = wp.transform_point(body_X[e, link], contact.point[k]) - up * contact.offset[k]
    depth = wp.dot(p, up)
    if depth < f64(0.0):
        V = body_V[e, link]
        p_dot = wp.spatial_bottom(V) + wp.cross(wp.spatial_top(V), p)
        vn = wp.dot(p_dot, up)
        vt = p_dot - up * vn
        penetration = -depth
        fn = ke * penetration + contact.kd * penetration * wp.max(-vn, f64(0.0))
        cap = contact.mu * ke * penetration
        speed = wp.length(vt)
        s = contact.friction_smoothing
        if s > f64(0.0):
            speed = wp.sqrt(wp.dot(vt, vt) + s * s) - s
        ft = vt * (-kf)
        if kf * speed > cap:
            ft = vt * (-cap / speed)
        F = up * fn + ft
        wp.atomic_add(body_fext, e, link, spatial_vector(wp.cross(p, F), F))


@wp.kernel
def muscle_forces(
    segments: MuscleSegments,
    muscle_force: wp.array2d(dtype=f64),
    motion: Motion,
    body_fext: wp.array2d(dtype=spatial_vector),
):
    """Straight muscle segments between two links: equal and opposite forces along the segment (§8.5)."""
    e, s = wp.tid()
    body_X = motion.X
    la = segments.link_a[s]
    lb = segments.link_b[s]
    xa = wp.transform_point(body_X[e, la], segments.point_a[s])
    xb = wp.transform_point(body_X[e, lb], segments.point_b[s])
    F = wp.normalize(xb - xa) * muscle_force[e, segments.muscle[s]]
    wp.atomic_add(body_fext, e, la, spatial_vector(wp.cross(xa, F), F))
    wp.atomic_add(body_fext, e, lb, spatial_vector(wp.cross(xb, -F), -F))


@wp.kernel
def joint_forces(
    links: Links,
    joints: PassiveJoints,
    state: State,
    actuation: wp.array2d(dtype=f64),
    inertia: Inertia,
    joint_S: wp.array2d(dtype=spatial_vector),
    body_fext: wp.array2d(dtype=spatial_vector),
    body_F_children: wp.array2d(dtype=spatial_vector),
    tau: wp.array2d(dtype=f64),
):
    """Backward pass: subtree forces, then tau = u - S^T F + passive joint forces (spec §3)."""
    e = wp.tid()
    q = state.q
    qd = state.qd
    body_f = inertia.f
    num_links = links.parent.shape[0]
    for k in range(num_links):
        link = num_links - 1 - k
        F = body_f[e, link] - body_fext[e, link] + body_F_children[e, link]
        p = links.parent[link]
        if p >= 0:
            wp.atomic_add(body_F_children, e, p, F)
        jtype = links.joint_type[link]
        qs = links.q_start[link]
        ds = links.qd_start[link]
        if jtype == FREE:
            for i in range(6):
                tau[e, ds + i] = actuation[e, ds + i] - wp.dot(joint_S[e, ds + i], F)
        elif jtype == BALL:
            # Spring towards the identity on the quaternion's vector part, damping on the angular velocity.
            for i in range(3):
                tau[e, ds + i] = (
                    actuation[e, ds + i]
                    - wp.dot(joint_S[e, ds + i], F)
                    - joints.stiffness[link] * q[e, qs + 1 + i]
                    - joints.damping[link] * qd[e, ds + i]
                )
        elif jtype == HINGE or jtype == SLIDE:
            x = q[e, qs]
            limit_force = f64(0.0)
            if x < joints.limit_lower[link]:
                limit_force = joints.limit_ke[link] * (joints.limit_lower[link] - x)
            elif x > joints.limit_upper[link]:
                limit_force = joints.limit_ke[link] * (joints.limit_upper[link] - x)
            tau[e, ds] = (
                actuation[e, ds]
                - wp.dot(joint_S[e, ds], F)
                - joints.stiffness[link] * (x - joints.spring_ref[link])
                - (joints.damping[link] + joints.limit_kd[link]) * qd[e, ds]
                + limit_force
            )


@wp.kernel
def mass_matrix(
    links: Links,
    link_mass: wp.array(dtype=f64),
    layout: MassMatrixLayout,
    inertia: Inertia,
    joint_S: wp.array2d(dtype=spatial_vector),
    subtree: Subtree,
    H: wp.array3d(dtype=f64),
):
    """Joint-space mass matrix by composite rigid bodies: H[d, c] = S_c^T I_subtree(d) S_d.

    Row d lists its nonzero columns (dofs of the link's ancestors and its own) in
    layout.row_col[layout.row_start[d]:layout.row_start[d + 1]]; I_subtree(d) S_d is computed once per row.
    """
    e = wp.tid()
    body_h = inertia.h
    body_J = inertia.J
    children_m = subtree.m
    children_h = subtree.h
    children_J = subtree.J
    # children_* arrive zeroed and collect the subtrees below each link; a link reads its entry only after
    # all its children (higher indices) have pushed theirs, so every read sees the final value.
    num_links = links.parent.shape[0]
    for k in range(num_links):
        link = num_links - 1 - k
        p = links.parent[link]
        if p >= 0:
            wp.atomic_add(children_m, e, p, children_m[e, link] + link_mass[link])
            wp.atomic_add(children_h, e, p, children_h[e, link] + body_h[e, link])
            wp.atomic_add(children_J, e, p, children_J[e, link] + body_J[e, link])
    for d in range(layout.row_start.shape[0] - 1):
        link = layout.dof_link[d]
        F = inertia_times(
            children_m[e, link] + link_mass[link],
            children_h[e, link] + body_h[e, link],
            children_J[e, link] + body_J[e, link],
            joint_S[e, d],
        )
        for k in range(layout.row_start[d], layout.row_start[d + 1]):
            c = layout.row_col[k]
            value = wp.dot(joint_S[e, c], F)
            H[e, d, c] = value
            if c != d:
                H[e, c, d] = value


@wp.kernel
def integrate(
    links: Links,
    h: f64,
    state: State,
    qdd: wp.array2d(dtype=f64),
    out: State,
):
    """Semi-implicit Euler: velocities first, then positions with the new velocities (spec §4)."""
    e = wp.tid()
    half = f64(0.5)
    q = state.q
    qd = state.qd
    q_out = out.q
    qd_out = out.qd
    for link in range(links.parent.shape[0]):
        jtype = links.joint_type[link]
        qs = links.q_start[link]
        ds = links.qd_start[link]
        if jtype == FREE:
            for i in range(6):
                qd_out[e, ds + i] = qd[e, ds + i] + qdd[e, ds + i] * h
            for i in range(3):
                q_out[e, qs + i] = q[e, qs + i] + qd_out[e, ds + i] * h
            r = quat(q[e, qs + 4], q[e, qs + 5], q[e, qs + 6], q[e, qs + 3])
            w = quat(qd_out[e, ds + 3], qd_out[e, ds + 4], qd_out[e, ds + 5], f64(0.0))
            r_new = wp.normalize(r + r * w * (half * h))
            q_out[e, qs + 3] = r_new[3]
            q_out[e, qs + 4] = r_new[0]
            q_out[e, qs + 5] = r_new[1]
            q_out[e, qs + 6] = r_new[2]
        elif jtype == BALL:
            for i in range(3):
                qd_out[e, ds + i] = qd[e, ds + i] + qdd[e, ds + i] * h
            r = quat(q[e, qs + 1], q[e, qs + 2], q[e, qs + 3], q[e, qs])
            w = quat(qd_out[e, ds], qd_out[e, ds + 1], qd_out[e, ds + 2], f64(0.0))
            r_new = wp.normalize(r + r * w * (half * h))
            q_out[e, qs] = r_new[3]
            q_out[e, qs + 1] = r_new[0]
            q_out[e, qs + 2] = r_new[1]
            q_out[e, qs + 3] = r_new[2]
        elif jtype == HINGE or jtype == SLIDE:
            qd_out[e, ds] = qd[e, ds] + qdd[e, ds] * h
            q_out[e, qs] = q[e, qs] + qd_out[e, ds] * h
