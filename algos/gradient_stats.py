"""Statistics of stochastic gradient estimates (evaluation spec §5), shared by bench.landscape and the PWM
diagnostics. Inputs are n gradient samples as rows of an [n, p] array; outputs are plain floats/arrays.

Definitions (ḡ = sample mean, Var_i = unbiased per-parameter variance):
  mean_norm = ‖ḡ‖;  sample_norm = mean of ‖g_j‖;  mean_variance = mean_i Var_i;  trace_cov = Σ_i Var_i;
  snr_sample = ‖ḡ‖² / tr Cov (one sample);  snr_estimator = ‖ḡ‖² / (tr Cov / n) (the n-sample mean);
  esnr_pwm = mean_i ḡ_i² / (Var_i + 1e-9): PWM's ESNR, for parity only (near-zero-variance parameters
  dominate it under the 1e-9 floor).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

ESNR_FLOOR = 1e-9
STATISTICS = (
    "mean_norm",
    "sample_norm",
    "mean_variance",
    "trace_cov",
    "snr_sample",
    "snr_estimator",
    "esnr_pwm",
)


def _samples(gradients: ArrayLike) -> np.ndarray:
    g = np.asarray(gradients, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] < 2:
        raise ValueError(f"gradients must be [n >= 2, p], got shape {g.shape}")
    return g


def gradient_statistics(gradients: ArrayLike) -> dict[str, float]:
    """The :data:`STATISTICS` of n gradient samples [n, p] (non-finite entries propagate as nan)."""
    g = _samples(gradients)
    n = g.shape[0]
    mean = g.mean(axis=0)
    var = g.var(axis=0, ddof=1)
    mean_sq = float(mean @ mean)
    trace = float(var.sum())
    snr = mean_sq / trace if trace > 0 else float("inf")
    return {
        "mean_norm": float(np.sqrt(mean_sq)),
        "sample_norm": float(np.linalg.norm(g, axis=1).mean()),
        "mean_variance": float(var.mean()),
        "trace_cov": trace,
        "snr_sample": snr,
        "snr_estimator": snr * n,
        "esnr_pwm": float((mean**2 / (var + ESNR_FLOOR)).mean()),
    }


def gradient_cosine(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Cosine between matching rows of two gradient arrays [n, p] (or two vectors [p]: a 0-d array).

    Used for the world-model vs simulator gradient at the same θ and start states. A zero row gives nan
    (no direction), which callers count.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"gradient shapes differ: {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (a * b).sum(axis=-1) / norms, np.nan)


def growth_rate(horizons: ArrayLike, norms: ArrayLike) -> float:
    """Least-squares slope of log ‖g‖ against H (Metz et al., arXiv 2111.05803): per-step log growth."""
    h, n = np.asarray(horizons, dtype=np.float64), np.asarray(norms, dtype=np.float64)
    if h.shape != n.shape or h.size < 2:
        raise ValueError("growth_rate needs matching horizons and norms, at least 2 of each")
    if not np.all(n > 0):
        return float("nan")
    return float(np.polyfit(h, np.log(n), 1)[0])


def bootstrap_gradient_statistics(
    gradients: ArrayLike, resamples: int, seed: int, chunk: int = 64
) -> dict[str, np.ndarray]:
    """Each statistic over ``resamples`` bootstrap resamples of the n gradient rows (with replacement).

    Works from resampled sums, ``chunk`` resamples at a time, so memory stays at chunk x p.
    """
    g = _samples(gradients)
    n = g.shape[0]
    rng = np.random.default_rng(seed)
    g2 = g * g
    norms = np.linalg.norm(g, axis=1)
    out = {name: np.empty(resamples) for name in STATISTICS}
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(stop - start)])
        mean = counts @ g / n
        var = (counts @ g2 / n - mean**2) * n / (n - 1)
        var = np.maximum(var, 0.0)
        mean_sq = (mean**2).sum(axis=1)
        trace = var.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(trace > 0, mean_sq / trace, np.inf)
        out["mean_norm"][start:stop] = np.sqrt(mean_sq)
        out["sample_norm"][start:stop] = counts @ norms / n
        out["mean_variance"][start:stop] = var.mean(axis=1)
        out["trace_cov"][start:stop] = trace
        out["snr_sample"][start:stop] = snr
        out["snr_estimator"][start:stop] = snr * n
        out["esnr_pwm"][start:stop] = (mean**2 / (var + ESNR_FLOOR)).mean(axis=1)
    return out
