"""Differentiable Warp kernels of one physics substep (envs spec §3-§5, §8.5).

Spatial vectors are world-frame, at the world origin, ordered (angular, linear). One thread per env
walks the links in tree order. Warp differentiates these kernels automatically; its adjoint is exact
only when every value carried from one loop iteration to the next goes through an array that is
written once (or accumulated with ``atomic_add``), never through a reassigned local. Every kernel
here keeps to that rule.
"""

from __future__ import annotations

import warp as wp

from envs.sim.model import JOINT_BALL, JOINT_FREE, JOINT_HINGE, JOINT_SLIDE

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


@wp.kernel
def link_dynamics(
    link_parent: wp.array(dtype=wp.int32),
    link_type: wp.array(dtype=wp.int32),
    link_q_start: wp.array(dtype=wp.int32),
    link_qd_start: wp.array(dtype=wp.int32),
    link_X_pj: wp.array(dtype=transform),
    link_anchor: wp.array(dtype=vec3),
    link_axis: wp.array(dtype=vec3),
    link_mass: wp.array(dtype=f64),
    link_com: wp.array(dtype=vec3),
    link_inertia: wp.array(dtype=mat33),
    num_links: int,
    base_acceleration: vec3,
    q: wp.array2d(dtype=f64),
    qd: wp.array2d(dtype=f64),
    body_X: wp.array2d(dtype=transform),
    body_V: wp.array2d(dtype=spatial_vector),
    body_A: wp.array2d(dtype=spatial_vector),
    body_h: wp.array2d(dtype=vec3),
    body_J: wp.array2d(dtype=mat33),
    body_f: wp.array2d(dtype=spatial_vector),
    joint_S: wp.array2d(dtype=spatial_vector),
):
    """Forward kinematics, velocities, bias accelerations and bias forces I*a + v x* I*v per link."""
    e = wp.tid()
    zero3 = vec3(f64(0.0), f64(0.0), f64(0.0))
    for link in range(num_links):
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
    contact_link: wp.array(dtype=wp.int32),
    contact_point: wp.array(dtype=vec3),
    contact_offset: wp.array(dtype=f64),
    up: vec3,
    ke: f64,
    kd: f64,
    kf: f64,
    mu: f64,
    friction_smoothing: f64,
    body_X: wp.array2d(dtype=transform),
    body_V: wp.array2d(dtype=spatial_vector),
    body_fext: wp.array2d(dtype=spatial_vector),
):
    """Penalty contact of fixed body points with the ground plane through the origin (spec §5)."""
    e, k = wp.tid()
    link = contact_link[k]
    p = wp.transform_point(body_X[e, link], contact_point[k]) - up * contact_offset[k]
    depth = wp.dot(p, up)
    if depth < f64(0.0):
        V = body_V[e, link]
        p_dot = wp.spatial_bottom(V) + wp.cross(wp.spatial_top(V), p)
        vn = wp.dot(p_dot, up)
        vt = p_dot - up * vn
        penetration = -depth
        fn = ke * penetration + kd * penetration * wp.max(-vn, f64(0.0))
        cap = mu * ke * penetration
        speed = wp.length(vt)
        if friction_smoothing > f64(0.0):
            speed = wp.sqrt(wp.dot(vt, vt) + friction_smoothing * friction_smoothing) - friction_smoothing
        ft = vt * (-kf)
        if kf * speed > cap:
            ft = vt * (-cap / speed)
        F = up * fn + ft
        wp.atomic_add(body_fext, e, link, spatial_vector(wp.cross(p, F), F))


@wp.kernel
def muscle_forces(
    segment_muscle: wp.array(dtype=wp.int32),
    segment_link_a: wp.array(dtype=wp.int32),
    segment_point_a: wp.array(dtype=vec3),
    segment_link_b: wp.array(dtype=wp.int32),
    segment_point_b: wp.array(dtype=vec3),
    muscle_force: wp.array2d(dtype=f64),
    body_X: wp.array2d(dtype=transform),
    body_fext: wp.array2d(dtype=spatial_vector),
):
    """Straight muscle segments between two links: equal and opposite forces along the segment (§8.5)."""
    e, s = wp.tid()
    la = segment_link_a[s]
    lb = segment_link_b[s]
    xa = wp.transform_point(body_X[e, la], segment_point_a[s])
    xb = wp.transform_point(body_X[e, lb], segment_point_b[s])
    F = wp.normalize(xb - xa) * muscle_force[e, segment_muscle[s]]
    wp.atomic_add(body_fext, e, la, spatial_vector(wp.cross(xa, F), F))
    wp.atomic_add(body_fext, e, lb, spatial_vector(wp.cross(xb, -F), -F))


