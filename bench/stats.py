"""Aggregate statistics over score arrays: point estimates and stratified bootstrap intervals.

Pure functions over numpy arrays (evaluation spec §2); no import of ``envs`` or ``algos``, no rliable, and no
knowledge of particular envs (normalisation constants live in :mod:`bench.normalization`).

Data model
----------
``scores`` is either a 2-D array ``[runs, tasks]`` (tasks = envs) or a sequence with one 1-D array of run
scores per task, which allows unequal run counts per task. Non-finite entries (NaN for a crashed run, or NaN
padding) are excluded and counted in ``Interval.n_excluded``.

Intervals
---------
:func:`interval` is the one interval estimate; like rliable's ``get_interval_estimates`` it takes the metric
as an argument: a name from :data:`METRICS` or a :class:`Metric` (e.g. :func:`profile_metric`). The
stratified bootstrap resamples runs with replacement *within each task* (Agarwal et al., arXiv 2108.13264):
``scipy.stats.bootstrap`` with one sample per task and ``paired=False``, so each task's runs are resampled
independently and the statistic concatenates the resampled tasks. All randomness comes from the ``rng``
argument (an int seed, a sequence of ints, or a ``numpy.random.Generator``); equal seeds give bit-identical
intervals. Learning curves (:func:`curve_interval`) are intervals of the IQM at each evaluation point.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.stats

ArrayLike = Any
RngLike = int | Sequence[int] | np.random.Generator

METRIC_LABELS = {
    "iqm": "IQM",
    "mean": "Mean",
    "median": "Median",
    "optimality_gap": "Optimality gap",
    "probability_of_improvement": "P(X > Y)",
    "performance_profile": "Performance profile",
}
CI_METHODS = ("percentile", "BCa", "basic")
DEFAULT_RESAMPLES = 10_000
PAPER_RESAMPLES = 50_000

_BOOTSTRAP_RNG_KW = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
_MAX_BATCH_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------------------------------------
# Input handling


def task_samples(scores: ArrayLike) -> tuple[list[np.ndarray], int]:
    """Split ``scores`` into one 1-D array of finite run scores per task and count excluded entries.

    Accepts a list or tuple of per-task 1-D arrays (ragged allowed), or anything ``numpy.asarray`` turns into
    a 2-D ``[runs, tasks]`` array (a 1-D array is one task). A per-task array with more dimensions is a
    batch ``[..., runs]`` of samples (one per evaluation point, say) and must be finite. Raises ValueError
    when there are no tasks or a task has no finite score.
    """
    if isinstance(scores, (list, tuple)) and len(scores) > 0 and not np.isscalar(scores[0]):
        columns = [np.asarray(c, dtype=float) for c in scores]
        if any(c.ndim > 1 for c in columns):
            if not all(c.ndim > 1 and np.isfinite(c).all() for c in columns):
                raise ValueError("batched per-task samples [..., runs] must all be batched and finite")
            return columns, 0
        columns = [c.ravel() for c in columns]
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
    """Point estimate of a one-score-set ``metric`` (a name in :data:`METRICS`)."""
    m = get_metric(metric, gamma)
    if m.score_sets != 1:
        raise ValueError(f"{m.name} compares {m.score_sets} score sets; use interval()")
    return float(m.statistic(task_samples(scores)[0]))


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


@dataclass(frozen=True)
class Metric:
    """An aggregate metric for :func:`interval`, vectorised over the leading axes of its inputs.

    ``statistic`` gets one list of per-task arrays ``[..., runs]`` per score set (``score_sets`` of them, two
    when it compares two methods) and returns the estimate ``[...]``: a scalar, or a vector such as a profile
    over thresholds. ``prepare``, when given, turns each task's run scores into the array that is resampled.
    """

    name: str
    statistic: Callable[..., np.ndarray]
    score_sets: int = 1
    prepare: Callable[[np.ndarray], np.ndarray] | None = None


METRICS = ("iqm", "mean", "median", "optimality_gap", "probability_of_improvement")


def get_metric(metric: str | Metric, gamma: float = 1.0) -> Metric:
    """The :class:`Metric` named ``metric`` (one of :data:`METRICS`; ``gamma`` for the optimality gap)."""
    if isinstance(metric, Metric):
        return metric
    named = {
        "iqm": Metric("iqm", _iqm),
        "mean": Metric("mean", _mean),
        "median": Metric("median", _median),
        "optimality_gap": Metric("optimality_gap", lambda s: _optimality_gap(s, gamma)),
        "probability_of_improvement": Metric("probability_of_improvement", _poi, score_sets=2),
    }
    if metric not in named:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return named[metric]


def profile_metric(taus: ArrayLike) -> Metric:
    """Performance profile over the thresholds ``taus``: fraction of pooled run scores above each."""
    taus = np.asarray(taus, dtype=float)
    # Each task's runs become an indicator array [tau, runs]: one run resample serves every threshold.
    return Metric(
        "performance_profile",
        lambda samples: np.concatenate(samples, axis=-1).mean(axis=-1),
        prepare=lambda runs: (runs[None, :] > taus[:, None]).astype(float),
    )


# ----------------------------------------------------------------------------------------------------------
# Bootstrap machinery


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval and everything needed to reproduce it."""

    metric: str
    estimate: float | np.ndarray  # arrays for a vector-valued metric (a profile, a batch of curve points)
    low: float | np.ndarray
    high: float | np.ndarray
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
    sets: list[list[np.ndarray]],
    statistic: Callable[..., np.ndarray],
    rng: RngLike,
    n_resamples: int,
    method: str,
    confidence_level: float,
    notes: list[str],
) -> tuple[float, float, str, Any]:
    """Resample whole tasks with replacement, the same tasks for every score set (labelled alternative)."""
    method = _check_method(method)
    gen, seed = make_rng(rng)
    n_tasks = len(sets[0])
    if n_tasks < 2:
        _warn(notes, "task bootstrap needs at least two tasks; interval is NaN")
        return np.nan, np.nan, method, seed

    def stat(idx: np.ndarray) -> float:
        return float(statistic(*[[s[int(i)] for i in idx] for s in sets]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap(
            (np.arange(n_tasks),),
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
# The interval estimate


def _value(a: ArrayLike) -> float | np.ndarray:
    a = np.asarray(a, dtype=float)
    return float(a) if a.ndim == 0 else a


def interval(
    scores: ArrayLike,
    metric: str | Metric = "iqm",
    *,
    rng: RngLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    confidence_level: float = 0.95,
    gamma: float = 1.0,
    task_bootstrap: bool = False,
) -> Interval:
    """Point estimate and bootstrap confidence interval of ``metric`` (a name in :data:`METRICS` or a Metric).

    ``scores`` is one score set, or for a metric that compares score sets (``probability_of_improvement``,
    P(X > Y)) the tuple ``(x, y)`` of them on the same tasks; each set's runs are resampled independently
    within tasks. Vector-valued metrics (:func:`profile_metric`, batched samples) give array estimates and
    bounds. ``task_bootstrap=True`` resamples whole tasks instead (labelled ``scheme="task"``), for one run
    per task. A single run per task without it gives a NaN interval and a RuntimeWarning.
    """
    m = get_metric(metric, gamma)
    score_sets = tuple(scores) if m.score_sets > 1 else (scores,)
    if len(score_sets) != m.score_sets:
        raise ValueError(f"{m.name} takes {m.score_sets} score sets, got {len(score_sets)}")
    sets, excluded = [], 0
    for s in score_sets:
        tasks, n = task_samples(s)
        sets.append([m.prepare(t) for t in tasks] if m.prepare else tasks)
        excluded += n
    n_tasks = len(sets[0])
    if any(len(s) != n_tasks for s in sets):
        raise ValueError(f"the score sets have {[len(s) for s in sets]} tasks; they must match")
    notes = [f"{excluded} non-finite run score(s) excluded"] if excluded else []
    strata = [t for s in sets for t in s]  # one stratum per (score set, task)
    if task_bootstrap:
        low, high, used, seed = _task_bootstrap(
            sets, m.statistic, rng, n_resamples, method, confidence_level, notes
        )
    else:

        def statistic(resampled: list[np.ndarray]) -> np.ndarray:
            return m.statistic(*(resampled[k * n_tasks : (k + 1) * n_tasks] for k in range(len(sets))))

        low, high, used, seed = _stratified(
            strata, statistic, rng, n_resamples, method, confidence_level, notes
        )
    return Interval(
        metric=m.name,
        estimate=_value(m.statistic(*sets)),
        low=_value(low),
        high=_value(high),
        method=used,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        seed=seed,
        runs_per_task=[int(t.shape[-1]) for t in strata],
        n_excluded=excluded,
        scheme="task" if task_bootstrap else "stratified",
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
    """IQM learning curve over runs (and tasks): the :func:`interval` of the IQM at each evaluation point.

    ``curves`` holds one ``[runs, evals]`` array per task (all with the same evaluation grid); NaN marks a
    run without a value at that point. Points are grouped by which runs have data, and each group is one
    interval over the batch of its points (the same run resample for every point of the group).
    """
    arrs = [np.atleast_2d(np.asarray(c, dtype=float)) for c in curves]
    n_evals = arrs[0].shape[1]
    if any(a.shape[1] != n_evals for a in arrs):
        raise ValueError("all tasks' curves must share the evaluation grid")
    xs = np.arange(n_evals, dtype=float) if x is None else np.asarray(x, dtype=float)
    gen, seed = make_rng(rng)
    est, low, high = (np.full(n_evals, np.nan) for _ in range(3))
    n_runs = np.zeros(n_evals, dtype=int)
    masks = np.concatenate([np.isfinite(a) for a in arrs], axis=0)  # [all runs, evals]
    groups: dict[bytes, list[int]] = {}
    for e in range(n_evals):
        groups.setdefault(masks[:, e].tobytes(), []).append(e)
    method_used = _check_method(method)
    bootstrap = {"n_resamples": n_resamples, "method": method, "confidence_level": confidence_level}
    offsets = np.cumsum([0] + [a.shape[0] for a in arrs])
    for key in sorted(groups, key=lambda k: groups[k][0]):
        cols = groups[key]
        mask = masks[:, cols[0]]
        strata = [a[mask[offsets[t] : offsets[t + 1]]][:, cols].T for t, a in enumerate(arrs)]
        strata = [s for s in strata if s.shape[-1] > 0]
        n_runs[cols] = int(mask.sum())
        if len(strata) < len(arrs):
            continue  # a task without data at these points: no estimate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # one run: NaN band, by design
            iv = interval(strata, "iqm", rng=gen, **bootstrap)
        est[cols], low[cols], high[cols] = iv.estimate, iv.low, iv.high
        if iv.method != method_used:
            method_used = iv.method
    provenance = {
        "method": method_used,
        "confidence_level": confidence_level,
        "n_resamples": n_resamples,
        "seed": seed,
    }
    return Band(x=xs, estimate=est, low=low, high=high, n_runs=n_runs, **provenance)
