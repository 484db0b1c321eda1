"""Grid evaluation: the objective at θ + Σ_k c_pk d_k for many grid points p, batched and restartable.

Points are evaluated ``chunk`` at a time in one batched objective call each (P = chunk points times B start
states). A ``store`` (:class:`ChunkStore`) keeps finished chunks, so an interrupted evaluation resumes
where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from algos.landscape.directions import Params, perturbed
from algos.landscape.objectives import StartStates


class ChunkStore(Protocol):
    def get(self, index: int) -> tuple[np.ndarray, int] | None:
        """(values, invalid states) of a finished chunk, or None."""

    def put(self, index: int, values: np.ndarray, invalid: int) -> None: ...


def evaluate_grid(
    objective: Callable[..., Any],
    theta: Params,
    directions: list[Params],
    coefficients: np.ndarray,
    starts: StartStates,
    horizons: list[int],
    chunk: int,
    store: ChunkStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """J^H at every grid point: ([len(horizons), P, B] float64 for the sorted horizons, invalid states).

    ``coefficients`` [P, K] are the grid points in the coordinates of ``directions``; ``progress(points)``
    is called after each chunk with the number of points it held.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts, invalid = [], 0
    for index, start in enumerate(range(0, coefficients.shape[0], chunk)):
        block = coefficients[start : start + chunk]
        done = store.get(index) if store is not None else None
        if done is None:
            params = perturbed(theta, directions, torch.from_numpy(block))
            with torch.no_grad():
                rollout = objective(params, starts.repeat(block.shape[0]), horizons)
            done = rollout.returns.cpu().numpy(), rollout.invalid_states
            if store is not None:
                store.put(index, *done)
        parts.append(done[0])
        invalid += done[1]
        if progress is not None:
            progress(block.shape[0])
    return np.concatenate(parts, axis=1), invalid


def line_coefficients(count: int, alphas: np.ndarray) -> np.ndarray:
    """Coefficients [count * A, count] of 1-D lines: direction k at every α (k-major)."""
    eye = np.eye(count)
    return np.concatenate([np.outer(alphas, eye[k]) for k in range(count)]) if count else np.zeros((0, 0))


def plane_coefficients(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Coefficients [A * B', 2] of a 2-D grid over two directions (α-major)."""
    a, b = np.meshgrid(alphas, betas, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)
