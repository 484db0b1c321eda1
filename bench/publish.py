"""Copy the tidy files of finished runs into ``results/``: ``python -m bench.publish RUN_DIR... --out DIR``.

Checkpoints and recorded datasets stay behind (they are large and regenerable); what is copied is what
``bench.report`` reads (config.json, train.csv, eval.csv, eval_episodes.csv, summary.json) and, for
world-model pretraining runs, the loss curve (pretrain.csv and its figure). The layout below
``--out`` mirrors the run directory (``<env>/<algo>/seed<k>_<stamp>``). Only complete runs, unless
``--incomplete``: a stopped probe's files, kept as evidence; its summary.json says how far it got and
``bench.report`` lists it as incomplete and leaves it out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench import rundir

TIDY_FILES = (
    rundir.CONFIG,
    rundir.TRAIN,
    rundir.EVAL,
    rundir.EVAL_EPISODES,
    rundir.SUMMARY,
    rundir.PRETRAIN_CSV,  # world-model pretraining runs
    f"{rundir.LOSS_FIGURE}.png",
)


def publish_run(run_dir: Path, out: Path, incomplete: bool = False) -> Path:
    """Copy one run's tidy files to ``out/<env>/<algo>/<run name>``; returns the destination. A run that is
    not complete is refused (ValueError) unless ``incomplete``."""
    summary = rundir.read_summary(run_dir)
    if not incomplete and (summary is None or summary.get("status") != "complete"):
        status = "no summary.json" if summary is None else summary.get("status")
        raise ValueError(f"{run_dir} is not a complete run ({status}); finish or --resume it first")
    config = rundir.read_json(run_dir / rundir.CONFIG)
    dest = out / str(config["env"]) / str(config["algo"]) / run_dir.name
    dest.mkdir(parents=True, exist_ok=True)
    for name in TIDY_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (holding config.json)")
    parser.add_argument("--out", type=Path, default=Path("results/runs"), help="destination root")
    parser.add_argument(
        "--incomplete",
        action="store_true",
        help="also publish runs that did not finish (a stopped probe kept as evidence; reports leave it out)",
    )
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / rundir.CONFIG).exists():
            parser.error(f"{run} is not a run directory (no {rundir.CONFIG})")
    try:
        for run in args.runs:
            print(f"published {run} -> {publish_run(run, args.out, args.incomplete)}")
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
