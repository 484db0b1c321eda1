"""The run-directory format and every file name in it: what ``bench.run``, ``bench.pretrain`` and
``bench.collect`` write and ``bench.report`` / ``bench.publish`` read.

Layout (evaluation spec §8)::

    runs/<env>/<algo>/seed<k>_<UTC timestamp>/
        config.json          fully resolved config, argv, versions, device, git commit
        train.csv            tidy: step, env_steps, wall_time_s, metric, value
        eval.csv             one row per evaluation point (EVAL_COLUMNS)
        eval_episodes.csv    one row per evaluation episode (EPISODE_COLUMNS)
        summary.json         final score, best-over-training (labelled), totals, status
        checkpoints/latest.pt, previous.pt (the one before), final.pt
        checkpoints/world_model.pt  the world model at the last checkpoint, for PWM (TD-MPC2 runs)
        data/                recorded episodes (``--save-data``; ``algos.dataset`` format)

    runs/<env>/pwm_pretrain/seed<k>_<UTC timestamp>/    (``bench.pretrain``)
        config.json, summary.json, checkpoints/ as above
        pretrain.csv         tidy loss curve (PRETRAIN_COLUMNS); loss_curve.png

Every write is atomic (temporary file + ``os.replace``) or an append of whole lines, so a crash or
Ctrl-C never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from algos.atomic import atomic_write_bytes as atomic_write_bytes  # re-exported for run files
from bench.settings import ConfigError

CONFIG = "config.json"
TRAIN = "train.csv"
EVAL = "eval.csv"
EVAL_EPISODES = "eval_episodes.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest.pt"
PREVIOUS = "previous.pt"
FINAL = "final.pt"
WORLD_MODEL = "world_model.pt"
DATA = "data"
PRETRAIN_CSV = "pretrain.csv"
LOSS_FIGURE = "loss_curve"
COLLECT_INFO = "collect.json"
PRETRAIN_ALGO = "pwm_pretrain"
"""The ``algo`` directory (and ``config.json["algo"]``) of world-model pretraining runs."""

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
PRETRAIN_COLUMNS = ("step", "wall_time_s", "metric", "value")


def checkpoint(run_dir: str | Path, name: str = LATEST) -> Path:
    return Path(run_dir) / CHECKPOINTS / name


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
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="raise", lineterminator="\n")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        f.flush()


@dataclass
class Rows:
    """A CSV file's rows up to a checkpoint, read (and checked) before anything is rewritten."""

    path: Path
    table: pd.DataFrame | None
    """None: the file is absent or empty (nothing to rewrite)."""

    def write(self) -> None:
        """Rewrite the file with these rows (atomically, same mode, ``\\n`` line endings)."""
        if self.table is not None:
            atomic_write_bytes(self.path, self.table.to_csv(index=False, lineterminator="\n").encode())


def read_rows(path: str | Path, column: str, max_value: float | None) -> Rows:
    """The rows of ``path`` whose ``column`` is at most ``max_value`` (used on resume to forget work after a
    checkpoint); ConfigError naming the file if it cannot be parsed or lacks ``column``."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return Rows(path, None)
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as error:
        raise ConfigError(f"{path} is not a readable CSV ({error}); the run cannot be resumed") from error
    if column not in table.columns or max_value is None:
        raise ConfigError(f"{path} has no {column!r} column (or the checkpoint no position); cannot resume")
    return Rows(path, table[table[column] <= max_value])


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
