"""Figures of a finished ``bench.landscape`` analysis, drawn from its files alone (``landscape.npz``,
``config.json`` and the CSVs), in the suite's style: the simulator in the SHAC colour, the world model in the
PWM colour. Every figure carries a caption line saying what is raw, the seeds, directions and CI method.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from algos.gradient_stats import STATISTICS
from bench.plotting import ALGO_COLORS, TWO_COLUMN_IN, decorate, save, style

COLORS = {"sim": ALGO_COLORS["shac"], "wm": ALGO_COLORS["pwm"], "mlp": ALGO_COLORS["bptt"]}
LABELS = {"sim": "simulator $J_{sim}^H$", "wm": "world model $J_{wm}^H$"}


def _caption(fig: Figure, text: str) -> None:
    fig.text(0.0, -0.02, text, ha="left", va="top", fontsize=6, wrap=True)


def plot_analysis(out: str | Path) -> list[Path]:
    """Regenerate every figure of the analysis in ``out``; returns the written paths."""
    out = Path(out)
    config_path = out / "config.json"
    if not config_path.exists() or not (out / "landscape.npz").exists():
        raise FileNotFoundError(
            f"{out} is not a finished bench.landscape analysis (config.json, landscape.npz)"
        )
    config = json.loads(config_path.read_text())
    analysis = config["identity"]["analysis"]
    with np.load(out / "landscape.npz") as data:
        arrays = dict(data)
    plotters = {"ball_wall": _ball_wall, "slices": _slices, "gradients": _gradients}
    if analysis not in plotters:
        raise ValueError(f"unknown analysis {analysis!r} in {config_path}")
    paths: list[Path] = []
    with style():
        for stem, fig in plotters[analysis](out, arrays, config["identity"]):
            paths += save(fig, out, stem)
    return paths


def _ball_wall(out: Path, arrays: dict[str, np.ndarray], identity: dict) -> list[tuple[str, Figure]]:
    gaps = pd.read_csv(out / "ball_wall_argmin.csv").set_index("model")
    fit = identity["fit"]
    fig = Figure(figsize=(TWO_COLUMN_IN, 2.2), layout="constrained")
    ax_j, ax_g = fig.subplots(1, 2)
    theta = arrays["theta"]
    styles = {"mlp": ("MLP (LayerNorm+Mish)", COLORS["mlp"]), "simnorm": ("SimNorm MLP", COLORS["wm"])}
    ax_j.plot(theta, arrays["true"], color="k", lw=1.2, label="true $J(\\theta)$")
    ax_g.plot(theta, arrays["true_grad"], color="k", lw=1.2, label="true (autodiff)")
    for name, (label, color) in styles.items():
        gap = gaps.loc[name]
        ax_j.plot(theta, arrays[name], color=color, lw=1.2, label=f"{label}: gap {gap['gap']:.2f}")
        ax_j.axvline(gap["argmin"], color=color, lw=0.8, ls="--")
        ax_g.plot(theta, arrays[f"{name}_grad"], color=color, lw=1.0, label=label)
    ax_j.axvline(gaps["true_argmin"].iloc[0], color="k", lw=0.8, ls=":")
    ax_j.set_xlabel(r"launch angle $\theta$ (rad)")
    ax_j.set_ylabel(r"$J(\theta) = -x(t=2)$")
    fig.legend(*ax_j.get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
    ax_g.set_xlabel(r"launch angle $\theta$ (rad)")
    ax_g.set_ylabel(r"$dJ/d\theta$")
    ax_g.set_yscale("symlog", linthresh=1.0)
    for ax in (ax_j, ax_g):
        decorate(ax)
    _caption(
        fig,
        f"Ball and wall (spec §6): raw values, no smoothing. Fits by MSE on {fit['samples']} angles "
        f"(Adam {fit['lr']}, {fit['epochs']} epochs, seed {identity['seed']}). Dashed: "
        "argmin of each fit; dotted: true argmin; gap = true J at the fit's argmin minus the true minimum.",
    )
    return [("ball_wall", fig)]


def _median_lines(ax, alpha: np.ndarray, curves: np.ndarray, color: str, label: str, ls: str = "-") -> None:
    """Thin line per direction, bold median over directions (curves [K, A])."""
    for curve in curves:
        ax.plot(alpha, curve, color=color, lw=0.5, alpha=0.5, ls=ls)
    if len(curves):
        ax.plot(alpha, np.median(curves, axis=0), color=color, lw=1.8, ls=ls, label=label)


def _slices(out: Path, arrays: dict[str, np.ndarray], identity: dict) -> list[tuple[str, Figure]]:
    settings = identity["settings"]
    hs = arrays["horizons"]
    at = identity["policy"]["at"]
    base = (
        f"{identity['env']}, θ at {at}; raw batch-mean J over B = {settings['batch']} fixed start states "
        f"(common random numbers), deterministic actions, seed {identity['seed']}; no smoothing."
    )
    figures = []
    for kind, title in (("random", "random"), ("gradient", "gradient")):
        fig = Figure(figsize=(TWO_COLUMN_IN, 3.6), layout="constrained")
        axes = fig.subplots(2, len(hs), squeeze=False)
        for row, grid in enumerate(("wide", "zoom")):
            alpha = arrays[f"alpha_{grid}"]
            for i, h in enumerate(hs):
                ax = axes[row][i]
                for o in ("sim", "wm"):
                    curves = arrays[f"{o}_{kind}_{grid}"][i].mean(axis=-1)
                    if kind == "random":
                        _median_lines(ax, alpha, curves, COLORS[o], LABELS[o])
                    else:
                        ax.plot(alpha, curves[0], color=COLORS[o], lw=1.5, label=f"{LABELS[o]} along ∇J_sim")
                        ax.plot(
                            alpha,
                            curves[1],
                            color=COLORS[o],
                            lw=1.0,
                            ls="--",
                            label=f"{LABELS[o]} along ∇J_wm",
                        )
                ax.set_title(f"H = {h}" if row == 0 else "")
                ax.set_xlabel(r"$\alpha$" + (" (zoom)" if grid == "zoom" else ""))
                if i == 0:
                    ax.set_ylabel("$J^H$")
                decorate(ax)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
        what = (
            f"K = {settings['directions']} filter-normalised Gaussian directions (thin), "
            "bold = median over directions"
            if kind == "random"
            else "the filter-normalised gradient direction of each objective at that H "
            "(solid: ∇J_sim, dashed: ∇J_wm)"
        )
        _caption(fig, f"1-D slices along {what}. {base}")
        figures.append((f"slices_{title}", fig))

    metrics = pd.read_csv(out / "slices_metrics.csv")
    fig = Figure(figsize=(TWO_COLUMN_IN, 2.0), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (("tv_ratio", "wide", "TV ratio (wide grid)"), ("tv_ratio", "zoom", "TV ratio (zoom grid)"))
    panels += (("lipschitz", "zoom", r"local Lipschitz $\hat L$ (zoom, p95)"),)
    for ax, (metric, grid, label) in zip(axes, panels, strict=True):
        for shift, o in ((-0.04, "sim"), (0.04, "wm")):
            rows = metrics[
                (metrics.metric == metric)
                & (metrics.grid == grid)
                & (metrics.directions == "random")
                & (metrics.objective == o)
            ].sort_values("horizon")
            if rows.empty:
                continue
            x = np.log2(rows.horizon.to_numpy()) + shift
            est = rows.estimate.to_numpy()
            err = np.vstack([est - rows.low.to_numpy(), rows.high.to_numpy() - est])
            ax.errorbar(x, est, yerr=err, fmt="o", ms=3, color=COLORS[o], label=LABELS[o], capsize=2)
        ax.set_xticks(np.log2(hs), [str(h) for h in hs])
        ax.set_xlabel("H")
        ax.set_title(label)
        if metric == "lipschitz" and (metrics[metrics.metric == metric].estimate > 0).all():
            ax.set_yscale("log")
        decorate(ax)
    axes[0].legend(loc="best")
    _caption(
        fig,
        f"Slice metrics over K = {settings['directions']} random directions: estimate on the batch-mean "
        "slices, 95% percentile bootstrap intervals over directions (start states fixed) "
        f"({settings['resamples']} resamples). {base}",
    )
    figures.append(("slices_metrics", fig))

    if "sim_contour" in arrays:
        fig = Figure(figsize=(TWO_COLUMN_IN, 2.6), layout="constrained")
        axes = fig.subplots(1, 2)
        c = arrays["contour_alpha"]
        for ax, o in zip(axes, ("sim", "wm"), strict=True):
            surface = arrays[f"{o}_contour"].mean(axis=-1)
            filled = ax.contourf(c, c, surface.T, levels=20, cmap="viridis")
            ax.contour(c, c, surface.T, levels=20, colors="k", linewidths=0.3)
            fig.colorbar(filled, ax=ax, shrink=0.85)
            ax.set_title(f"{LABELS[o]}, H = {settings['contour_horizon']}")
            ax.set_xlabel(r"$\alpha$ (random direction 0)")
            ax.set_ylabel(r"$\beta$ (random direction 1)")
            ax.grid(False)
        _caption(fig, f"2-D slice over the first two filter-normalised random directions. {base}")
        figures.append(("slices_contour", fig))
    return figures


def _gradients(out: Path, arrays: dict[str, np.ndarray], identity: dict) -> list[tuple[str, Figure]]:
    settings = identity["settings"]
    hs = arrays["horizons"]
    panels = (
        ("mean_norm", r"$\|\bar g\|$"),
        ("sample_norm", r"mean $\|g_j\|$"),
        ("mean_variance", r"mean Var$_i$"),
        ("snr_estimator", r"estimator SNR $\|\bar g\|^2 n / \mathrm{tr\,Cov}$"),
        ("esnr_pwm", "PWM-style ESNR (parity only)"),
    )
    fig = Figure(figsize=(TWO_COLUMN_IN, 3.9), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, (stat, label) in zip(axes, panels, strict=False):
        s = STATISTICS.index(stat)
        for o in ("sim", "wm"):
            est = arrays[f"{o}_statistics"][:, s]
            with np.errstate(invalid="ignore"):  # inf draws (zero variance) give inf/nan bounds
                low, high = np.nanpercentile(arrays[f"{o}_draws"][:, s], [2.5, 97.5], axis=1)
            # An infinite SNR (zero variance) has no point on the axis; the CSV keeps it.
            est, low, high = (np.where(np.isfinite(x), x, np.nan) for x in (est, low, high))
            ax.plot(hs, est, "o-", ms=3, color=COLORS[o], label=LABELS[o])
            ax.fill_between(hs, low, high, color=COLORS[o], alpha=0.2, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_xlim(hs[0] / 1.25, hs[-1] * 1.25)  # explicit: an all-nan panel has no data limits
        shown = np.concatenate([arrays[f"{o}_statistics"][:, s] for o in ("sim", "wm")])
        if (shown[np.isfinite(shown)] > 0).all():
            ax.set_yscale("log")  # else (a zero statistic, e.g. an untrained reward head) stay linear
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_xlabel("H")
        ax.set_title(label)
        decorate(ax)
    ax = axes[-1]
    interval = arrays["cosine_mean_interval"]
    ax.plot(hs, interval[:, 0], "o-", ms=3, color="k", label="mean per-sample cosine")
    ax.fill_between(hs, interval[:, 1], interval[:, 2], color="k", alpha=0.2, lw=0)
    ax.plot(hs, arrays["cosine_of_means"], "s--", ms=3, color="0.4", label="cosine of the means")
    ax.set_xscale("log", base=2)
    ax.set_xlim(hs[0] / 1.25, hs[-1] * 1.25)
    ax.set_xticks(hs, [str(h) for h in hs])
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("H")
    ax.set_title(r"cos($g_{wm}$, $g_{sim}$)")
    ax.legend(loc="lower left")
    decorate(ax)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    _caption(
        fig,
        f"Gradient statistics of J^H at θ ({identity['policy']['at']}), {identity['env']}: "
        f"n = {settings['grad_samples']} samples per H, each the gradient of the mean J over "
        f"{settings['grad_batch']} start state(s) (deterministic actions, seed {identity['seed']}). Raw "
        f"estimates; bands: 95% percentile bootstrap over samples ({settings['resamples']} resamples); never "
        "smoothed or adjusted. ESNR is PWM's definition, for parity only.",
    )
    return [("gradients", fig)]
