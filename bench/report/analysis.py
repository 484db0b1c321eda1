"""Every estimate of a report: per-env and aggregate intervals, probability of improvement, performance
profiles and learning curves, each from its own seeded generator."""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from bench import plotting, stats
from bench.report.options import ReportOptions
from bench.report.scores import align

CURVE_AXES = {"env_steps": "env_steps", "wall_clock": "train_time_s"}


@dataclass
class Analysis:
    """All estimates of one report."""

    algos: list[str]
    envs: list[str]
    scheme: str
    aggregate_algos: list[str]
    per_env: dict[tuple[str, str], stats.Interval]
    aggregate: dict[str, dict[str, stats.Interval]]
    poi: dict[tuple[str, str], stats.Interval]
    poi_env: dict[tuple[str, str, str], stats.Interval]
    taus: np.ndarray
    profiles: dict[str, stats.Interval]
    curves: dict[str, dict[tuple[str, str], stats.Band]]
    notes: list[str]


def _rng(seed: int, key: str) -> list[int]:
    """Per-estimate generator seed: independent of which other estimates a report computes."""
    return [int(seed), zlib.crc32(key.encode())]


def _bootstrap(options: ReportOptions) -> dict[str, Any]:
    return {
        "n_resamples": options.n_resamples,
        "method": options.ci_method,
        "confidence_level": options.confidence_level,
    }


def _algo_order(algos: Any) -> list[str]:
    """Spec order (PWM, SHAC, PPO, SAC, TD-MPC2, AHAC, BPTT), then other algorithms by name."""
    known = list(plotting.ALGO_COLORS)
    key = plotting.algo_key
    return sorted(algos, key=lambda a: (known.index(key(a)) if key(a) in known else len(known), a))


def _finite(x: np.ndarray | None) -> bool:
    return x is not None and bool(np.isfinite(x).any())


def analyse(table: pd.DataFrame, scores: pd.DataFrame, scheme: str, options: ReportOptions) -> Analysis:
    """Per-env and aggregate intervals, POI, profiles and curves of a tidy table and its run scores."""
    algos = _algo_order(table["algo"].unique())
    envs = sorted(table["env"].unique())
    notes: list[str] = []
    kw = _bootstrap(options)
    cells: dict[tuple[str, str], np.ndarray] = {
        (a, e): g["score"].to_numpy(dtype=float) for (a, e), g in scores.groupby(["algo", "env"])
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        per_env = {
            (algo, env): stats.interval([x], "iqm", rng=_rng(options.seed, f"iqm|{algo}|{env}"), **kw)
            for (algo, env), x in cells.items()
            if _finite(x)
        }
        poi_env = {
            (a, b, env): stats.interval(
                ([cells[(a, env)]], [cells[(b, env)]]),
                "probability_of_improvement",
                rng=_rng(options.seed, f"poi|{a}|{b}|{env}"),
                **kw,
            )
            for env in envs
            for a in algos
            for b in algos
            if a != b and _finite(cells.get((a, env))) and _finite(cells.get((b, env)))
        }
        full = [a for a in algos if all(_finite(cells.get((a, e))) for e in envs)]
        for a in algos:
            if a not in full:
                notes.append(
                    f"{a}: no finite scores on {[e for e in envs if (a, e) not in per_env]}; "
                    "left out of the cross-env aggregates"
                )
        aggregate: dict[str, dict[str, stats.Interval]] = {}
        profiles: dict[str, stats.Interval] = {}
        taus = np.empty(0)
        metrics = ["iqm", "mean"] + (["optimality_gap"] if scheme != "none" else [])
        scale_free = scheme != "none" or len(envs) == 1
        if not scale_free:
            notes.append(
                "raw returns on several envs: IQM/mean aggregates and profiles need normalised scores "
                "(--normalize); only per-env estimates and POI are reported"
            )
        if scale_free and full:
            for metric in metrics:
                aggregate[metric] = {
                    a: stats.interval(
                        [cells[(a, e)] for e in envs],
                        metric,
                        rng=_rng(options.seed, f"{metric}|{a}"),
                        task_bootstrap=options.task_bootstrap,
                        **kw,
                    )
                    for a in full
                }
            pooled = np.concatenate([cells[(a, e)] for a in full for e in envs])
            pooled = pooled[np.isfinite(pooled)]
            lo, hi = options.tau or (float(pooled.min()), float(pooled.max()))
            pad = 0.02 * (hi - lo) if options.tau is None else 0.0
            taus = np.linspace(lo - pad, hi + pad, 101)
            profile = stats.profile_metric(taus)
            for a in full:
                profiles[a] = stats.interval(
                    [cells[(a, e)] for e in envs], profile, rng=_rng(options.seed, f"profile|{a}"), **kw
                )
        poi = {
            (a, b): stats.interval(
                ([cells[(a, e)] for e in envs], [cells[(b, e)] for e in envs]),
                "probability_of_improvement",
                rng=_rng(options.seed, f"poi|{a}|{b}"),
                **kw,
            )
            for a in full
            for b in full
            if a != b
        }
        curves = {name: _curves(table, col, options) for name, col in CURVE_AXES.items()}
    for w in caught:
        msg = str(w.message)
        if msg not in notes:
            notes.append(msg)
    return Analysis(
        algos, envs, scheme, full, per_env, aggregate, poi, poi_env, taus, profiles, curves, notes
    )


def _curves(table: pd.DataFrame, xcol: str, options: ReportOptions) -> dict[tuple[str, str], stats.Band]:
    """IQM curve per (algo, env) with a per-point band; points with under half the runs' data are dropped."""
    out = {}
    for (algo, env), group in table.groupby(["algo", "env"], sort=True):
        x, ys, ids = align(group, xcol, options.curve_points)
        if not ids or x.size < 2:
            continue
        band = stats.curve_interval(
            [ys],
            x,
            rng=_rng(options.seed, f"curve|{xcol}|{algo}|{env}"),
            n_resamples=options.curve_resamples,
            method=options.ci_method,
            confidence_level=options.confidence_level,
        )
        keep = band.n_runs >= max(1, math.ceil(len(ids) / 2))
        est, low, high = (np.where(keep, v, np.nan) for v in (band.estimate, band.low, band.high))
        out[(algo, env)] = replace(band, estimate=est, low=low, high=high)
    return out
