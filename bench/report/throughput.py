"""What each run cost: training env steps per second, training time and (TD-MPC2) planning time, read from
its ``eval.csv`` (the last evaluation: env steps and training time at the end of the budget) and
``train.csv`` (``plan_time_s`` / ``update_time_s`` per iteration, where an algorithm logs them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.rundir import TRAIN, read_eval

COLUMNS = (
    "algo",
    "env",
    "seed",
    "run",
    "env_steps",
    "train_time_s",
    "env_steps_per_s",
    "plan_time_s",
    "update_time_s",
)
"""One row per run: training env steps (offline data not counted), training time (seconds, evaluation
excluded), their ratio (NaN without env steps), and the summed planning / learning time (NaN where not
logged)."""
SPLIT = ("plan_time_s", "update_time_s")


def _split_times(run_dir: Path) -> dict[str, float]:
    """Summed ``plan_time_s`` and ``update_time_s`` of ``train.csv`` (NaN where absent or unreadable)."""
    try:
        train = pd.read_csv(run_dir / TRAIN, usecols=["metric", "value"])
    except (OSError, ValueError, pd.errors.ParserError):
        return dict.fromkeys(SPLIT, np.nan)
    return {
        name: float(rows["value"].sum()) if len(rows := train[train["metric"] == name]) else np.nan
        for name in SPLIT
    }


def load_throughput(results_dir: str | Path, runs: pd.DataFrame) -> pd.DataFrame:
    """:data:`COLUMNS` for the used runs in ``runs`` (as :func:`bench.report.load_runs` lists them)."""
    rows = []
    for run in runs[runs["used"]].itertuples():
        run_dir = Path(results_dir) / run.run
        last = read_eval(run_dir).iloc[-1]
        steps, seconds = float(last["env_steps"]), float(last["train_time_s"])
        rows.append(
            {
                "algo": run.algo,
                "env": run.env,
                "seed": int(run.seed),
                "run": run.run,
                "env_steps": steps,
                "train_time_s": seconds,
                "env_steps_per_s": steps / seconds if steps > 0 and seconds > 0 else np.nan,
                **_split_times(run_dir),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def median_costs(throughput: pd.DataFrame) -> pd.DataFrame:
    """Per (algo, env): the median over runs of env-steps/s and of the training and planning minutes."""
    return (
        throughput.assign(train_min=throughput["train_time_s"] / 60, plan_min=throughput["plan_time_s"] / 60)
        .groupby(["algo", "env"])[["env_steps_per_s", "train_min", "plan_min"]]
        .median()
    )