@wp.kernel
def joint_forces(
    link_parent: wp.array(dtype=wp.int32),
    link_type: wp.array(dtype=wp.int32),
    link_q_start: wp.array(dtype=wp.int32),
    link_qd_start: wp.array(dtype=wp.int32),
    link_stiffness: wp.array(dtype=f64),
    link_damping: wp.array(dtype=f64),
    link_limit_lower: wp.array(dtype=f64),
    link_limit_upper: wp.array(dtype=f64),
    link_limit_ke: wp.array(dtype=f64),
    link_limit_kd: wp.array(dtype=f64),
    link_spring_ref: wp.array(dtype=f64),
    num_links: int,
    q: wp.array2d(dtype=f64),
    qd: wp.array2d(dtype=f64),
    actuation: wp.array2d(dtype=f64),
    body_f: wp.array2d(dtype=spatial_vector),
    body_fext: wp.array2d(dtype=spatial_vector),
    joint_S: wp.array2d(dtype=spatial_vector),
    body_F_children: wp.array2d(dtype=spatial_vector),
    tau: wp.array2d(dtype=f64),
):
    """Backward pass: subtree forces, then tau = u - S^T F + passive joint forces (spec §3)."""
    e = wp.tid()
    for k in range(num_links):
        link = num_links - 1 - k
        F = body_f[e, link] - body_fext[e, link] + body_F_children[e, link]
        p = link_parent[link]
        if p >= 0:
            wp.atomic_add(body_F_children, e, p, F)
        jtype = link_type[link]
        qs = link_q_start[link]
        ds = link_qd_start[link]
        if jtype == FREE:
            for i in range(6):
                tau[e, ds + i] = actuation[e, ds + i] - wp.dot(joint_S[e, ds + i], F)
        elif jtype == BALL:
            # Spring towards the identity on the quaternion's vector part, damping on the angular velocity.
            for i in range(3):
                tau[e, ds + i] = (
                    actuation[e, ds + i]
                    - wp.dot(joint_S[e, ds + i], F)
                    - link_stiffness[link] * q[e, qs + 1 + i]
                    - link_damping[link] * qd[e, ds + i]
                )
        elif jtype == HINGE or jtype == SLIDE:
            x = q[e, qs]
            limit_force = f64(0.0)
            if x < link_limit_lower[link]:
                limit_force = link_limit_ke[link] * (link_limit_lower[link] - x)
            elif x > link_limit_upper[link]:
                limit_force = link_limit_ke[link] * (link_limit_upper[link] - x)
            tau[e, ds] = (
                actuation[e, ds]
                - wp.dot(joint_S[e, ds], F)
                - link_stiffness[link] * (x - link_spring_ref[link])
                - (link_damping[link] + link_limit_kd[link]) * qd[e, ds]
                + limit_force
            )


@wp.kernel
def mass_matrix(
    link_parent: wp.array(dtype=wp.int32),
    link_mass: wp.array(dtype=f64),
    num_links: int,
    mass_row_start: wp.array(dtype=wp.int32),
    mass_row_col: wp.array(dtype=wp.int32),
    dof_link: wp.array(dtype=wp.int32),
    body_h: wp.array2d(dtype=vec3),
    body_J: wp.array2d(dtype=mat33),
    joint_S: wp.array2d(dtype=spatial_vector),
    children_m: wp.array2d(dtype=f64),
    children_h: wp.array2d(dtype=vec3),
    children_J: wp.array2d(dtype=mat33),
    H: wp.array3d(dtype=f64),
):
    """Joint-space mass matrix by composite rigid bodies: H[d, c] = S_c^T I_subtree(d) S_d.

    Row d lists its nonzero columns (dofs of the link's ancestors and its own) in
    mass_row_col[mass_row_start[d]:mass_row_start[d + 1]]; I_subtree(d) S_d is computed once per row.
    """
    e = wp.tid()
    # children_* arrive zeroed and collect the subtrees below each link; a link reads its entry only after
    # all its children (higher indices) have pushed theirs, so every read sees the final value.
    for k in range(num_links):
        link = num_links - 1 - k
        p = link_parent[link]
        if p >= 0:
            wp.atomic_add(children_m, e, p, children_m[e, link] + link_mass[link])
            wp.atomic_add(children_h, e, p, children_h[e, link] + body_h[e, link])
            wp.atomic_add(children_J, e, p, children_J[e, link] + body_J[e, link])
    for d in range(mass_row_start.shape[0] - 1):
        link = dof_link[d]
        F = inertia_times(
            children_m[e, link] + link_mass[link],
            children_h[e, link] + body_h[e, link],
            children_J[e, link] + body_J[e, link],
            joint_S[e, d],
        )
        for k in range(mass_row_start[d], mass_row_start[d + 1]):
            c = mass_row_col[k]
            value = wp.dot(joint_S[e, c], F)
            H[e, d, c] = value
            if c != d:
                H[e, c, d] = value


@wp.kernel
def integrate(
    link_type: wp.array(dtype=wp.int32),
    link_q_start: wp.array(dtype=wp.int32),
    link_qd_start: wp.array(dtype=wp.int32),
    num_links: int,
    h: f64,
    q: wp.array2d(dtype=f64),
    qd: wp.array2d(dtype=f64),
    qdd: wp.array2d(dtype=f64),
    q_out: wp.array2d(dtype=f64),
    qd_out: wp.array2d(dtype=f64),
):
    """Semi-implicit Euler: velocities first, then positions with the new velocities (spec §4)."""
    e = wp.tid()
    half = f64(0.5)
    for link in range(num_links):
        jtype = link_type[link]
        qs = link_q_start[link]
        ds = link_qd_start[link]
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
