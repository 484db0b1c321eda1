"""The booktabs LaTeX table of a report and its caption."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import plotting, stats
from bench.report.analysis import Analysis
from bench.report.options import PROTOCOLS, ReportOptions


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


def latex_table(
    an: Analysis,
    options: ReportOptions,
    runs_per_cell: dict[tuple[str, str], int],
    costs: pd.DataFrame | None = None,
) -> str:
    """Booktabs table: per-env IQM [lo, hi] and the cross-env aggregates, one column per algorithm, and,
    given ``costs`` (:func:`bench.report.throughput.median_costs`), the training cost per env."""
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
    if costs is not None:
        lines += _cost_rows(costs, an.envs, cols)
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + esc(caption(an, options, runs_per_cell, with_costs=costs is not None)) + "}",
        r"\label{tab:warpbench-results}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


COST_ROWS = {
    "env_steps_per_s": ("env-steps/s (training)", 0),
    "train_min": ("training time (min)", 1),
    "plan_min": ("of it planning (min)", 1),
}
"""The cost rows of the table: column of :func:`~bench.report.throughput.median_costs`, label, digits."""


def _cost_rows(costs: pd.DataFrame, envs: list[str], cols: list[str]) -> list[str]:
    """Median cost per env and algorithm ('--' where not applicable); a row only if some entry exists."""
    lines = [r"\midrule"]
    for env in envs:
        for column, (label, digits) in COST_ROWS.items():
            values = [costs[column].get((algo, env), np.nan) for algo in cols]
            if np.isfinite(values).any():
                cells = [f"{v:,.{digits}f}" if np.isfinite(v) else "--" for v in values]
                lines.append(_latex_escape(f"{env} {label}") + " & " + " & ".join(cells) + r" \\")
    return lines


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


def caption(
    an: Analysis, options: ReportOptions, runs_per_cell: dict[tuple[str, str], int], with_costs: bool = False
) -> str:
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
        + (
            " Cost rows: median over runs of training env steps per second (offline data and evaluation "
            "excluded) and training minutes, measured on the machine each run records."
            if with_costs
            else ""
        )
    )
