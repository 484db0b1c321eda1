"""Aggregate statistics over score arrays: point estimates, stratified bootstrap intervals, normalisation.

Pure functions over numpy arrays (evaluation spec §2); no import of ``envs`` or ``algos``, no rliable.

Data model
----------
``scores`` is either a 2-D array ``[runs, tasks]`` (tasks = envs) or a sequence with one 1-D array of run
scores per task, which allows unequal run counts per task. Non-finite entries (NaN for a crashed run, or NaN
padding) are excluded and counted in ``Interval.n_excluded``.

Learning curves use one ``[runs, evals]`` array per task (see :func:`curve_interval`).

Intervals
---------
The stratified bootstrap resamples runs with replacement *within each task* (Agarwal et al., arXiv
2108.13264): ``scipy.stats.bootstrap`` with one sample per task and ``paired=False``, so each task's runs are
resampled independently and the statistic concatenates the resampled tasks. All randomness comes from the
``rng`` argument (an int seed, a sequence of ints, or a ``numpy.random.Generator``); equal seeds give
bit-identical intervals.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.stats

ArrayLike = Any
RngLike = int | Sequence[int] | np.random.Generator

METRICS = ("iqm", "mean", "median", "optimality_gap")
METRIC_LABELS = {"iqm": "IQM", "mean": "Mean", "median": "Median", "optimality_gap": "Optimality gap"}
CI_METHODS = ("percentile", "BCa", "basic")
DEFAULT_RESAMPLES = 10_000
PAPER_RESAMPLES = 50_000

# PPO's maximum training return per env, the PWM paper's normaliser ("perf_scales" in imgeorgiev/PWM
# results/results.ipynb; evaluation spec §3). Only for reproducing the paper (``--normalize ppo_max``).
PPO_MAX_RETURNS: dict[str, float] = {
    "hopper": 4742.30,
    "ant": 6604.66,
    "anymal": 12028.99,
    "humanoid": 7292.79,
    "snuhumanoid": 4246.04,
}

# warpbench's own min-max reference scores, env -> (R_min random policy, R_ref fixed-budget reference run).
# Versioned constants (evaluation spec §1); filled once the reference runs exist. Until then pass explicit
# references (``bench.report --reference FILE``).
REFERENCE_SCORES_VERSION = "0 (none recorded yet)"
REFERENCE_SCORES: dict[str, tuple[float, float]] = {}

_ENV_ALIASES = {"humanoidsnu": "snuhumanoid", "humanoidmtu": "snuhumanoid", "snu": "snuhumanoid"}
_BOOTSTRAP_RNG_KW = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
_MAX_BATCH_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------------------------------------
# Input handling


def task_samples(scores: ArrayLike) -> tuple[list[np.ndarray], int]:
    """Split ``scores`` into one 1-D array of finite run scores per task and count excluded entries.

    Accepts a list or tuple of per-task 1-D arrays (ragged allowed), or anything ``numpy.asarray`` turns into
    a 2-D ``[runs, tasks]`` array (a 1-D array is one task). Raises ValueError when there are no tasks or a
    task has no finite score.
    """
    if isinstance(scores, (list, tuple)) and len(scores) > 0 and not np.isscalar(scores[0]):
        columns = [np.asarray(c, dtype=float).ravel() for c in scores]
    else:
        arr = np.asarray(scores, dtype=float)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(
                f"scores must be [runs, tasks] or a list of per-task arrays, got shape {arr.shape}"
            )
        columns = [arr[:, t] for t in range(arr.shape[1])]
    if not columns:
        raise ValueError("scores has no tasks")
    samples, excluded = [], 0
    for t, col in enumerate(columns):
        finite = col[np.isfinite(col)]
        excluded += col.size - finite.size
        if finite.size == 0:
            raise ValueError(f"task {t} has no finite run score")
        samples.append(finite)
    return samples, excluded


def make_rng(rng: RngLike) -> tuple[np.random.Generator, Any]:
    """Return ``(generator, recorded_seed)``; the seed is None when a ready Generator was passed."""
    if isinstance(rng, np.random.Generator):
        return rng, None
    if rng is None:
        raise ValueError("an explicit seed or numpy Generator is required (no global random state)")
    seed = int(rng) if np.isscalar(rng) else [int(s) for s in rng]
    return np.random.default_rng(seed), seed


def _check_method(method: str) -> str:
    for m in CI_METHODS:
        if method.lower() == m.lower():
            return m
    raise ValueError(f"unknown CI method {method!r}; choose one of {', '.join(CI_METHODS)}")


# ----------------------------------------------------------------------------------------------------------
# Point estimates (vectorised over leading axes: every sample is [..., runs])


def _iqm(samples: Sequence[np.ndarray]) -> np.ndarray:
    return scipy.stats.trim_mean(np.concatenate(samples, axis=-1), 0.25, axis=-1)


def _task_means(samples: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([s.mean(axis=-1) for s in samples], axis=-1)


def _mean(samples: Sequence[np.ndarray]) -> np.ndarray:
    return _task_means(samples).mean(axis=-1)


def _median(samples: Sequence[np.ndarray]) -> np.ndarray:
    return np.median(_task_means(samples), axis=-1)


def _optimality_gap(samples: Sequence[np.ndarray], gamma: float = 1.0) -> np.ndarray:
    return gamma - _mean([np.minimum(s, gamma) for s in samples])


_METRIC_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "iqm": _iqm,
    "mean": _mean,
    "median": _median,
    "optimality_gap": _optimality_gap,
}


def _metric_func(metric: str, gamma: float) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    if metric not in _METRIC_FUNCS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if metric == "optimality_gap":
        return lambda samples: _optimality_gap(samples, gamma)
    return _METRIC_FUNCS[metric]


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean: 25% trimmed mean of all pooled run x task scores (int(0.25 n) cut per end)."""
    return float(_iqm(task_samples(scores)[0]))


