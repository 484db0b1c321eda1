"""The PWM diagnostics figure: the ``diag/*`` metrics (:mod:`algos.pwm_diagnostics`) of each run's
``train.csv`` against training iterations (offline runs consume no env steps), one line per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bench import plotting
from bench.rundir import TRAIN

PANELS: dict[str, tuple[str, ...]] = {
    "H-step return (model reward units)": ("diag/imagined_return", "diag/real_return"),
    "Imagined minus real return": ("diag/return_gap", "diag/episodic_gap"),
    # gradient_cosine: the H-step return's gradient; value_: the window-end critic value's; objective_: both.
    "Model vs simulator actor-gradient cosine": (
        "diag/gradient_cosine",
        "diag/value_gradient_cosine",
        "diag/objective_gradient_cosine",
    ),
    "Critic-value over return gradient norm": (
        "diag/model_value_gradient_ratio",
        "diag/real_value_gradient_ratio",
    ),
    # wm_*: along the diagnostics' own real rollouts; heldout_*: dataset episodes kept out of pretraining.
    "World-model latent error (unseen data)": (
        "diag/wm_latent_error_1step",
        "diag/wm_latent_error_Hstep",
        "diag/heldout_latent_error_1step",
        "diag/heldout_latent_error_Hstep",
    ),
    "Critic value vs real H-step target": ("diag/critic_value", "diag/critic_target"),
    "Real episodes ending within H (falls)": ("diag/real_episode_ends",),
}
COLUMNS = ("run", "step", "metric", "value")


def load_diagnostics(results_dir: str | Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The ``diag/*`` rows (``COLUMNS``) of the used runs in ``runs`` (as :func:`bench.report.load_runs`
    lists them); runs without diagnostics or a readable ``train.csv`` contribute none."""
    frames = []
    for run in runs.loc[runs["used"], "run"]:
        try:
            train = pd.read_csv(Path(results_dir) / run / TRAIN, usecols=["step", "metric", "value"])
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        diag = train[train["metric"].astype(str).str.startswith("diag/")]
        frames.append(diag.assign(run=run)[list(COLUMNS)])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def plot_diagnostics(table: pd.DataFrame) -> plt.Figure:
    """One panel per entry of :data:`PANELS` that any run logged (runs of older commits lack some metrics):
    each metric of each run against the iteration."""
    logged = set(table["metric"])
    panels = {title: metrics for title, metrics in PANELS.items() if logged.intersection(metrics)}
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, metrics) in zip(axes.flat, panels.items(), strict=False):
        for (run, metric), rows in table[table["metric"].isin(metrics)].groupby(["run", "metric"]):
            ax.plot(rows["step"], rows["value"], label=f"{metric.removeprefix('diag/')} ({run})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=6)
        plotting.decorate(ax)
    fig.tight_layout()
    return fig


def write_diagnostics(
    results_dir: str | Path, runs: pd.DataFrame, out: str | Path, formats: Sequence[str] = ("pdf", "png")
) -> list[Path]:
    """``diagnostics.csv`` and the ``diagnostics`` figure in ``out`` when any used run logged diagnostics;
    returns the files written (none otherwise)."""
    table = load_diagnostics(results_dir, runs)
    if table.empty:
        return []
    out = Path(out)
    written = [plotting.write_file(out / "diagnostics.csv", table.to_csv(index=False).encode())]
    with plotting.style():
        fig = plot_diagnostics(table)
        written += plotting.save(fig, out, "diagnostics", formats)
        plt.close(fig)
    return written
