"""``python -m bench.report RESULTS_DIR --out FIG_DIR``: statistics, figures and tables from run directories.

Reads every run's ``eval.csv`` (``bench.rundir``) into one tidy table, lists missing and incomplete runs,
and writes (evaluation spec §7-8): learning curves against env steps and training wall-clock (IQM with a
95% band per env), the aggregate interval plot, performance profiles, the probability-of-improvement
matrix, a booktabs LaTeX table, tidy CSVs and ``stats.json``. The library entry point is
:func:`make_report`, which works on any tidy table (``bench.published`` feeds it the paper's curves).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import plotting, stats
from bench.plotting import write_file
from bench.rundir import CONFIG, find_runs, read_eval, read_json, read_summary

TIDY_COLUMNS = (
    "algo",
    "env",
    "seed",
    "run",
    "env_steps",
    "wall_time_s",
    "train_time_s",
    "return",
    "normalized",
)
PROTOCOLS = {
    "final": "final: each run's last logged score (the final policy at the end of its budget)",
    "best": "best-over-training (optimistic): each run's value where its method's IQM curve on the env peaks",
}
NORMALIZATIONS = ("auto", "none", "minmax", "ppo_max")
CURVE_AXES = {"env_steps": "env_steps", "wall_clock": "train_time_s"}


class ReportError(ValueError):
    """Bad input for a report (the CLI turns it into exit code 2)."""


@dataclass
class ReportOptions:
    """Everything that shapes a report; recorded in ``stats.json``."""

    protocol: str = "final"
    normalize: str = "auto"
    references: dict[str, list[float]] | None = None
    n_resamples: int = stats.DEFAULT_RESAMPLES
    curve_resamples: int = 2_000
    seed: int = 0
    ci_method: str = "percentile"
    confidence_level: float = 0.95
    curve_points: int = 200
    smooth: float = 0.0
    tau: tuple[float, float] | None = None
    task_bootstrap: bool = False
    formats: tuple[str, ...] = ("pdf", "png")
    write_run_data: bool = True  # runs.csv / runs.parquet, scores.csv, curves.csv (per-run or per-point data)
    data_label: str = "mean return of the deterministic evaluation episodes (return_mean)"
    source: str = ""
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# Reading run directories


def load_runs(results_dir: str | Path, include_incomplete: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read all runs below ``results_dir``.

    Returns ``(table, runs)``: the tidy table of evaluation rows of the runs used (``env_steps`` counts the
    env steps consumed, training plus offline data as ``data_env_steps``), and one row per run dir
    found (``run, algo, env, seed, status, n_evals, used``). Status is ``complete``, ``incomplete``
    (summary.json missing or its status is not "complete"), ``no-evaluations`` or ``unreadable``.
    """
    root = Path(results_dir)
    frames, rows = [], []
    for run_dir in find_runs(root):
        row = {"run": str(run_dir.relative_to(root)), "algo": None, "env": None, "seed": None, "n_evals": 0}
        try:
            config = read_json(run_dir / CONFIG)
            row.update(algo=str(config["algo"]), env=str(config["env"]), seed=int(config["seed"]))
            ev = read_eval(run_dir)
            summary = read_summary(run_dir)
        except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError) as exc:
            rows.append({**row, "status": f"unreadable ({type(exc).__name__}: {exc})", "used": False})
            continue
        if ev.empty:
            status = "no-evaluations"
        elif summary is None:
            status = "incomplete (no summary.json)"
        elif summary.get("status") != "complete":
            status = f"incomplete (status {summary.get('status')!r})"
        else:
            status = "complete"
        used = status == "complete" or (include_incomplete and not ev.empty)
        rows.append({**row, "status": status, "n_evals": len(ev), "used": used})
        if used:
            frames.append(ev.assign(run=row["run"]))
    runs = pd.DataFrame(rows, columns=["run", "algo", "env", "seed", "status", "n_evals", "used"])
    runs["seed"] = runs["seed"].astype("Int64")
    if not frames:
        return pd.DataFrame(columns=list(TIDY_COLUMNS)), runs
    ev = pd.concat(frames, ignore_index=True)
    table = pd.DataFrame(
        {
            "algo": ev["algo"].astype(str),
            "env": ev["env"].astype(str),
            "seed": ev["seed"].astype(int),
            "run": ev["run"],
            # Env steps consumed: training plus those that generated offline data (evaluation spec §1).
            "env_steps": ev["env_steps"].astype(float) + ev["data_env_steps"].fillna(0).astype(float),
            "wall_time_s": ev["wall_time_s"].astype(float),
            "train_time_s": ev["train_time_s"].astype(float),
            "return": ev["return_mean"].astype(float),
        }
    )
    return table, runs