def mean_score(scores: ArrayLike) -> float:
    """Mean over tasks of the per-task mean scores."""
    return float(_mean(task_samples(scores)[0]))


def median_score(scores: ArrayLike) -> float:
    """Median over tasks of the per-task mean scores."""
    return float(_median(task_samples(scores)[0]))


def optimality_gap(scores: ArrayLike, gamma: float = 1.0) -> float:
    """``gamma - mean(min(x, gamma))`` with the same task-weighted mean as :func:`mean_score`."""
    return float(_optimality_gap(task_samples(scores)[0], gamma))


def aggregate(scores: ArrayLike, metric: str = "iqm", gamma: float = 1.0) -> float:
    """Point estimate of ``metric`` (one of :data:`METRICS`)."""
    return float(_metric_func(metric, gamma)(task_samples(scores)[0]))


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """P(X > Y): per task ``U / (n_x n_y)`` from ``scipy.stats.mannwhitneyu`` (ties count 1/2), task mean.

    ``x`` and ``y`` hold the two methods' scores on the same tasks (same task order).
    """
    xs, _ = task_samples(x)
    ys, _ = task_samples(y)
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks, y has {len(ys)}")
    per_task = [
        scipy.stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").statistic
        / (a.size * b.size)
        for a, b in zip(xs, ys, strict=True)
    ]
    return float(np.mean(per_task))


