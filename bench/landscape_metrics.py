"""Metrics of 1-D landscape slices and directional-derivative checks (evaluation spec §4), plus the
bootstrap used for their confidence intervals. Arrays in, floats/arrays out; the last axis is the grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

FD_STEPS = (1e-1, 1e-2, 1e-3)
CONFIDENCE = 0.95


def _grid(alpha: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(alpha, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < 3 or y.shape[-1] != x.size:
        raise ValueError(f"need a grid of >= 3 points and values [..., {x.size}], got {y.shape}")
    if not np.all(np.diff(x) > 0):
        raise ValueError("the grid must be strictly increasing")
    return x, y


def value_range(values: ArrayLike) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    return y.max(axis=-1) - y.min(axis=-1)


def tv_ratio(values: ArrayLike) -> np.ndarray:
    """Total variation Σ_k |J_{k+1} - J_k| over the variation a monotone or unimodal slice with the same
    extremes and end points has, 2 (max J - min J) - |J_last - J_first|: exactly 1 for monotone and for
    unimodal slices, larger = rugged. (The spec's literal denominator, max J - min J, gives up to 2 for a
    unimodal slice; it equals this one for monotone slices.) A flat slice (zero range) gives nan.
    """
    y = np.asarray(values, dtype=np.float64)
    span = value_range(y)
    reference = 2.0 * span - np.abs(y[..., -1] - y[..., 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, np.abs(np.diff(y, axis=-1)).sum(axis=-1) / reference, np.nan)


def local_lipschitz(alpha: ArrayLike, values: ArrayLike, percentile: float = 95.0) -> np.ndarray:
    """``percentile`` of |ΔJ| / Δα over neighbouring grid points (a percentile, not the max)."""
    x, y = _grid(alpha, values)
    return np.percentile(np.abs(np.diff(y, axis=-1)) / np.diff(x), percentile, axis=-1)


def roughness(alpha: ArrayLike, values: ArrayLike) -> np.ndarray:
    """Mean |Δ²J| / Δα² over a uniform grid, divided by the range of J (nan for a flat slice)."""
    x, y = _grid(alpha, values)
    step = np.diff(x)
    if not np.allclose(step, step[0], rtol=1e-6, atol=0.0):
        raise ValueError("roughness needs a uniform grid")
    second = np.abs(np.diff(y, n=2, axis=-1)).mean(axis=-1) / step[0] ** 2
    span = value_range(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, second / span, np.nan)


def central_difference(plus: ArrayLike, minus: ArrayLike, h: float) -> np.ndarray:
    """(J(θ + h d) - J(θ - h d)) / 2h."""
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    return (np.asarray(plus, dtype=np.float64) - np.asarray(minus, dtype=np.float64)) / (2.0 * h)


def relative_error(estimate: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """|estimate - reference| / |reference| (nan where the reference is 0)."""
    e, r = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r != 0, np.abs(e - r) / np.abs(r), np.nan)


def bootstrap_interval(
    samples: ArrayLike, statistic: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int
) -> tuple[float, float, float]:
    """(estimate, low, high): ``statistic`` over axis 0 of ``samples`` and its percentile 95% interval
    from ``resamples`` resamples of the rows with replacement. ``statistic`` maps [R, n, ...] -> [R]."""
    s = np.asarray(samples, dtype=np.float64)
    rng = np.random.default_rng(seed)
    estimate = float(statistic(s[None])[0])
    index = rng.integers(0, s.shape[0], size=(resamples, s.shape[0]))
    return (estimate, *percentile_interval(statistic(s[index])))


SLICE_METRICS = ("tv_ratio", "lipschitz", "roughness")


def percentile_interval(draws: ArrayLike) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws (nan draws left out)."""
    d = np.asarray(draws, dtype=np.float64)
    if not np.isfinite(d).any() and not np.isinf(d).any():
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):  # inf draws (e.g. an SNR with zero variance) give inf/nan bounds
        low, high = np.nanpercentile(d, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def slice_metric_bootstrap(
    alpha: np.ndarray, values: np.ndarray, metric: str, resamples: int, seed: int
) -> tuple[float, np.ndarray]:
    """A slice metric averaged over directions, and its bootstrap draws over directions.

    ``values`` [K directions, A grid points, B start states]; the metric is taken on each direction's
    batch-mean slice (the objective is J over this fixed batch of start states), then averaged over the
    directions (nan metrics, from flat slices, are left out). Each resample draws K directions with
    replacement. Start states are not resampled: the metrics are non-linear in the batch mean, and the mean
    of a resampled batch is noisier than the batch's own, which inflates every roughness measure. The draws
    depend only on (K, resamples, seed), so two objectives evaluated at the same points get paired draws.
    With K < 2 there is nothing to resample and the draws are nan.
    """
    funcs = {
        "tv_ratio": lambda y: tv_ratio(y),
        "lipschitz": lambda y: local_lipschitz(alpha, y),
        "roughness": lambda y: roughness(alpha, y),
    }
    if metric not in funcs:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(funcs)}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"values must be [K, A, B], got shape {v.shape}")
    with np.errstate(all="ignore"):
        per_direction = funcs[metric](v.mean(axis=2))  # [K]
    finite = np.isfinite(per_direction)
    estimate = float(per_direction[finite].mean()) if finite.any() else float("nan")
    k = v.shape[0]
    if k < 2:
        return estimate, np.full(resamples, np.nan)
    index = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    counts = finite[index].sum(axis=1)
    sums = np.where(finite, per_direction, 0.0)[index].sum(axis=1)
    with np.errstate(all="ignore"):
        return estimate, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
