"""What shapes a report: :class:`ReportOptions` (its fields are also the statistics options of the CLIs)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench import stats
from bench.cli import NO_CLI, FieldError, check_choices, option

PROTOCOLS = {
    "final": "final: each run's last logged score (the final policy at the end of its budget)",
    "best": "best-over-training (optimistic): each run's value where its method's IQM curve on the env peaks",
}
Protocol = Literal["final", "best"]
Normalization = Literal["auto", "none", "minmax", "ppo_max"]
CIMethod = Literal["percentile", "BCa", "basic"]
FigureFormat = Literal["pdf", "png", "svg"]


class ReportError(ValueError):
    """Bad input for a report (the CLI turns it into exit code 2)."""


def read_references(path: str) -> dict[str, list[float]]:
    """Reference scores from a JSON file ``{"Ant": [R_min, R_ref], ...}`` (the ``--reference`` option)."""
    try:
        references = json.loads(Path(path).read_text())
        if not all(len(v) == 2 for v in references.values()):
            raise ValueError("every value must be [R_min, R_ref]")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    return references


@dataclass
class ReportOptions:
    """Everything that shapes a report; recorded in ``stats.json``."""

    protocol: Protocol = "final"
    """per-run score: 'final' = the last evaluation (final policy at the budget); 'best' = each run's value
    at the evaluation point where its method's IQM curve peaks (optimistic, labelled as such in every
    output)"""
    normalize: Normalization = "auto"
    """score scale: 'none' = raw returns; 'minmax' = (R - R_min) / (R_ref - R_min) with reference scores
    (--reference or the constants stored in bench.normalization); 'ppo_max' = divide by PPO's maximum
    training return (PWM paper constants; paper reproduction only); 'auto' = minmax when every env has
    reference scores, else none"""
    references: dict[str, list[float]] | None = field(
        default=None, metadata=option(flag="--reference", metavar="JSON", parse=read_references)
    )
    """reference scores for --normalize minmax/auto, a JSON file {"Ant": [R_min, R_ref], ...}"""
    n_resamples: int = field(default=stats.DEFAULT_RESAMPLES, metadata=option(flag="--resamples"))
    """bootstrap resamples for intervals, POI and profiles (the spec asks 50000 for paper figures)"""
    curve_resamples: int = 2_000
    """bootstrap resamples per learning-curve point"""
    seed: int = 0
    """seed of the numpy generators behind every interval; same seed, same numbers"""
    ci_method: CIMethod = "percentile"
    """bootstrap interval method (BCa falls back to percentile with a note where the data are degenerate)"""
    confidence_level: float = 0.95
    """confidence level of every interval"""
    curve_points: int = 200
    """grid size when runs are logged at different x values and must be interpolated"""
    smooth: float = field(default=0.0, metadata=option(metavar="ALPHA"))
    """EWM smoothing factor in [0, 1) applied to the drawn curves only (data and CSVs stay raw; 0 = none)"""
    tau: tuple[float, float] | None = field(default=None, metadata=option(metavar=("LO", "HI")))
    """threshold range of the performance profiles (default: the range of the scores)"""
    task_bootstrap: bool = False
    """resample whole envs instead of runs within envs for the aggregates (labelled; for one run per env)"""
    formats: tuple[FigureFormat, ...] = ("pdf", "png")
    """figure formats, comma separated"""
    write_run_data: bool = field(default=True, metadata=NO_CLI)
    """write the per-run and per-point data: runs.csv (and runs.parquet), scores.csv, curves.csv"""
    data_label: str = field(
        default="mean return of the deterministic evaluation episodes (return_mean)", metadata=NO_CLI
    )
    """what a run's score at an evaluation point is (captions and stats.json)"""
    source: str = field(default="", metadata=NO_CLI)
    """where the data came from (stats.json)"""
    notes: list[str] = field(default_factory=list, metadata=NO_CLI)
    """notes passed on to stats.json and the console summary"""

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("n_resamples", "curve_resamples"):
            if getattr(self, name) < 10:
                raise FieldError(name, f"must be at least 10, got {getattr(self, name)}")
        if not 0 < self.confidence_level < 1:
            raise FieldError("confidence_level", f"must be between 0 and 1, got {self.confidence_level}")
        if not 0 <= self.smooth < 1:
            raise FieldError("smooth", f"must be in [0, 1), got {self.smooth}")
        if self.curve_points < 2:
            raise FieldError("curve_points", f"must be at least 2, got {self.curve_points}")
        if self.tau is not None and not self.tau[0] < self.tau[1]:
            raise FieldError("tau", f"needs LO < HI, got {self.tau}")