def coverage_report(table: pd.DataFrame, runs: pd.DataFrame | None = None) -> list[str]:
    """Human-readable lines on missing (algo, env, seed) cells and runs left out of the report."""
    lines = []
    if runs is not None:
        for r in runs[~runs["used"]].itertuples():
            lines.append(f"left out: {r.run} ({r.algo}/{r.env} seed {r.seed}): {r.status}")
        for r in runs[runs["used"] & (runs["status"] != "complete")].itertuples():
            lines.append(f"included although not complete: {r.run}: {r.status}")
    if table.empty:
        return lines
    for algo in sorted(table["algo"].unique()):
        sub = table[table["algo"] == algo]
        all_seeds = set(sub["seed"].unique())  # an algorithm's seeds on any env are expected on every env
        for env in sorted(table["env"].unique()):
            seeds = set(sub.loc[sub["env"] == env, "seed"].unique())
            if not seeds:
                lines.append(f"missing: {algo} has no runs on {env}")
            elif all_seeds - seeds:
                lines.append(f"missing: {algo}/{env} seeds {sorted(int(s) for s in all_seeds - seeds)}")
            dup = sub[sub["env"] == env].groupby("seed")["run"].nunique()
            for seed in dup[dup > 1].index:
                lines.append(f"duplicate: {algo}/{env} seed {seed} has {dup[seed]} runs (all used)")
    return lines


# ----------------------------------------------------------------------------------------------------------
# Scores


def resolve_normalization(table: pd.DataFrame, options: ReportOptions) -> str:
    """The normalisation scheme actually used; raises ReportError when constants are missing."""
    envs = sorted(table["env"].unique())
    scheme = options.normalize
    if scheme == "auto":
        try:
            for env in envs:
                stats.reference_for(env, options.references)
            scheme = "minmax"
        except KeyError:
            scheme = "none"
    for env in envs:
        try:
            stats.normalize([0.0], env, scheme, options.references)
        except KeyError as exc:
            raise ReportError(f"--normalize {scheme}: {exc.args[0]}") from None
    return scheme


def add_normalized(table: pd.DataFrame, scheme: str, references: dict | None) -> pd.DataFrame:
    """Fill the ``normalized`` column (NaN without normalisation) and the internal ``score`` column."""
    table = table.copy()
    table["normalized"] = np.nan
    for env, idx in table.groupby("env").groups.items():
        if scheme != "none":
            table.loc[idx, "normalized"] = stats.normalize(
                table.loc[idx, "return"], str(env), scheme, references
            )
    table["score"] = table["return"] if scheme == "none" else table["normalized"]
    return table


def _rng(seed: int, key: str) -> list[int]:
    """Per-estimate generator seed: independent of which other estimates a report computes."""
    return [int(seed), zlib.crc32(key.encode())]


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


