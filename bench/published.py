"""The PWM paper's released learning curves as a warpbench tidy table, and a report on them.

``python -m bench.published CURVES_DIR --out results/published`` reads the wide CSV exports of
imgeorgiev/PWM ``results/data/`` and imgeorgiev/DiffRL ``results/`` (one ``<run> - <metric>`` column per
seed plus ``__MIN``/``__MAX`` duplicates, logged against ``Step``/``global_step`` = env steps or
``Relative Time (Process)`` = seconds), turns them into the tidy table of :mod:`bench.report` and runs the
report with the paper's normalisation (PPO's maximum training return). The released values are returns of
recent *training* episodes of the stochastic policy, not a deterministic evaluation; every output says so.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench import report, stats
from bench.plotting import write_file

ALGOS = {"pwm": "PWM", "tdmpc2": "TD-MPC2", "shac": "SHAC", "ahac": "AHAC", "ppo": "PPO", "sac": "SAC"}
ENVS = {
    "ant": "Ant",
    "hopper": "Hopper",
    "anymal": "Anymal",
    "humanoid": "Humanoid",
    "humanoidsnu": "SNUHumanoid",
}
# File-name variants: "time" only says the curve is logged against wall-clock. The others are ablations,
# read with --ablations: (algo suffix, env suffix).
ABLATIONS = {
    "stiff": ("", " (stiff contact)"),
    "no_simnorm": (" (no SimNorm)", ""),
    "simple": (" (ReLU MLP)", ""),
}
STEP_COLUMNS = ("Step", "global_step")
TIME_COLUMN = "Relative Time (Process)"
DATA_LABEL = (
    "mean return of recent training episodes of the stochastic policy, as released by the PWM authors "
    "(not a deterministic evaluation)"
)
# bench.report's options with the paper's normalisation and resamples; the per-run data are not written.
DEFAULTS = report.ReportOptions(
    normalize="ppo_max",
    n_resamples=stats.PAPER_RESAMPLES,
    data_label=DATA_LABEL,
    write_run_data=False,
    notes=["wall-clock of released curves is process time ('Relative Time (Process)'), hardware unstated"],
)
_FILE = re.compile(
    r"^(?P<algo>[a-z0-9]+)_(?P<env>humanoidsnu|humanoid|hopper|anymal|ant)(?:_(?P<variant>.+))?$"
)


def parse_name(stem: str, ablations: bool = False) -> tuple[str, str, bool] | None:
    """``(algo, env, time_based)`` display names for a curve file stem, or None to skip the file."""
    m = _FILE.match(stem)
    if m is None or m["algo"] not in ALGOS:
        return None
    algo, env, variant = ALGOS[m["algo"]], ENVS[m["env"]], m["variant"]
    if variant is None or variant == "time":
        return algo, env, variant == "time"
    if ablations and variant in ABLATIONS:
        algo_sfx, env_sfx = ABLATIONS[variant]
        return algo + algo_sfx, env + env_sfx, False
    return None


def _seed(run: str, fallback: int) -> int:
    m = re.search(r"(\d+)$", run)
    return int(m.group(1)) if m else fallback


def read_curve_file(path: str | Path, algo: str, env: str) -> pd.DataFrame:
    """One released wide CSV as tidy rows (``algo, env, seed, run, env_steps, *_time_s, return``).

    The score column of a run is ``<run> - <metric>`` for its one non-``_step`` metric; rows where the run
    has no value are dropped. Wall-clock (when logged) fills both time columns: it is process time, which
    includes whatever else the process did.
    """
    wide = pd.read_csv(path)
    step_col = next((c for c in STEP_COLUMNS if c in wide.columns), None)
    steps = wide[step_col].astype(float) if step_col else pd.Series(np.nan, index=wide.index)
    times = (
        wide[TIME_COLUMN].astype(float)
        if TIME_COLUMN in wide.columns
        else pd.Series(np.nan, index=wide.index)
    )
    value_cols = [
        c
        for c in wide.columns
        if " - " in c and not c.endswith(("__MIN", "__MAX")) and not c.split(" - ", 1)[1].startswith("_step")
    ]
    frames = []
    for i, col in enumerate(value_cols):
        run = col.split(" - ", 1)[0]
        values = wide[col].astype(float)
        keep = values.notna()
        frames.append(
            pd.DataFrame(
                {
                    "algo": algo,
                    "env": env,
                    "seed": _seed(run, i),
                    "run": f"{Path(path).name.removesuffix('.gz')}:{run}",
                    "env_steps": steps[keep].to_numpy(),
                    "wall_time_s": times[keep].to_numpy(),
                    "train_time_s": times[keep].to_numpy(),
                    "return": values[keep].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(report.TIDY_COLUMNS))


def read_curves(curves_dir: str | Path, ablations: bool = False) -> pd.DataFrame:
    """All recognised curve files of ``curves_dir`` as one tidy table (sorted file order).

    A file may be gzipped (``<name>.csv.gz``, as committed in ``results/published/curves/``); it is read as
    the ``<name>.csv`` it decompresses to.
    """
    frames = []
    paths = {
        p.name.removesuffix(".gz"): p for p in Path(curves_dir).glob("*.csv*") if p.suffix in (".csv", ".gz")
    }
    for name in sorted(paths):
        path = paths[name]
        names = parse_name(name.removesuffix(".csv"), ablations)
        if names is not None:
            frames.append(read_curve_file(path, names[0], names[1]))
    if not frames:
        return pd.DataFrame(columns=[c for c in report.TIDY_COLUMNS if c != "normalized"])
    return pd.concat(frames, ignore_index=True)


def build_parser() -> argparse.ArgumentParser:
    """The ``bench.published`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.published",
        description="Run bench.report on the PWM paper's released learning curves (CURVES_DIR holds the wide "
        "CSVs <algo>_<env>[_variant].csv, or .csv.gz; results/published/curves/ has those the report reads). "
        "PWM and TD-MPC2 on Ant, Hopper, Anymal, Humanoid and SNU Humanoid (5 seeds, env-step axis) make the "
        "cross-env aggregates; SHAC/AHAC/PPO/SAC curves exist only for Ant and Hopper against wall-clock and "
        "appear per env. Scores are training returns, normalised by PPO's maximum (--normalize ppo_max) by "
        "default. The released per-run data are not copied to --out.",
    )
    parser.add_argument("curves_dir", type=Path, metavar="CURVES_DIR", help="folder of released curve CSVs")
    parser.add_argument("--out", type=Path, required=True, metavar="FIG_DIR", help="output folder")
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also read the ablation files (stiff-contact Hopper, PWM without SimNorm, PWM with a ReLU MLP)",
    )
    parser.add_argument(
        "--tidy", type=Path, metavar="CSV", help="also write the tidy table of the released curves to CSV"
    )
    report.add_analysis_options(parser, DEFAULTS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 2 for bad arguments or a folder without curve files."""
    parser = build_parser()
    args = parser.parse_args(argv)
    source = (
        f"released curves in {args.curves_dir.name}/ (imgeorgiev/PWM results/data, imgeorgiev/DiffRL results)"
    )
    options = report.options_from_args(parser, args, replace(DEFAULTS, source=source))
    if not args.curves_dir.is_dir():
        parser.error(f"CURVES_DIR {args.curves_dir} is not a directory")
    report.check_out_dir(parser, args.out)
    table = read_curves(args.curves_dir, args.ablations)
    if table.empty:
        parser.error(f"no recognised curve files (<algo>_<env>[_variant].csv) in {args.curves_dir}")
    if args.tidy is not None:
        args.tidy.parent.mkdir(parents=True, exist_ok=True)
        write_file(args.tidy, table.to_csv(index=False).encode())
    try:
        result = report.make_report(table, args.out, options)
    except report.ReportError as exc:
        parser.error(str(exc))
    report.print_summary(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