def _poi(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """Vectorised P(X > Y) by pairwise counting (equal to the Mann-Whitney U / (n_x n_y))."""
    per_task = []
    for a, b in zip(xs, ys, strict=True):
        a, b = a[..., :, None], b[..., None, :]
        per_task.append(np.mean((a > b) + 0.5 * (a == b), axis=(-2, -1)))
    return np.mean(np.stack(per_task, axis=-1), axis=-1)


def performance_profile(scores: ArrayLike, taus: ArrayLike, per_task_mean: bool = False) -> np.ndarray:
    """Fraction of pooled run x task scores above each threshold in ``taus``.

    With ``per_task_mean=True`` the fraction of *tasks* whose mean score is above each threshold.
    """
    samples, _ = task_samples(scores)
    taus = np.asarray(taus, dtype=float)
    pooled = _task_means(samples) if per_task_mean else np.concatenate(samples)
    return (pooled[None, :] > taus[:, None]).mean(axis=1)


# ----------------------------------------------------------------------------------------------------------
# Bootstrap machinery


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval and everything needed to reproduce it."""

    metric: str
    estimate: float
    low: float
    high: float
    method: str
    confidence_level: float
    n_resamples: int
    seed: Any
    runs_per_task: list[int]
    n_excluded: int
    scheme: str = "stratified"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Band:
    """Vector-valued estimate (a curve or a profile) with a pointwise confidence band."""

    x: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_runs: np.ndarray
    method: str
    confidence_level: float
    n_resamples: int
    seed: Any
    notes: list[str] = field(default_factory=list)


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _run_bootstrap(
    varying: list[np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    gen: np.random.Generator,
    n_resamples: int,
    method: str,
    confidence_level: float,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, str]:
    """One ``scipy.stats.bootstrap`` call, one sample per stratum; degenerate BCa falls back to percentile."""

    def stat(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(list(resampled))

    elements = sum(int(np.prod(v.shape)) for v in varying)
    batch = max(1, min(n_resamples, _MAX_BATCH_ELEMENTS // max(elements, 1)))
    kwargs = {
        "paired": False,
        "vectorized": True,
        "axis": -1,
        "n_resamples": n_resamples,
        "confidence_level": confidence_level,
        "batch": batch,
        _BOOTSTRAP_RNG_KW: gen,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's degenerate-data and divide warnings; handled below
        res = scipy.stats.bootstrap(tuple(varying), stat, method=method, **kwargs)
    low = np.asarray(res.confidence_interval.low, dtype=float)
    high = np.asarray(res.confidence_interval.high, dtype=float)
    used = method
    if method == "BCa" and (np.isnan(low).any() or np.isnan(high).any()):
        # Reuse the BCa bootstrap distribution: the percentile interval of the same resamples.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pct = scipy.stats.bootstrap(
                tuple(varying),
                stat,
                method="percentile",
                bootstrap_result=res,
                **{**kwargs, "n_resamples": 0},
            )
        bad = np.isnan(low) | np.isnan(high)
        low = np.where(bad, pct.confidence_interval.low, low)
        high = np.where(bad, pct.confidence_interval.high, high)
        used = "BCa (percentile fallback where degenerate)"
        _warn(notes, "BCa interval is undefined on degenerate data; fell back to the percentile interval")
    return low, high, used


def _stratified(
    strata: list[np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    rng: RngLike,
    n_resamples: int,
    method: str,
    confidence_level: float,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, str, Any]:
    """Stratified bootstrap over ``strata`` (arrays ``[..., runs]``); strata with one run are held fixed."""
    method = _check_method(method)
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    gen, seed = make_rng(rng)
    varying_idx = [i for i, s in enumerate(strata) if s.shape[-1] > 1]
    shape = np.broadcast_shapes(*(s.shape[:-1] for s in strata))
    if not varying_idx:
        _warn(
            notes,
            "every task has a single run: the stratified interval is undefined (NaN); "
            "consider task_bootstrap=True",
        )
        nan = np.full(shape, np.nan)
        return nan, nan.copy(), method, seed
    if len(varying_idx) < len(strata):
        _warn(
            notes,
            f"{len(strata) - len(varying_idx)} task(s) have a single run and are held fixed; "
            "the interval ignores their run-to-run variability",
        )
    fixed = {i: s for i, s in enumerate(strata) if s.shape[-1] == 1}

    def full(resampled: list[np.ndarray]) -> list[np.ndarray]:
        # scipy inserts its resample axes after a sample's own batch axes: pad the fixed strata alike.
        batch = np.broadcast_shapes(*(r.shape[:-1] for r in resampled))
        it = iter(resampled)
        out = []
        for i in range(len(strata)):
            if i not in fixed:
                out.append(next(it))
                continue
            own = fixed[i].shape[:-1]
            padded = fixed[i].reshape(own + (1,) * (len(batch) - len(own)) + (1,))
            out.append(np.broadcast_to(padded, batch + (1,)))
        return out

    low, high, used = _run_bootstrap(
        [strata[i] for i in varying_idx],
        lambda r: statistic(full(r)),
        gen,
        n_resamples,
        method,
        confidence_level,
        notes,
    )
    return low, high, used, seed


def _task_bootstrap(
    samples: list[np.ndarray],
    func: Callable[[Sequence[np.ndarray]], np.ndarray],
    rng: RngLike,
    n_resamples: int,
    method: str,
    confidence_level: float,
    notes: list[str],
) -> tuple[float, float, str, Any]:
    """Resample whole tasks with replacement (labelled alternative for one run per task)."""
    method = _check_method(method)
    gen, seed = make_rng(rng)
    if len(samples) < 2:
        _warn(notes, "task bootstrap needs at least two tasks; interval is NaN")
        return np.nan, np.nan, method, seed

    def stat(idx: np.ndarray) -> float:
        return float(func([samples[int(i)] for i in idx]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            (np.arange(len(samples)),),
            stat,
            vectorized=False,
            n_resamples=n_resamples,
            method=method,
            confidence_level=confidence_level,
            **{_BOOTSTRAP_RNG_KW: gen},
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isnan(low) or np.isnan(high):
        q = (1 - confidence_level) / 2
        low, high = (float(v) for v in np.percentile(res.bootstrap_distribution, [100 * q, 100 * (1 - q)]))
        _warn(notes, f"{method} task-bootstrap interval undefined; used the percentile interval")
        method = "percentile"
    return low, high, method, seed


# ----------------------------------------------------------------------------------------------------------
# Public interval estimates


def interval(
    scores: ArrayLike,
    metric: str = "iqm",
    *,
    rng: RngLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    confidence_level: float = 0.95,
    gamma: float = 1.0,
    task_bootstrap: bool = False,
) -> Interval:
    """Point estimate and stratified-bootstrap confidence interval of an aggregate ``metric``.

    ``task_bootstrap=True`` resamples whole tasks instead (labelled ``scheme="task"``), for one run per task.
    A single run per task without it gives a NaN interval and a RuntimeWarning.
    """
    samples, excluded = task_samples(scores)
    func = _metric_func(metric, gamma)
    notes: list[str] = []
    if excluded:
        notes.append(f"{excluded} non-finite run score(s) excluded")
    if task_bootstrap:
        low, high, used, seed = _task_bootstrap(
            samples, func, rng, n_resamples, method, confidence_level, notes
        )
        scheme = "task"
    else:
        lo, hi, used, seed = _stratified(samples, func, rng, n_resamples, method, confidence_level, notes)
        low, high, scheme = float(lo), float(hi), "stratified"
    return Interval(
        metric=metric,
        estimate=float(func(samples)),
        low=low,
        high=high,
        method=used,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        seed=seed,
        runs_per_task=[int(s.size) for s in samples],
        n_excluded=excluded,
        scheme=scheme,
        notes=notes,
    )


def poi_interval(
    x: ArrayLike,
    y: ArrayLike,
    *,
    rng: RngLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    confidence_level: float = 0.95,
) -> Interval:
    """P(X > Y) with both methods' runs resampled independently within tasks (2 T samples in one call)."""
    xs, ex_x = task_samples(x)
    ys, ex_y = task_samples(y)
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks, y has {len(ys)}")
    notes: list[str] = []
    n = len(xs)
    low, high, used, seed = _stratified(
        xs + ys, lambda s: _poi(s[:n], s[n:]), rng, n_resamples, method, confidence_level, notes
    )
    return Interval(
        metric="probability_of_improvement",
        estimate=probability_of_improvement(xs, ys),
        low=float(low),
        high=float(high),
        method=used,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        seed=seed,
        runs_per_task=[int(s.size) for s in xs + ys],
        n_excluded=ex_x + ex_y,
        notes=notes,
    )


def profile_interval(
    scores: ArrayLike,
    taus: ArrayLike,
    *,
    rng: RngLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    confidence_level: float = 0.95,
) -> Band:
    """Performance profile (fraction of pooled scores > tau) with a stratified-bootstrap band over taus."""
    samples, _ = task_samples(scores)
    taus = np.asarray(taus, dtype=float)
    # One indicator array [tau, runs] per task: the same run resample serves every threshold.
    strata = [(s[None, :] > taus[:, None]).astype(float) for s in samples]
    notes: list[str] = []
    low, high, used, seed = _stratified(
        strata,
        lambda r: np.concatenate(r, axis=-1).mean(axis=-1),
        rng,
        n_resamples,
        method,
        confidence_level,
        notes,
    )
    return Band(
        x=taus,
        estimate=performance_profile(samples, taus),
        low=low,
        high=high,
        n_runs=np.full(taus.shape, sum(s.size for s in samples)),
        method=used,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        seed=seed,
        notes=notes,
    )


def curve_interval(
    curves: Sequence[ArrayLike],
    x: ArrayLike | None = None,
    *,
    rng: RngLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    confidence_level: float = 0.95,
) -> Band:
    """IQM learning curve over runs (and tasks) at each evaluation point, with a per-point bootstrap band.

    ``curves`` holds one ``[runs, evals]`` array per task (all with the same evaluation grid); NaN marks a
    run without a value at that point. Points are grouped by which runs have data, and each group is one
    stratified bootstrap (the same run resample for every point of the group).
    """
    arrs = [np.atleast_2d(np.asarray(c, dtype=float)) for c in curves]
    n_evals = arrs[0].shape[1]
    if any(a.shape[1] != n_evals for a in arrs):
        raise ValueError("all tasks' curves must share the evaluation grid")
    xs = np.arange(n_evals, dtype=float) if x is None else np.asarray(x, dtype=float)
    gen, seed = make_rng(rng)
    est, low, high = (np.full(n_evals, np.nan) for _ in range(3))
    n_runs = np.zeros(n_evals, dtype=int)
    notes: list[str] = []
    masks = np.concatenate([np.isfinite(a) for a in arrs], axis=0)  # [all runs, evals]
    groups: dict[bytes, list[int]] = {}
    for e in range(n_evals):
        groups.setdefault(masks[:, e].tobytes(), []).append(e)
    method_used = _check_method(method)
    offsets = np.cumsum([0] + [a.shape[0] for a in arrs])
    for key in sorted(groups, key=lambda k: groups[k][0]):
        cols = groups[key]
        mask = masks[:, cols[0]]
        strata = [a[mask[offsets[t] : offsets[t + 1]]][:, cols].T for t, a in enumerate(arrs)]
        strata = [s for s in strata if s.shape[-1] > 0]
        n_runs[cols] = int(mask.sum())
        if not strata or len(strata) < len(arrs):
            continue  # a task without data at these points: no estimate
        est[cols] = _iqm(strata)
        if sum(s.shape[-1] for s in strata) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi, used, _ = _stratified(strata, _iqm, gen, n_resamples, method, confidence_level, [])
        low[cols], high[cols] = lo, hi
        if used != method_used:
            method_used = used
    return Band(
        x=xs,
        estimate=est,
        low=low,
        high=high,
        n_runs=n_runs,
        method=method_used,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        seed=seed,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------------------
# Normalisation


def env_key(env: str) -> str:
    """Canonical env key for constant lookup: lower case, letters and digits only, aliases resolved."""
    key = re.sub(r"[^a-z0-9]", "", env.lower())
    key = key.removesuffix("env")
    return _ENV_ALIASES.get(key, key)


def normalize_minmax(returns: ArrayLike, r_min: float, r_ref: float) -> np.ndarray:
    """Min-max normalised score ``(R - R_min) / (R_ref - R_min)``."""
    if r_ref == r_min:
        raise ValueError("reference score equals the minimum score; cannot normalise")
    return (np.asarray(returns, dtype=float) - r_min) / (r_ref - r_min)


def normalize_ppo_max(returns: ArrayLike, env: str) -> np.ndarray:
    """The PWM paper's normalisation: divide by PPO's maximum training return on ``env``."""
    key = env_key(env)
    if key not in PPO_MAX_RETURNS:
        raise KeyError(f"no PPO maximum for env {env!r}; known: {', '.join(PPO_MAX_RETURNS)}")
    return np.asarray(returns, dtype=float) / PPO_MAX_RETURNS[key]


def reference_for(env: str, references: Mapping[str, Sequence[float]] | None = None) -> tuple[float, float]:
    """``(R_min, R_ref)`` of ``env`` from ``references`` (matched by :func:`env_key`) or stored constants."""
    table = {env_key(k): v for k, v in (REFERENCE_SCORES if references is None else references).items()}
    key = env_key(env)
    if key not in table:
        raise KeyError(f"no reference scores for env {env!r}")
    r_min, r_ref = table[key]
    return float(r_min), float(r_ref)


def normalize(
    returns: ArrayLike, env: str, scheme: str, references: Mapping[str, Sequence[float]] | None = None
) -> np.ndarray:
    """Normalise raw ``returns`` of ``env`` with ``scheme`` in {"none", "minmax", "ppo_max"}."""
    if scheme == "none":
        return np.asarray(returns, dtype=float)
    if scheme == "minmax":
        return normalize_minmax(returns, *reference_for(env, references))
    if scheme == "ppo_max":
        return normalize_ppo_max(returns, env)
    raise ValueError(f"unknown normalisation {scheme!r}; choose none, minmax or ppo_max")