def run_scores(table: pd.DataFrame, protocol: str, n_points: int = 200) -> pd.DataFrame:
    """One score per run under ``protocol`` (``final`` or ``best``; see :data:`PROTOCOLS`)."""
    rows = []
    for (algo, env), group in table.groupby(["algo", "env"], sort=True):
        seeds = group.groupby("run")["seed"].first()
        if protocol == "final":
            for run, g in group.groupby("run", sort=True):
                g = g.sort_values("env_steps", kind="stable") if np.isfinite(g["env_steps"]).all() else g
                last = g.iloc[-1]
                rows.append(
                    {
                        "algo": algo,
                        "env": env,
                        "seed": int(last["seed"]),
                        "run": run,
                        "env_steps": last["env_steps"],
                        "return": last["return"],
                        "score": last["score"],
                    }
                )
            continue
        if protocol != "best":
            raise ReportError(f"unknown protocol {protocol!r}; choose {', '.join(PROTOCOLS)}")
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
            rows.append(
                {
                    "algo": algo,
                    "env": env,
                    "seed": int(seeds[run]),
                    "run": run,
                    "env_steps": np.nan,
                    "return": np.nan,
                    "score": np.nan,
                }
            )
        for i, run in enumerate(ids):
            rows.append(
                {
                    "algo": algo,
                    "env": env,
                    "seed": int(seeds[run]),
                    "run": run,
                    "env_steps": x[peak] if xcol == "env_steps" else np.nan,
                    "return": ys[i, peak],
                    "score": sc[i, peak],
                }
            )
    out = pd.DataFrame(rows, columns=["algo", "env", "seed", "run", "env_steps", "return", "score"])
    out.insert(4, "protocol", protocol)
    return out


# ----------------------------------------------------------------------------------------------------------
# Statistics


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
    profiles: dict[str, stats.Band]
    curves: dict[str, dict[tuple[str, str], stats.Band]]
    notes: list[str]


def _kw(options: ReportOptions) -> dict[str, Any]:
    return {
        "n_resamples": options.n_resamples,
        "method": options.ci_method,
        "confidence_level": options.confidence_level,
    }


def analyse(table: pd.DataFrame, scores: pd.DataFrame, scheme: str, options: ReportOptions) -> Analysis:
    """Per-env and aggregate intervals, POI, profiles and curves of a tidy table and its run scores."""
    known = list(plotting.ALGO_COLORS)  # spec order: PWM, SHAC, PPO, SAC, TD-MPC2, AHAC, BPTT, then others
    algos = sorted(
        table["algo"].unique(),
        key=lambda a: (known.index(plotting.algo_key(a)) if plotting.algo_key(a) in known else len(known), a),
    )
    envs = sorted(table["env"].unique())
    notes: list[str] = []
    kw = _kw(options)
    cells: dict[tuple[str, str], np.ndarray] = {
        (a, e): g["score"].to_numpy(dtype=float) for (a, e), g in scores.groupby(["algo", "env"])
    }
    per_env, poi_env = {}, {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for (algo, env), x in cells.items():
            if np.isfinite(x).any():
                per_env[(algo, env)] = stats.interval(
                    [x], "iqm", rng=_rng(options.seed, f"iqm|{algo}|{env}"), **kw
                )
        for env in envs:
            for a in algos:
                for b in algos:
                    xa, xb = cells.get((a, env)), cells.get((b, env))
                    if (
                        a != b
                        and xa is not None
                        and xb is not None
                        and np.isfinite(xa).any()
                        and np.isfinite(xb).any()
                    ):
                        poi_env[(a, b, env)] = stats.poi_interval(
                            [xa], [xb], rng=_rng(options.seed, f"poi|{a}|{b}|{env}"), **kw
                        )
        full = [a for a in algos if all((a, e) in cells and np.isfinite(cells[(a, e)]).any() for e in envs)]
        for a in algos:
            if a not in full:
                notes.append(
                    f"{a}: no finite scores on {[e for e in envs if (a, e) not in per_env]}; "
                    "left out of the cross-env aggregates"
                )
        aggregate: dict[str, dict[str, stats.Interval]] = {}
        profiles: dict[str, stats.Band] = {}
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
            for a in full:
                profiles[a] = stats.profile_interval(
                    [cells[(a, e)] for e in envs], taus, rng=_rng(options.seed, f"profile|{a}"), **kw
                )
        poi = {
            (a, b): stats.poi_interval(
                [cells[(a, e)] for e in envs],
                [cells[(b, e)] for e in envs],
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
    return Analysis(algos, envs, scheme, full, per_env, aggregate, poi, poi_env, profiles, curves, notes)


def _ewm(y: np.ndarray, alpha: float) -> np.ndarray:
    return pd.Series(y).ewm(alpha=alpha, ignore_na=True).mean().to_numpy() if alpha > 0 else y


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


# ----------------------------------------------------------------------------------------------------------
# Outputs


def _fmt(iv: stats.Interval | None, digits: int) -> str:
    if iv is None:
        return "--"
    if not (np.isfinite(iv.low) and np.isfinite(iv.high)):
        return f"{iv.estimate:.{digits}f} [n/a]"
    return f"{iv.estimate:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def _best(
    row: dict[str, stats.Interval], poi: dict[tuple[str, str], stats.Interval], lower_better: bool
) -> str | None:
    """The algorithm to set in bold: best estimate whose CI clears every other CI or whose POI CI is > 0.5."""
    if len(row) < 2:
        return None
    sign = -1 if lower_better else 1
    best = max(row, key=lambda a: sign * row[a].estimate)
    for other, iv in row.items():
        if other == best:
            continue
        separated = row[best].low > iv.high if not lower_better else row[best].high < iv.low
        p = poi.get((best, other))
        if not (separated or (p is not None and p.low > 0.5)):
            return None
    return best


def latex_table(an: Analysis, options: ReportOptions, runs_per_cell: dict[tuple[str, str], int]) -> str:
    """Booktabs table: per-env IQM [lo, hi] and the cross-env aggregates, one column per algorithm."""
    digits = 2 if an.scheme != "none" else 0
    cols = an.algos
    esc = _latex_escape
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "c" * len(cols) + "}",
        r"\toprule",
        "Env & " + " & ".join(esc(plotting.algo_label(a)) for a in cols) + r" \\",
        r"\midrule",
    ]

    def add_row(name: str, row: dict[str, stats.Interval], poi: dict, lower_better: bool = False) -> None:
        bold = _best(row, poi, lower_better)
        cells = [(r"\textbf{%s}" if a == bold else "%s") % _fmt(row.get(a), digits) for a in cols]
        lines.append(esc(name) + " & " + " & ".join(cells) + r" \\")

    for env in an.envs:
        row = {a: an.per_env[(a, env)] for a in cols if (a, env) in an.per_env}
        add_row(env + " (IQM)", row, {(a, b): v for (a, b, e), v in an.poi_env.items() if e == env})
    if an.aggregate:
        lines.append(r"\midrule")
        for metric, row in an.aggregate.items():
            add_row(
                f"All envs ({stats.METRIC_LABELS[metric]})", dict(row), an.poi, metric == "optimality_gap"
            )
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + esc(caption(an, options, runs_per_cell)) + "}",
        r"\label{tab:warpbench-results}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
    ):
        text = text.replace(a, b)
    return text


