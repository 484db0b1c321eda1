"""Statistics, figures and tables from run directories (``python -m bench.report``).

Reads every run's ``eval.csv`` (``bench.rundir``) into one tidy table, lists missing and incomplete runs,
and writes (evaluation spec §7-8): learning curves against env steps and training wall-clock (IQM with a
95% band per env), the aggregate interval plot, performance profiles, the probability-of-improvement
matrix, a booktabs LaTeX table, tidy CSVs and ``stats.json``. The library entry point is
:func:`make_report`, which works on any tidy table (``bench.published`` feeds it the paper's curves).

One module per job, in the order data flows through them:

- ``options``   :class:`ReportOptions` (also the CLI's statistics options), protocols, :class:`ReportError`
- ``ingest``    run directories -> tidy table; coverage (missing, incomplete, unreadable runs)
- ``scores``    normalisation and one score per run under a protocol
- ``analysis``  every interval, profile and curve (:mod:`bench.stats`)
- ``latex``     the booktabs table
- ``output``    :func:`make_report`: CSVs, ``stats.json``, table and figures
- ``cli``       the command line; ``dataclass_cli`` turns a dataclass into options
"""

from bench.report.analysis import Analysis, analyse
from bench.report.cli import add_analysis_options, check_out_dir, main, options_from_args, print_summary
from bench.report.ingest import EVAL_INPUT_COLUMNS, TIDY_COLUMNS, coverage_report, load_runs
from bench.report.options import PROTOCOLS, ReportError, ReportOptions
from bench.report.output import make_report
from bench.report.scores import add_normalized, align, resolve_normalization, run_scores

__all__ = [
    "EVAL_INPUT_COLUMNS",
    "PROTOCOLS",
    "TIDY_COLUMNS",
    "Analysis",
    "ReportError",
    "ReportOptions",
    "add_analysis_options",
    "add_normalized",
    "align",
    "analyse",
    "check_out_dir",
    "coverage_report",
    "load_runs",
    "main",
    "make_report",
    "options_from_args",
    "print_summary",
    "resolve_normalization",
    "run_scores",
]
