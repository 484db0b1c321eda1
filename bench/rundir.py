"""The run-directory format: the one module that ``bench.run`` writes and ``bench.report`` reads.

Layout (evaluation spec §8)::

    runs/<env>/<algo>/seed<k>_<UTC timestamp>/
        config.json          fully resolved config, argv, versions, device, git commit
        train.csv            tidy: step, env_steps, wall_time_s, metric, value
        eval.csv             one row per evaluation point (EVAL_COLUMNS)
        eval_episodes.csv    one row per evaluation episode (EPISODE_COLUMNS)
        summary.json         final score, best-over-training (labelled), totals, status
        checkpoints/latest.pt, checkpoints/final.pt

Every write is atomic (temporary file + ``os.replace``) or an append of whole lines, so a crash or
Ctrl-C never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from algos.atomic import atomic_write_bytes as atomic_write_bytes  # re-exported for run files

CONFIG = "config.json"
TRAIN = "train.csv"
EVAL = "eval.csv"
EVAL_EPISODES = "eval_episodes.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"

TRAIN_COLUMNS = ("step", "env_steps", "wall_time_s", "metric", "value")
EVAL_COLUMNS = (
    "env_steps",
    "data_env_steps",
    "wall_time_s",
    "train_time_s",
    "eval_time_s",
    "eval_episodes",
    "return_mean",
    "return_std",
    "return_iqm",
    "length_mean",
    "iteration",
)
EPISODE_COLUMNS = ("env_steps", "episode", "return", "length", "terminated")


def new_run_dir(root: str | Path, env: str, algo: str, seed: int) -> Path:
    """Create and return ``root/<env>/<algo>/seed<seed>_<UTC timestamp>[_<n>]`` (never an existing one)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parent = Path(root) / env / algo
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):  # two runs started in the same second get distinct suffixes
        path = parent / (f"seed{seed}_{stamp}" + (f"_{attempt}" if attempt else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {parent}")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def append_rows(path: str | Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows to a CSV file, writing the header first if the file is new or empty."""
    path = Path(path)
    columns = list(columns)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="raise")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        f.flush()


def truncate_rows(path: str | Path, column: str, max_value: float) -> None:
    """Drop rows whose ``column`` exceeds ``max_value`` (used on resume to forget work after a checkpoint)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    table = pd.read_csv(path)
    table = table[table[column] <= max_value]
    atomic_write_bytes(path, table.to_csv(index=False).encode())


def find_runs(results_dir: str | Path) -> list[Path]:
    """All run directories (those holding a ``config.json``) below ``results_dir``, sorted."""
    return sorted(p.parent for p in Path(results_dir).rglob(CONFIG))


def read_eval(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``eval.csv`` with ``algo``, ``env`` and ``seed`` columns taken from its ``config.json``.

    Returns an empty frame (with those columns) when the run has not evaluated yet.
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG)
    path = run_dir / EVAL
    if path.exists() and path.stat().st_size > 0:
        table = pd.read_csv(path)
    else:
        table = pd.DataFrame(columns=list(EVAL_COLUMNS))
    table.insert(0, "seed", int(config["seed"]))
    table.insert(0, "env", str(config["env"]))
    table.insert(0, "algo", str(config["algo"]))
    return table


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json``, or None if the run never wrote one (crashed or still running)."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.exists() else None
