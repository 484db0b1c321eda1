"""From the tidy table to scores: normalisation and one score per run under a protocol (:data:`PROTOCOLS`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench import normalization, stats
from bench.report.options import PROTOCOLS, ReportError, ReportOptions


def resolve_normalization(table: pd.DataFrame, options: ReportOptions) -> str:
    """The normalisation scheme actually used; raises ReportError when constants are missing."""
    envs = sorted(table["env"].unique())
    scheme = options.normalize
    if scheme == "auto":
        try:
            for env in envs:
                normalization.reference_for(env, options.references)
            scheme = "minmax"
        except KeyError:
            scheme = "none"
    for env in envs:
        try:
            normalization.normalize([0.0], env, scheme, options.references)
        except KeyError as exc:
            raise ReportError(f"--normalize {scheme}: {exc.args[0]}") from None
    return scheme


def add_normalized(table: pd.DataFrame, scheme: str, references: dict | None) -> pd.DataFrame:
    """Fill the ``normalized`` column (NaN without normalisation) and the internal ``score`` column."""
    table = table.copy()
    table["normalized"] = np.nan
    for env, idx in table.groupby("env").groups.items():
        if scheme != "none":
            table.loc[idx, "normalized"] = normalization.normalize(
                table.loc[idx, "return"], str(env), scheme, references
            )
    table["score"] = table["return"] if scheme == "none" else table["normalized"]
    return table


def _run_curves(group: pd.DataFrame, xcol: str) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    out = []
    for run, g in group.groupby("run", sort=True):
        g = g[np.isfinite(g[xcol]) & np.isfinite(g["score"])].sort_values(xcol)
        if len(g):
            out.append((run, g[xcol].to_numpy(), g["score"].to_numpy()))
    return out


def align(group: pd.DataFrame, xcol: str, n_points: int) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Runs of one (algo, env) on a common x grid: ``(x, Y[runs, points], run ids)``.

    Runs logged at identical x values keep them; otherwise each run is linearly interpolated onto
    ``n_points`` evenly spaced points and is NaN outside its own logged range (no extrapolation).
    """
    curves = _run_curves(group, xcol)
    if not curves:
        return np.empty(0), np.empty((0, 0)), []
    first = curves[0][1]
    if all(c[1].shape == first.shape and np.array_equal(c[1], first) for c in curves):
        return first.astype(float), np.stack([c[2] for c in curves]), [c[0] for c in curves]
    lo, hi = min(c[1][0] for c in curves), max(c[1][-1] for c in curves)
    grid = np.linspace(lo, hi, n_points)
    ys = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for _, x, y in curves])
    return grid, ys, [c[0] for c in curves]


def _protocol_axis(group: pd.DataFrame) -> str:
    for col in ("env_steps", "train_time_s"):
        if np.isfinite(group[col]).all():
            return col
    return "row"


def _score_row(algo: str, env: str, seed: Any, run: Any, env_steps: float, ret: float, score: float) -> dict:
    return {
        "algo": algo,
        "env": env,
        "seed": int(seed),
        "run": run,
        "env_steps": env_steps,
        "return": ret,
        "score": score,
    }


def run_scores(table: pd.DataFrame, protocol: str, n_points: int = 200) -> pd.DataFrame:
    """One score per run under ``protocol`` (``final`` or ``best``; see :data:`PROTOCOLS`)."""
    if protocol not in PROTOCOLS:
        raise ReportError(f"unknown protocol {protocol!r}; choose {', '.join(PROTOCOLS)}")
    rows = []
    for (algo, env), group in table.groupby(["algo", "env"], sort=True):
        seeds = group.groupby("run")["seed"].first()
        if protocol == "final":
            for run, g in group.groupby("run", sort=True):
                g = g.sort_values("env_steps", kind="stable") if np.isfinite(g["env_steps"]).all() else g
                last = g.iloc[-1]
                rows.append(
                    _score_row(algo, env, last["seed"], run, last["env_steps"], last["return"], last["score"])
                )
            continue
        xcol = _protocol_axis(group)
        if xcol == "row":
            group = group.assign(row=group.groupby("run").cumcount().astype(float))
        valid = group[np.isfinite(group["score"])]  # same rows for both: same grid, same run order
        x, sc, ids = align(valid, xcol, n_points)
        _, ys, _ = align(valid.assign(score=valid["return"]), xcol, n_points)
        # Peak of the IQM curve over points where every run has a value (no survivor bias); runs that do not
        # overlap at all fall back to points with at least half of the runs.
        present = np.isfinite(sc).sum(axis=0)
        ok = present == len(ids)
        if not ok.any():
            ok = present >= max(1, math.ceil(len(ids) / 2))
        iqm = np.full(x.shape, -np.inf)
        for e in np.flatnonzero(ok):
            col = sc[:, e][np.isfinite(sc[:, e])]
            iqm[e] = stats.iqm(col)
        peak = int(np.argmax(iqm)) if iqm.size else 0
        for run in sorted(set(seeds.index) - set(ids)):  # no finite score anywhere: excluded and counted
            rows.append(_score_row(algo, env, seeds[run], run, np.nan, np.nan, np.nan))
        for i, run in enumerate(ids):
            steps = x[peak] if xcol == "env_steps" else np.nan
            rows.append(_score_row(algo, env, seeds[run], run, steps, ys[i, peak], sc[i, peak]))
    out = pd.DataFrame(rows, columns=["algo", "env", "seed", "run", "env_steps", "return", "score"])
    out.insert(4, "protocol", protocol)
    return out
