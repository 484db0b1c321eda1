"""``python -m bench.report RESULTS_DIR --out FIG_DIR``: the command line over :func:`make_report`.

The statistics options are generated from :class:`ReportOptions` (its field docstrings are their help);
``bench.published`` adds the same options with its own defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench import cli
from bench.plotting import write_file
from bench.report.diagnostics import write_diagnostics
from bench.report.ingest import coverage_report, find_videos, load_runs
from bench.report.options import ReportError, ReportOptions
from bench.report.output import make_report
from bench.report.throughput import load_throughput


def add_analysis_options(parser: argparse.ArgumentParser, defaults: ReportOptions) -> None:
    """The statistics options of ``bench.report`` and ``bench.published``, with the values of ``defaults``."""
    cli.add_options(parser.add_argument_group("statistics"), defaults)


def options_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: ReportOptions
) -> ReportOptions:
    """``defaults`` with the parsed statistics options; a bad value exits with code 2."""
    return cli.from_args(parser, args, defaults)


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
  table.tex     booktabs table, cells "IQM [lo, hi]", then the median training cost per env
                (env-steps/s, training minutes, TD-MPC2's planning minutes)
  throughput.csv  each run's cost: env_steps, train_time_s, env_steps_per_s, plan_time_s,
                update_time_s
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
    parser.add_argument(
        "--algos",
        help="comma-separated run labels to keep: an algorithm for its default variant, algo:variant for "
        "another (e.g. shac,pwm:offline; bench/variants.py) (default: all)",
    )
    parser.add_argument("--envs", help="comma-separated envs to keep (default: all)")
    add_analysis_options(parser, ReportOptions())
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
    options = options_from_args(parser, args, ReportOptions(source=str(args.results_dir)))
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
    reported = runs[runs["run"].isin(table["run"].unique())]
    try:
        result = make_report(table, args.out, options, runs, load_throughput(args.results_dir, reported))
    except ReportError as exc:
        parser.error(str(exc))
    print_summary(result, args.out)
    videos = find_videos(args.results_dir, args.out)
    if not videos.empty:  # bench.run --video: list them beside the report
        write_file(args.out / "videos.csv", videos.to_csv(index=False).encode())
        print(f"{len(videos)} evaluation videos listed in {args.out / 'videos.csv'}")
    diagnostics = write_diagnostics(args.results_dir, reported, args.out, options.formats)
    if diagnostics:
        print(f"PWM diagnostics: {', '.join(path.name for path in diagnostics)}")
    return 0
