"""Directions in parameter space with filter normalisation (Li et al., arXiv 1712.09913; spec §4).

A direction is a dict ``name -> tensor`` shaped like the parameters it perturbs. Filter normalisation
rescales every row of a weight matrix (one neuron's incoming weights) to the norm of the same row of θ and
zeroes every tensor with at most one dimension (biases, LayerNorm gains, log-std: "biasbn").
"""

from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


def filter_normalize(direction: Params, theta: Params) -> Params:
    """``direction`` rescaled row by row to the row norms of ``theta``; 0-d/1-d tensors set to zero.

    A zero row of the direction stays zero (there is no direction to rescale).
    """
    if set(direction) != set(theta):
        raise ValueError(f"direction and theta name different tensors: {sorted(set(direction) ^ set(theta))}")
    out = {}
    for name, d in direction.items():
        t = theta[name]
        if d.shape != t.shape:
            raise ValueError(f"direction {name} has shape {tuple(d.shape)}, theta {tuple(t.shape)}")
        if d.dim() <= 1:
            out[name] = torch.zeros_like(t)
            continue
        rows_d = d.reshape(d.shape[0], -1)
        rows_t = t.reshape(t.shape[0], -1)
        norm_d = torch.linalg.vector_norm(rows_d, dim=1, keepdim=True)
        norm_t = torch.linalg.vector_norm(rows_t, dim=1, keepdim=True)
        scale = torch.where(norm_d > 0, norm_t / norm_d.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
        out[name] = (rows_d * scale).reshape(t.shape)
    return out


def random_directions(theta: Params, count: int, seed: int) -> list[Params]:
    """``count`` filter-normalised directions with i.i.d. standard-normal entries (CPU generator: the same
    seed gives the same directions on every device)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    directions = []
    for _ in range(count):
        raw = {
            name: torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.device, t.dtype)
            for name, t in theta.items()
        }
        directions.append(filter_normalize(raw, theta))
    return directions


def flatten(params: Params) -> torch.Tensor:
    """All tensors of a parameter dict as one float64 vector (dict order)."""
    return torch.cat([t.reshape(-1).double() for t in params.values()])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten`: ``vector`` cut into tensors shaped (and typed) like ``like``."""
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start : start + t.numel()].reshape(t.shape).to(t.dtype)
        start += t.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, the parameters {start}")
    return out


def dot(a: Params, b: Params) -> torch.Tensor:
    """Inner product of two parameter dicts."""
    return sum((a[name].double() * b[name].double()).sum() for name in a)


def perturbed(theta: Params, directions: list[Params], coefficients: torch.Tensor) -> Params:
    """Stacked parameters θ + Σ_k c[p, k] d_k for every row p of ``coefficients`` [P, K]: tensors [P, ...]."""
    coefficients = torch.as_tensor(coefficients)
    if coefficients.dim() != 2 or coefficients.shape[1] != len(directions):
        raise ValueError(f"coefficients must be [P, {len(directions)}], got {tuple(coefficients.shape)}")
    out = {}
    for name, t in theta.items():
        c = coefficients.to(t.device, t.dtype)
        stacked = torch.stack([d[name] for d in directions]) if directions else t.new_zeros(0, *t.shape)
        shift = torch.tensordot(c, stacked, dims=([1], [0]))
        out[name] = t.unsqueeze(0) + shift
    return out