def caption(an: Analysis, options: ReportOptions, runs_per_cell: dict[tuple[str, str], int]) -> str:
    """Caption text: seeds, protocol, CI method and resamples, raw vs normalised."""
    counts = sorted(set(runs_per_cell.values()))
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    score = {
        "none": "raw returns",
        "minmax": "min-max normalised scores (warpbench reference scores)",
        "ppo_max": "scores normalised by PPO's maximum training return (PWM paper)",
    }[an.scheme]
    return (
        f"IQM [{options.confidence_level:.0%} CI] of {score}; protocol {PROTOCOLS[options.protocol]}; "
        f"{seeds} seeds per env; score = {options.data_label}. Intervals: stratified bootstrap over seeds "
        f"within each env, {options.ci_method} method, {options.n_resamples} resamples, seed {options.seed}. "
        "Bold: best entry whose CI does not overlap the others' (or whose probability of improvement has a "
        "CI above 0.5)."
    )


def _interval_rows(an: Analysis, options: ReportOptions, scheme: str) -> pd.DataFrame:
    rows = []
    common = {"protocol": options.protocol, "normalization": scheme}
    for (algo, env), iv in an.per_env.items():
        rows.append({"algo": algo, "env": env, **_iv_row(iv), **common})
    for row in an.aggregate.values():
        for algo, iv in row.items():
            rows.append({"algo": algo, "env": "all", **_iv_row(iv), **common})
    for (a, b), iv in an.poi.items():
        rows.append({"algo": a, "env": "all", **_iv_row(iv), "versus": b, **common})
    for (a, b, env), iv in an.poi_env.items():
        rows.append({"algo": a, "env": env, **_iv_row(iv), "versus": b, **common})
    return pd.DataFrame(rows)


