"""Batched quaternion helpers in torch, quaternions stored (x, y, z, w) as in dflex's observations."""

from __future__ import annotations

import math

import torch


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (..., 4) xyzw quaternions."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        (
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ),
        dim=-1,
    )


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate (..., 3) vectors by unit (..., 4) xyzw quaternions."""
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """xyzw quaternion of a rotation by ``angle`` about unit ``axis``."""
    half = 0.5 * angle
    return torch.cat((axis * torch.sin(half)[..., None], torch.cos(half)[..., None]), dim=-1)


def axis_angle_quat(axis: tuple[float, float, float], degrees: float) -> tuple[float, float, float, float]:
    """Constant xyzw quaternion for a rotation about a unit axis by ``degrees``."""
    s, c = math.sin(math.radians(degrees) / 2), math.cos(math.radians(degrees) / 2)
    return (axis[0] * s, axis[1] * s, axis[2] * s, c)


def wxyz_to_xyzw(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((q[..., 1:], q[..., :1]), dim=-1)


def xyzw_to_wxyz(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((q[..., 3:], q[..., :3]), dim=-1)
