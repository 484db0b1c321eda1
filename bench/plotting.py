"""Figure style and the report's figures (evaluation spec §7), drawn from stored statistics only.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global backend), styled in an
``rc_context`` (TrueType fonts in PDF/PS, rliable-style axes) and saved atomically as PDF and PNG.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.rundir import atomic_write_bytes
from bench.stats import Band, Interval

ONE_COLUMN_IN = 3.25
TWO_COLUMN_IN = 6.75

# Fixed algorithm -> colour map (seaborn "colorblind"), identical in every figure.
ALGO_COLORS = {
    "pwm": "#0173B2",
    "shac": "#DE8F05",
    "ppo": "#029E73",
    "sac": "#D55E00",
    "tdmpc2": "#CC78BC",
    "ahac": "#CA9161",
    "bptt": "#949494",
}
ALGO_LABELS = {
    "pwm": "PWM",
    "shac": "SHAC",
    "ppo": "PPO",
    "sac": "SAC",
    "tdmpc2": "TD-MPC2",
    "ahac": "AHAC",
    "bptt": "BPTT",
}
# Remaining colorblind-palette colours, handed to unknown algorithms in sorted-name order.
EXTRA_COLORS = ("#56B4E9", "#FBAFE4", "#ECE133", "#000000")

RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.2,
    "savefig.dpi": 300,
}


def algo_key(name: str) -> str:
    """Canonical algorithm key: lower case, letters and digits only (``TD-MPC2`` -> ``tdmpc2``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def algo_label(name: str) -> str:
    """Display label: the canonical spelling for known algorithms, else the name itself; a run label
    ``algo:variant`` (bench/variants.py) reads "PWM (offline)"."""
    algo, _, variant = str(name).partition(":")
    if variant:
        return f"{algo_label(algo)} ({variant})"
    return ALGO_LABELS.get(algo_key(name), str(name))


def algo_colors(algos: Sequence[str]) -> dict[str, str]:
    """Colour of every algorithm: the fixed map for known ones, spare palette colours for the rest."""
    colors = {a: ALGO_COLORS[algo_key(a)] for a in algos if algo_key(a) in ALGO_COLORS}
    unknown = sorted(a for a in algos if a not in colors)
    for i, a in enumerate(unknown):
        colors[a] = EXTRA_COLORS[i % len(EXTRA_COLORS)]
    return colors


@contextmanager
def style() -> Iterator[None]:
    """The report's matplotlib settings, restored on exit."""
    with matplotlib.rc_context(RC):
        yield


def decorate(ax: Axes) -> None:
    """rliable-style axes: left/bottom spines 2 pt and offset outward, top/right hidden."""
    for side in ("left", "bottom"):
        ax.spines[side].set_linewidth(2)
        ax.spines[side].set_position(("outward", 5))
    ax.tick_params(length=3, width=1)


def write_file(path: str | Path, data: bytes) -> Path:
    """Atomic write (``bench.rundir.atomic_write_bytes``) with the usual umask-based permissions.

    The temporary file behind an atomic write is private (0600); outputs meant to be shared get 0666 & ~umask.
    """
    path = Path(path)
    atomic_write_bytes(path, data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def save(fig: Figure, out_dir: str | Path, stem: str, formats: Sequence[str] = ("pdf", "png")) -> list[Path]:
    """Save ``fig`` as ``out_dir/stem.<fmt>`` for each format, atomically; returns the paths."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=metadata)
        paths.append(write_file(Path(out_dir) / f"{stem}.{fmt}", buf.getvalue()))
    return paths


def _scale(x_max: float, axis: str) -> tuple[float, str]:
    if axis == "env_steps":
        if x_max >= 1e6:
            return 1e6, "Env steps (millions)"
        if x_max >= 1e3:
            return 1e3, "Env steps (thousands)"
        return 1.0, "Env steps"
    if x_max >= 3 * 3600:
        return 3600.0, "Training wall-clock (h)"
    if x_max >= 180:
        return 60.0, "Training wall-clock (min)"
    return 1.0, "Training wall-clock (s)"


def _legend(fig: Figure, algos: Sequence[str], colors: Mapping[str, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[a], lw=2) for a in algos]
    fig.legend(
        handles,
        [algo_label(a) for a in algos],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=min(len(algos), 6),
    )


def plot_curves(
    curves: Mapping[tuple[str, str], Band],
    algos: Sequence[str],
    envs: Sequence[str],
    axis: str,
    ylabel: str,
    title: str = "",
) -> Figure:
    """F1: IQM learning curve with its confidence band, one panel per env."""
    colors = algo_colors(algos)
    ncols = min(len(envs), 3)
    nrows = math.ceil(len(envs) / ncols)
    fig = Figure(figsize=(TWO_COLUMN_IN, 2.0 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    x_max = max((np.nanmax(b.x) for b in curves.values() if b.x.size), default=1.0)
    div, xlabel = _scale(float(x_max), axis)
    for i, env in enumerate(envs):
        ax = axes[i // ncols][i % ncols]
        for algo in algos:
            band = curves.get((algo, env))
            if band is None:
                continue
            ax.plot(band.x / div, band.estimate, color=colors[algo], lw=1.5)
            ax.fill_between(band.x / div, band.low, band.high, color=colors[algo], alpha=0.2, lw=0)
        ax.set_title(env)
        ax.set_xlabel(xlabel)
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
        decorate(ax)
    for j in range(len(envs), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    _legend(fig, algos, colors)
    if title:
        fig.suptitle(title, y=1.08 if len(algos) else 1.0)
    return fig


def plot_aggregate(
    intervals: Mapping[str, Mapping[str, Interval]], algos: Sequence[str], xlabel: str
) -> Figure:
    """F2: interval plot per metric (PWM style): CI bar, solid tick at the estimate, dashed tick at the mean.

    ``intervals[metric][algo]``; the dashed mean tick is drawn in the IQM panel when "mean" is present.
    """
    colors = algo_colors(algos)
    metrics = list(intervals)
    fig = Figure(figsize=(TWO_COLUMN_IN, 0.35 * len(algos) + 0.9), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    ys = np.arange(len(algos))[::-1]
    for ax, metric in zip(axes, metrics, strict=True):
        for y, algo in zip(ys, algos, strict=True):
            iv = intervals[metric].get(algo)
            if iv is None:
                continue
            if np.isfinite(iv.low) and np.isfinite(iv.high):
                ax.barh(y, iv.high - iv.low, left=iv.low, height=0.6, color=colors[algo], alpha=0.75, lw=0)
            ax.vlines(iv.estimate, y - 0.3, y + 0.3, color="k", lw=1.5)
            if metric == "iqm" and "mean" in intervals and algo in intervals["mean"]:
                ax.vlines(intervals["mean"][algo].estimate, y - 0.3, y + 0.3, color="k", lw=1.0, ls="--")
        ax.set_yticks(ys)
        ax.set_yticklabels([algo_label(a) for a in algos] if ax is axes[0] else [])
        ax.set_title({"iqm": "IQM (dashed: mean)"}.get(metric, metric.replace("_", " ").capitalize()))
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        decorate(ax)
    return fig


def plot_profiles(
    profiles: Mapping[str, Interval], taus: np.ndarray, algos: Sequence[str], xlabel: str
) -> Figure:
    """F3: performance profiles (fraction of runs with score > tau, at each tau) with confidence bands."""
    colors = algo_colors(algos)
    fig = Figure(figsize=(ONE_COLUMN_IN, 2.4), layout="constrained")
    ax = fig.subplots()
    for algo in algos:
        profile = profiles.get(algo)
        if profile is None:
            continue
        ax.plot(taus, profile.estimate, color=colors[algo], lw=1.5, label=algo_label(algo))
        ax.fill_between(taus, profile.low, profile.high, color=colors[algo], alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"Fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best")
    decorate(ax)
    return fig


def plot_poi(poi: Mapping[tuple[str, str], Interval], algos: Sequence[str]) -> Figure:
    """F4: probability-of-improvement matrix, P(row > column) with its interval in each cell."""
    n = len(algos)
    mat = np.full((n, n), np.nan)
    for i, a in enumerate(algos):
        for j, b in enumerate(algos):
            if (a, b) in poi:
                mat[i, j] = poi[(a, b)].estimate
    size = max(ONE_COLUMN_IN, 0.9 * n + 1.2)
    fig = Figure(figsize=(size, 0.75 * size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(mat, cmap="RdBu", vmin=0, vmax=1)
    for i, a in enumerate(algos):
        for j, b in enumerate(algos):
            iv = poi.get((a, b))
            if iv is None:
                continue
            text = f"{iv.estimate:.2f}\n[{iv.low:.2f}, {iv.high:.2f}]"
            dark = abs(iv.estimate - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="w" if dark else "k")
    labels = [algo_label(a) for a in algos]
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("Algorithm Y")
    ax.set_ylabel("Algorithm X")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, label="P(X > Y)", shrink=0.8)
    return fig
