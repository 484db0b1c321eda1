"""Reading run directories (``bench.rundir``) into the report's tidy table, and what is missing from it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from bench.rundir import CONFIG, find_runs, read_eval, read_json, read_summary
from bench.variants import run_label

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
VIDEO_COLUMNS = ("run", "env_steps", "path")
VIDEO_NAME = re.compile(r"env_steps_(\d+)\.mp4")
"""The evaluation videos of ``bench.run --video`` (``RUN_DIR/videos/env_steps_<n>.mp4``)."""
# The eval.csv columns a report reads; a run whose eval.csv lacks one is left out and listed.
EVAL_INPUT_COLUMNS = ("env_steps", "data_env_steps", "wall_time_s", "train_time_s", "return_mean")


def _tidy(ev: pd.DataFrame, run: str) -> pd.DataFrame:
    """One run's evaluation rows as tidy rows (without ``normalized``); ValueError on bad columns."""
    missing = [c for c in EVAL_INPUT_COLUMNS if c not in ev.columns]
    if missing:
        raise ValueError(f"eval.csv lacks the column(s) {missing}")
    return pd.DataFrame(
        {
            "algo": ev["algo"].astype(str),
            "env": ev["env"].astype(str),
            "seed": ev["seed"].astype(int),
            "run": run,
            # Env steps consumed: training plus those that generated offline data (evaluation spec §1).
            "env_steps": ev["env_steps"].astype(float) + ev["data_env_steps"].fillna(0).astype(float),
            "wall_time_s": ev["wall_time_s"].astype(float),
            "train_time_s": ev["train_time_s"].astype(float),
            "return": ev["return_mean"].astype(float),
        }
    )


def load_runs(results_dir: str | Path, include_incomplete: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read all runs below ``results_dir``.

    Returns ``(table, runs)``: the tidy table of evaluation rows of the runs used (``env_steps`` counts the
    env steps consumed, training plus offline data as ``data_env_steps``), and one row per run dir
    found (``run, algo, env, seed, status, n_evals, used``). Status is ``complete``, ``incomplete``
    (summary.json missing or its status is not "complete"), ``no-evaluations`` or ``unreadable`` (including
    an eval.csv without the columns a report reads).
    """
    root = Path(results_dir)
    frames, rows = [], []
    for run_dir in find_runs(root):
        row = {"run": str(run_dir.relative_to(root)), "algo": None, "env": None, "seed": None, "n_evals": 0}
        try:
            config = read_json(run_dir / CONFIG)
            label = run_label(str(config["algo"]), config.get("variant"))
            row.update(algo=label, env=str(config["env"]), seed=int(config["seed"]))
            ev = read_eval(run_dir)
            tidy = _tidy(ev, row["run"]).assign(algo=label)
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
            frames.append(tidy)
    runs = pd.DataFrame(rows, columns=["run", "algo", "env", "seed", "status", "n_evals", "used"])
    runs["seed"] = runs["seed"].astype("Int64")
    if not frames:
        return pd.DataFrame(columns=list(TIDY_COLUMNS)), runs
    return pd.concat(frames, ignore_index=True), runs


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


def find_videos(results_dir: str | Path, relative_to: str | Path) -> pd.DataFrame:
    """The evaluation videos of the runs below ``results_dir`` (``bench.run --video``): one row per video,
    ``run, env_steps, path`` with ``path`` relative to ``relative_to`` (the report's directory)."""
    root = Path(results_dir)
    rows = [
        {
            "run": str(run_dir.relative_to(root)),
            "env_steps": int(match.group(1)),
            "path": os.path.relpath(video, relative_to),
        }
        for run_dir in find_runs(root)
        for video in sorted((run_dir / "videos").glob("env_steps_*.mp4"))
        if (match := VIDEO_NAME.fullmatch(video.name))
    ]
    return pd.DataFrame(rows, columns=list(VIDEO_COLUMNS))