def _iv_row(iv: stats.Interval) -> dict[str, Any]:
    return {
        "metric": iv.metric,
        "estimate": iv.estimate,
        "low": iv.low,
        "high": iv.high,
        "n_runs": int(sum(iv.runs_per_task)),
        "n_excluded": iv.n_excluded,
        "method": iv.method,
        "resamples": iv.n_resamples,
        "confidence_level": iv.confidence_level,
        "scheme": iv.scheme,
    }


def _curve_rows(an: Analysis) -> pd.DataFrame:
    frames = []
    for axis, curves in an.curves.items():
        for (algo, env), b in curves.items():
            frames.append(
                pd.DataFrame(
                    {
                        "axis": axis,
                        "algo": algo,
                        "env": env,
                        "x": b.x,
                        "iqm": b.estimate,
                        "low": b.low,
                        "high": b.high,
                        "n_runs": b.n_runs,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_file(path, frame.to_csv(index=False, float_format="%.6g").encode())


def make_report(
    table: pd.DataFrame, out_dir: str | Path, options: ReportOptions, runs: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Compute every statistic for the tidy ``table`` and write figures, tables and ``stats.json``.

    ``table`` needs the columns ``algo, env, seed, run, env_steps, train_time_s, return`` (NaN where a
    quantity was not logged). Returns the content written to ``stats.json``.
    """
    if table.empty:
        raise ReportError("no evaluation rows to report on")
    if options.protocol not in PROTOCOLS:
        raise ReportError(f"unknown protocol {options.protocol!r}; choose {', '.join(PROTOCOLS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheme = resolve_normalization(table, options)
    table = add_normalized(table, scheme, options.references)
    scores = run_scores(table, options.protocol, options.curve_points)
    an = analyse(table, scores, scheme, options)
    coverage = coverage_report(table, runs)
    runs_per_cell = {k: int(np.isfinite(g["score"]).sum()) for k, g in scores.groupby(["algo", "env"])}
    written: list[Path] = []

    if options.write_run_data:
        tidy = table[list(TIDY_COLUMNS)].assign(protocol=options.protocol)
        written.append(_write_csv(out / "runs.csv", tidy))
        if importlib.util.find_spec("pyarrow") is not None:
            buf = io.BytesIO()
            tidy.to_parquet(buf, index=False)
            write_file(out / "runs.parquet", buf.getvalue())
            written.append(out / "runs.parquet")
        written.append(
            _write_csv(
                out / "scores.csv",
                scores.rename(columns={"score": "normalized"}).assign(
                    normalized=lambda f: f["normalized"] if scheme != "none" else np.nan
                ),
            )
        )
    written.append(_write_csv(out / "aggregate.csv", _interval_rows(an, options, scheme)))
    curve_rows = _curve_rows(an)
    if options.write_run_data and not curve_rows.empty:
        written.append(_write_csv(out / "curves.csv", curve_rows))
    written.append(write_file(out / "table.tex", latex_table(an, options, runs_per_cell).encode()))
    written += _figures(an, options, out)

    result = {
        "tool": "bench.report",
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": options.source,
        "score": options.data_label,
        "protocol": options.protocol,
        "protocol_label": PROTOCOLS[options.protocol],
        "normalization": {"scheme": scheme, **_norm_constants(an.envs, scheme, options.references)},
        "bootstrap": {
            "scheme": "task-resampling (whole envs resampled)"
            if options.task_bootstrap
            else "stratified: runs resampled with replacement within each env "
            "(scipy.stats.bootstrap, paired=False, one sample per env)",
            "method": options.ci_method,
            "resamples": options.n_resamples,
            "curve_resamples": options.curve_resamples,
            "confidence_level": options.confidence_level,
            "seed": options.seed,
            "generator": "numpy.random.default_rng([seed, zlib.crc32(key)]) per estimate, "
            "key e.g. 'iqm|<algo>'",
        },
        "algos": an.algos,
        "envs": an.envs,
        "aggregate_algos": an.aggregate_algos,
        "runs_per_task": {a: {e: runs_per_cell.get((a, e), 0) for e in an.envs} for a in an.algos},
        "excluded_runs": {
            f"{a}/{e}": int((~np.isfinite(g["score"])).sum())
            for (a, e), g in scores.groupby(["algo", "env"])
            if (~np.isfinite(g["score"])).any()
        },
        "coverage": coverage,
        "notes": options.notes + an.notes,
        "aggregate": {m: {a: iv.to_dict() for a, iv in row.items()} for m, row in an.aggregate.items()},
        "per_env": {f"{a}/{e}": iv.to_dict() for (a, e), iv in an.per_env.items()},
        "probability_of_improvement": {f"{a} > {b}": iv.to_dict() for (a, b), iv in an.poi.items()},
        "files": sorted(p.name for p in written) + ["stats.json"],
    }
    write_file(out / "stats.json", (json.dumps(result, indent=2, default=_json_default) + "\n").encode())
    return result


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _norm_constants(envs: list[str], scheme: str, references: dict | None) -> dict[str, Any]:
    if scheme == "ppo_max":
        return {"ppo_max": {e: stats.PPO_MAX_RETURNS[stats.env_key(e)] for e in envs}}
    if scheme == "minmax":
        source = (
            "--reference file" if references is not None else f"bench.stats v{stats.REFERENCE_SCORES_VERSION}"
        )
        return {"r_min_r_ref": {e: stats.reference_for(e, references) for e in envs}, "source": source}
    return {}


def _figures(an: Analysis, options: ReportOptions, out: Path) -> list[Path]:
    ylabel = "Return" if an.scheme == "none" else "Normalised score"
    tag = " (best over training: optimistic)" if options.protocol == "best" else ""
    written = []
    with plotting.style():
        for axis, curves in an.curves.items():
            if not curves:
                continue
            shown = {
                k: replace(
                    b,
                    estimate=_ewm(b.estimate, options.smooth),
                    low=_ewm(b.low, options.smooth),
                    high=_ewm(b.high, options.smooth),
                )
                for k, b in curves.items()
            }
            envs = [e for e in an.envs if any(k[1] == e for k in shown)]
            algos = [a for a in an.algos if any(k[0] == a for k in shown)]
            fig = plotting.plot_curves(
                shown, algos, envs, "env_steps" if axis == "env_steps" else "time", ylabel
            )
            written += plotting.save(fig, out, f"curves_{axis}", options.formats)
        if an.aggregate:
            fig = plotting.plot_aggregate(an.aggregate, an.aggregate_algos, ylabel + tag)
            written += plotting.save(fig, out, "aggregate", options.formats)
        if an.profiles:
            fig = plotting.plot_profiles(
                an.profiles, an.aggregate_algos, r"$\tau$ (" + ylabel.lower() + ")" + tag
            )
            written += plotting.save(fig, out, "profiles", options.formats)
        if an.poi:
            fig = plotting.plot_poi(an.poi, an.aggregate_algos)
            written += plotting.save(fig, out, "poi", options.formats)
    return written


# ----------------------------------------------------------------------------------------------------------
# Command line


def add_analysis_options(
    parser: argparse.ArgumentParser, resamples: int = stats.DEFAULT_RESAMPLES, normalize: str = "auto"
) -> None:
    """Options shared by ``bench.report`` and ``bench.published``."""
    g = parser.add_argument_group("statistics")
    g.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="final",
        help="per-run score: 'final' = the last evaluation (final policy at the budget; default); "
        "'best' = each run's value at the evaluation point where its method's IQM curve peaks "
        "(optimistic, labelled as such in every output)",
    )
    g.add_argument(
        "--normalize",
        choices=NORMALIZATIONS,
        default=normalize,
        help="score scale: 'none' = raw returns; 'minmax' = (R - R_min) / (R_ref - R_min) with "
        "reference scores (--reference or the constants stored in bench.stats); 'ppo_max' = "
        "divide by PPO's maximum training return (PWM paper constants; paper reproduction only); "
        "'auto' = minmax when every env has reference scores, else none (default: %(default)s)",
    )
    g.add_argument(
        "--reference",
        type=Path,
        metavar="JSON",
        help='reference scores for --normalize minmax/auto: {"Ant": [R_min, R_ref], ...}',
    )
    g.add_argument(
        "--resamples",
        type=int,
        default=resamples,
        help="bootstrap resamples for intervals, POI and profiles (default: %(default)s; the spec "
        "asks 50000 for paper figures)",
    )
    g.add_argument(
        "--curve-resamples",
        type=int,
        default=2000,
        help="bootstrap resamples per learning-curve point (default: %(default)s)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the numpy generators behind every interval; same seed, same numbers "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--ci-method",
        type=str.lower,
        choices=["percentile", "bca", "basic"],
        default="percentile",
        help="bootstrap interval method (default: %(default)s; BCa falls back to percentile with a "
        "note where the data are degenerate)",
    )
    g.add_argument(
        "--confidence-level",
        type=float,
        default=0.95,
        help="confidence level of every interval (default: %(default)s)",
    )
    g.add_argument(
        "--task-bootstrap",
        action="store_true",
        help="resample whole envs instead of runs within envs for the aggregates (labelled; for "
        "one run per env)",
    )
    g.add_argument(
        "--tau",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="threshold range of the performance profiles (default: the range of the scores)",
    )
    g.add_argument(
        "--curve-points",
        type=int,
        default=200,
        help="grid size when runs are logged at different x values and must be interpolated "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="EWM smoothing factor in [0, 1) applied to the drawn curves only (data and CSVs stay "
        "raw; default: 0 = none)",
    )
    g.add_argument(
        "--formats", default="pdf,png", help="figure formats, comma separated (default: %(default)s)"
    )


def options_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, **extra: Any
) -> ReportOptions:
    """Validate the shared options (``parser.error`` exits with code 2) and build ReportOptions."""
    if args.resamples < 10 or args.curve_resamples < 10:
        parser.error("--resamples and --curve-resamples must be at least 10")
    if not 0 < args.confidence_level < 1:
        parser.error("--confidence-level must be between 0 and 1")
    if not 0 <= args.smooth < 1:
        parser.error("--smooth must be in [0, 1)")
    if args.curve_points < 2:
        parser.error("--curve-points must be at least 2")
    if args.tau is not None and not args.tau[0] < args.tau[1]:
        parser.error("--tau LO HI needs LO < HI")
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    if not formats or any(f not in ("pdf", "png", "svg") for f in formats):
        parser.error("--formats takes a comma-separated subset of pdf, png, svg")
    references = None
    if args.reference is not None:
        try:
            references = json.loads(Path(args.reference).read_text())
            if not all(len(v) == 2 for v in references.values()):
                raise ValueError("every value must be [R_min, R_ref]")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            parser.error(f"--reference {args.reference}: {exc}")
    method = {"bca": "BCa"}.get(args.ci_method, args.ci_method)
    return ReportOptions(
        protocol=args.protocol,
        normalize=args.normalize,
        references=references,
        n_resamples=args.resamples,
        curve_resamples=args.curve_resamples,
        seed=args.seed,
        ci_method=method,
        confidence_level=args.confidence_level,
        curve_points=args.curve_points,
        smooth=args.smooth,
        tau=tuple(args.tau) if args.tau else None,
        task_bootstrap=args.task_bootstrap,
        formats=formats,
        **extra,
    )


def check_out_dir(parser: argparse.ArgumentParser, out: Path) -> None:
    """Exit 2 unless ``out`` is (or can become) a directory."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a directory")


def print_summary(result: dict[str, Any], out: Path) -> None:
    """Console summary: coverage problems, notes, aggregate IQMs, files."""
    for line in result["coverage"]:
        print(line)
    for note in result["notes"]:
        print(f"note: {note}")
    for cell, n in result["excluded_runs"].items():
        print(f"excluded: {cell}: {n} run(s) without a score under the {result['protocol']} protocol")
    for metric, row in result["aggregate"].items():
        for algo, iv in row.items():
            print(
                f"{metric:>15} {algo:>10}: {iv['estimate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] "
                f"runs per env {iv['runs_per_task']}"
            )
    print(f"wrote {len(result['files'])} files to {out}")


def build_parser() -> argparse.ArgumentParser:
    """The ``bench.report`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Aggregate warpbench runs into statistics, figures and tables.

Reads every run directory (a folder with config.json) below RESULTS_DIR; a run's score at an
evaluation point is eval.csv's return_mean, and wall-clock curves use train_time_s (training time
without evaluation). Runs whose summary.json is missing or not "complete" are listed and left out
unless --include-incomplete; missing (algo, env, seed) cells are listed too.

Writes to --out (PDF and PNG for every figure, written atomically):
  curves_env_steps, curves_wall_clock  IQM learning curve with a 95% band, one panel per env
  aggregate     IQM / mean / optimality-gap intervals (bar = CI, solid tick = estimate,
                dashed tick = mean)
  profiles      performance profiles with bands;   poi   probability-of-improvement matrix
  table.tex     booktabs table, cells "IQM [lo, hi]"
  runs.csv      tidy table: algo, env, seed, run, env_steps, wall_time_s, train_time_s, return,
                normalized, protocol (runs.parquet too when pyarrow is installed)
  scores.csv    one score per run under --protocol;  aggregate.csv, curves.csv  the estimates
  stats.json    method, resamples, confidence level, seed, runs per env, coverage, notes""",
        epilog="""\
examples:
  python -m bench.report runs/ --out figures/
  python -m bench.report runs/ --out figures/ --normalize minmax --reference refs.json --resamples 50000
  python -m bench.report runs/ --out figures/best --protocol best      # optimistic, labelled

exit status: 0 on success; 2 for bad arguments or a RESULTS_DIR without usable runs.""",
    )
    parser.add_argument(
        "results_dir",
        type=Path,
        metavar="RESULTS_DIR",
        help="folder holding run directories (e.g. runs/), searched recursively",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FIG_DIR",
        help="output folder for figures, tables, CSVs and stats.json (created if needed)",
    )
    parser.add_argument(
        "--include-incomplete",
        action="store_true",
        help="also use runs that have evaluations but no 'complete' summary.json (their last "
        "evaluation is then not at the budget)",
    )
    parser.add_argument("--algos", help="comma-separated algorithms to keep (default: all)")
    parser.add_argument("--envs", help="comma-separated envs to keep (default: all)")
    add_analysis_options(parser)
    return parser


def filter_table(
    parser: argparse.ArgumentParser, table: pd.DataFrame, algos: str | None, envs: str | None
) -> pd.DataFrame:
    """Keep the requested algorithms / envs; unknown names exit with code 2."""
    for col, wanted in (("algo", algos), ("env", envs)):
        if wanted:
            names = [w.strip() for w in wanted.split(",") if w.strip()]
            unknown = sorted(set(names) - set(table[col].unique()))
            if unknown:
                parser.error(f"--{col}s: {unknown} not in the results (have {sorted(table[col].unique())})")
            table = table[table[col].isin(names)]
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 for bad arguments or unusable input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    options = options_from_args(parser, args, source=str(args.results_dir))
    if not args.results_dir.is_dir():
        parser.error(f"RESULTS_DIR {args.results_dir} is not a directory")
    check_out_dir(parser, args.out)
    table, runs = load_runs(args.results_dir, args.include_incomplete)
    if runs.empty:
        parser.error(f"no runs under {args.results_dir} (a run is a directory holding config.json)")
    if table.empty:
        for line in coverage_report(table, runs):
            print(line, file=sys.stderr)
        hint = "" if args.include_incomplete else "; --include-incomplete uses unfinished runs"
        parser.error(f"none of the {len(runs)} runs under {args.results_dir} is usable{hint}")
    table = filter_table(parser, table, args.algos, args.envs)
    try:
        result = make_report(table, args.out, options, runs)
    except ReportError as exc:
        parser.error(str(exc))
    print_summary(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
