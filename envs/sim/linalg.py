"""Dense per-env Cholesky factorisation and solve, with a hand-written adjoint (spec §4).

These kernels are not differentiated by Warp: the simulator's backward plan runs ``solve_adjoint`` in
place of the solve's adjoint. For qdd = (H + diag(armature))^-1 tau it gives adj_tau = z and
adj_H = -z qdd^T with z = (H + diag(armature))^-1 adj_qdd, using the cached factor. That is dflex's rule
(the Cholesky step itself is a no-op in the adjoint) and it is also the exact gradient, because H is
symmetric and the factor is only a way of applying its inverse.
"""

from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

f64 = wp.float64


@wp.kernel
def cholesky(n: int, H: wp.array3d(dtype=f64), armature: wp.array(dtype=f64), L: wp.array3d(dtype=f64)):
    """L L^T = H + diag(armature), lower triangle of L written (upper left untouched)."""
    e = wp.tid()
    for j in range(n):
        s = H[e, j, j] + armature[j]
        for k in range(j):
            s -= L[e, j, k] * L[e, j, k]
        d = wp.sqrt(wp.max(s, f64(1e-12)))
        L[e, j, j] = d
        for i in range(j + 1, n):
            t = H[e, i, j]
            for k in range(j):
                t -= L[e, i, k] * L[e, j, k]
            L[e, i, j] = t / d


@wp.func
def cholesky_solve(
    n: int, e: int, L: wp.array3d(dtype=f64), b: wp.array2d(dtype=f64), x: wp.array2d(dtype=f64)
):
    """x = (L L^T)^-1 b for env e; x may alias b."""
    for i in range(n):
        s = b[e, i]
        for k in range(i):
            s -= L[e, i, k] * x[e, k]
        x[e, i] = s / L[e, i, i]
    for kk in range(n):
        i = n - 1 - kk
        s = x[e, i]
        for k in range(i + 1, n):
            s -= L[e, k, i] * x[e, k]
        x[e, i] = s / L[e, i, i]


@wp.kernel
def solve(n: int, L: wp.array3d(dtype=f64), tau: wp.array2d(dtype=f64), qdd: wp.array2d(dtype=f64)):
    e = wp.tid()
    cholesky_solve(n, e, L, tau, qdd)


@wp.kernel
def solve_adjoint(
    n: int,
    L: wp.array3d(dtype=f64),
    qdd: wp.array2d(dtype=f64),
    adj_qdd: wp.array2d(dtype=f64),
    z: wp.array2d(dtype=f64),
    adj_tau: wp.array2d(dtype=f64),
    adj_H: wp.array3d(dtype=f64),
):
    e = wp.tid()
    cholesky_solve(n, e, L, adj_qdd, z)
    for i in range(n):
        adj_tau[e, i] = adj_tau[e, i] + z[e, i]
        for j in range(n):
            adj_H[e, i, j] = adj_H[e, i, j] - z[e, i] * qdd[e, j]
