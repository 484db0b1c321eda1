"""The analyses behind ``python -m bench.landscape``: settings, restartable storage and the three drivers.

- :func:`run_ball_wall`: the pedagogical ball-and-wall objective and its MLP / SimNorm fits (spec §6).
- :func:`run_slices`: J_sim^H and J_wm^H along filter-normalised random and gradient directions, 1-D wide and
  zoomed grids, one 2-D contour pair, slice metrics and directional-derivative checks (spec §4).
- :func:`run_gradients`: gradient statistics vs H for both objectives and their cosine (spec §5).

Each writes into one output directory: ``config.json`` (resolved settings, inputs with sha256, provenance),
``landscape.npz`` (raw arrays), tidy CSVs and figures (``bench.landscape_plots``). Finished chunks of grid
points (gradients: finished horizons) are kept in ``partial/`` with atomic writes, so rerunning the same
command after Ctrl-C continues where it stopped; a directory holding a different analysis is refused.
"""

from __future__ import annotations

import io
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import envs
from algos.atomic import atomic_write_bytes
from algos.gradient_stats import (
    STATISTICS,
    bootstrap_gradient_statistics,
    gradient_cosine,
    gradient_statistics,
    growth_rate,
)
from algos.landscape import ball_wall
from algos.landscape.directions import filter_normalize, flatten, perturbed, random_directions, unflatten
from algos.landscape.grid import evaluate_grid, line_coefficients, plane_coefficients
from algos.landscape.objectives import (
    SimulatorObjective,
    WorldModelObjective,
    fit_readout,
    per_point_gradients,
    sample_start_states,
)
from bench import plan
from bench.harness import stream_seed
from bench.landscape_inputs import PolicyInputs, WorldModelInputs
from bench.landscape_metrics import (
    FD_STEPS,
    SLICE_METRICS,
    bootstrap_interval,
    central_difference,
    percentile_interval,
    relative_error,
    slice_metric_bootstrap,
)
from bench.provenance import provenance

OBJECTIVES = ("sim", "wm")
GRIDS = ("wide", "zoom")
GRADIENT_DIRECTIONS = ("grad_sim", "grad_wm")
STREAMS = {"starts": 10, "directions": 11, "gradient_starts": 12, "init": 13, "env": 14}
NPZ = "landscape.npz"
CONFIG = "config.json"


@dataclass(frozen=True)
class LandscapeSettings:
    horizons: tuple[int, ...]
    """Horizons H of J^H (the simulator's and the world model's)."""
    batch: int
    """Start states B shared by every grid point (common random numbers)."""
    directions: int
    """Filter-normalised random directions K (plus the two gradient directions)."""
    points: int
    """Points of each 1-D grid (wide and zoomed)."""
    contour_points: int
    """Points per axis of the 2-D contour over the first two random directions (0: none)."""
    contour_horizon: int
    """Horizon of the 2-D contour."""
    grad_samples: int
    """Independent gradient samples n per H (gradients analysis)."""
    grad_batch: int
    """Start states averaged in one gradient sample."""
    resamples: int
    """Bootstrap resamples of every interval."""
    chunk: int
    """Grid points per batched objective call (and per restartable chunk)."""
    wide: float = 1.0
    """Half-width of the wide grid α ∈ [-wide, wide] (filter-normalised units)."""
    zoom: float = 0.05
    """Half-width of the zoomed grid."""
    fd_steps: tuple[float, ...] = FD_STEPS
    """Steps h of the central differences."""
    readout_ridge: float = 1e-3
    """Ridge penalty (per sample) of the latent -> observation read-out."""

    def __post_init__(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"horizons must be >= 1, got {list(self.horizons)}")
        positive = ("batch", "resamples", "chunk", "grad_batch")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.directions < 0 or self.points < 3 or self.grad_samples < 2:
            raise ValueError("need directions >= 0, points >= 3 and grad_samples >= 2")
        if self.contour_points and (self.contour_points < 3 or self.directions < 2):
            raise ValueError("a contour needs contour_points >= 3 and at least 2 random directions")
        if self.contour_points and self.contour_horizon < 1:
            raise ValueError(f"contour_horizon must be >= 1, got {self.contour_horizon}")
        if not (self.zoom > 0 and self.wide > 0 and all(h > 0 for h in self.fd_steps)):
            raise ValueError("wide, zoom and fd_steps must be > 0")

    @property
    def sorted_horizons(self) -> list[int]:
        return sorted(set(self.horizons))


PRESETS: dict[str, LandscapeSettings] = {
    "quick": LandscapeSettings(
        horizons=(16, 32, 64),
        batch=8,
        directions=2,
        points=21,
        contour_points=9,
        contour_horizon=16,
        grad_samples=16,
        grad_batch=1,
        resamples=1000,
        chunk=64,
    ),
    "cpu": LandscapeSettings(
        horizons=(16, 32, 64, 128),
        batch=32,
        directions=8,
        points=41,
        contour_points=21,
        contour_horizon=32,
        grad_samples=128,
        grad_batch=4,
        resamples=2000,
        chunk=64,
    ),
    "paper": LandscapeSettings(
        horizons=(16, 32, 64, 128, 256),
        batch=256,
        directions=8,
        points=101,
        contour_points=41,
        contour_horizon=64,
        grad_samples=128,
        grad_batch=4,
        resamples=2000,
        chunk=16,
    ),
}
PRESET_HELP = {
    "quick": "CPU CI: H 16/32/64, K = 2, 21 points, B = 8, 16 gradient samples (ant: minutes on one core)",
    "cpu": "one CPU core: H 16..128, K = 8, 41 points, B = 32, 128 gradient samples of 4 states",
    "paper": "the spec's protocol (GPU): H 16..256, K = 8, 101 points, B = 256, 128 gradient samples",
}


@dataclass
class Problem:
    """What a slices/gradients analysis evaluates."""

    env: str
    device: str
    policy: PolicyInputs
    world_model: WorldModelInputs
    obs_dim: int
    act_dim: int
    previous_action: bool
    """The env's observation ends with the previous action."""


class NpzStore:
    """Finished chunks of one grid evaluation as ``partial/<prefix>_<index>.npz`` (atomic writes)."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory, self.prefix = directory, prefix

    def path(self, index: int) -> Path:
        return self.directory / f"{self.prefix}_{index:05d}.npz"

    def get(self, index: int) -> tuple[np.ndarray, int] | None:
        path = self.path(index)
        if not path.exists():
            return None
        with np.load(path) as data:
            return data["values"], int(data["invalid"])

    def put(self, index: int, values: np.ndarray, invalid: int) -> None:
        write_npz(self.path(index), values=values, invalid=np.array(invalid))


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar on stderr; redrawn at most every 30 s when stderr is a log file, not a terminal."""
    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0 if sys.stderr.isatty() else 30.0)


def write_npz(path: Path, **arrays: Any) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.10g").encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def open_output(out: Path, identity: dict[str, Any], extra: dict[str, Any]) -> bool:
    """Create ``out`` with its config.json, or check that an existing one is the same analysis.

    Returns True when that analysis has already finished (its figures are then just redrawn).
    """
    path = out / CONFIG
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("identity") != json.loads(json.dumps(identity, default=str)):
            raise ValueError(f"{out} holds a different analysis (see its {CONFIG}); choose another --out")
        return "finished_utc" in old and (out / NPZ).exists()
    write_json(path, {"identity": identity, **extra})
    return False


def _already_complete(out: Path, identity: dict[str, Any], argv: list[str] | None, device: str) -> bool:
    """Open ``out`` for the analysis ``identity`` (keeping a partial one's finished points); True, with its
    figures redrawn, when it is already complete."""
    from bench.landscape_plots import plot_analysis

    if not open_output(out, identity, _metadata(argv, device)):
        return False
    print(f"{out} is already complete; redrawing its figures")
    plot_analysis(out)
    return True


def _finish(out: Path, start: tuple[float, float]) -> Path:
    """Mark ``out`` complete with its wall and CPU seconds since ``start``, and draw its figures."""
    from bench.landscape_plots import plot_analysis

    finish_output(out, time.perf_counter() - start[0], time.process_time() - start[1])
    plot_analysis(out)
    return out


def finish_output(out: Path, seconds: float, cpu_seconds: float) -> None:
    """Record the wall-clock and process CPU time of the finishing session (``wall_time_s``,
    ``cpu_time_s``; plotting excluded) and drop the partial results."""
    config = json.loads((out / CONFIG).read_text())
    config["wall_time_s"], config["cpu_time_s"] = seconds, cpu_seconds
    config["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(out / CONFIG, config)
    for partial in sorted((out / "partial").glob("*.npz")):
        partial.unlink()
    if (out / "partial").exists():
        (out / "partial").rmdir()


def _metadata(argv: list[str] | None, device: str) -> dict[str, Any]:
    return {
        "argv": argv or [],
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(device),
    }


# -- ball and wall -------------------------------------------------------------------------------------


def run_ball_wall(
    out: str | Path,
    seed: int = 0,
    points: int = 2001,
    fit_config: ball_wall.FitConfig | None = None,
    argv: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """Fit both regressors to the ball-wall objective; write arrays, CSVs, config and the figure."""
    out = Path(out)
    start = time.perf_counter(), time.process_time()
    problem, fit_config = ball_wall.BallWall(), fit_config or ball_wall.FitConfig()
    identity = {
        "analysis": "ball_wall",
        "seed": seed,
        "points": points,
        "physics": asdict(problem),
        "fit": asdict(fit_config),
    }
    if _already_complete(out, identity, argv, "cpu"):
        return out
    train_theta = ball_wall.grid(fit_config.samples)
    train_j, _ = ball_wall.values_and_gradients(problem, train_theta)
    theta = ball_wall.grid(points)
    true_j, true_grad = ball_wall.values_and_gradients(problem, theta)
    arrays: dict[str, np.ndarray] = {"theta": theta, "true": true_j, "true_grad": true_grad}
    rows, summary = [], []
    for index, (name, make) in enumerate(
        tqdm(ball_wall.MODELS.items(), desc="ball-wall fits", disable=not progress)
    ):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + index)
            model = make()
        losses = ball_wall.fit(
            model,
            torch.as_tensor(train_theta, dtype=torch.float32),
            torch.as_tensor(train_j, dtype=torch.float32),
            fit_config,
            seed + index,
        )
        values, grads = ball_wall.values_and_gradients(model, theta)
        arrays.update({name: values, f"{name}_grad": grads, f"{name}_loss": np.asarray(losses)})
        summary.append(
            {"model": name, **ball_wall.optimality_gap(theta, true_j, values), "final_mse": losses[-1]}
        )
    for i, t in enumerate(theta):
        rows.append(
            {
                "theta": t,
                "true": true_j[i],
                "true_grad": true_grad[i],
                **{n: arrays[n][i] for n in ball_wall.MODELS},
                **{f"{n}_grad": arrays[f"{n}_grad"][i] for n in ball_wall.MODELS},
            }
        )
    write_npz(out / NPZ, **arrays)
    write_csv(out / "ball_wall.csv", rows)
    write_csv(out / "ball_wall_argmin.csv", summary)
    return _finish(out, start)


# -- slices --------------------------------------------------------------------------------------------


def _problem_identity(
    analysis: str, problem: Problem, settings: LandscapeSettings, seed: int
) -> dict[str, Any]:
    return {
        "analysis": analysis,
        "env": problem.env,
        "seed": seed,
        "device": problem.device,
        "settings": asdict(settings),
        "policy": problem.policy.info,
        "world_model": {k: v for k, v in problem.world_model.info.items() if k != "data"},
        "objective": {
            "gamma": problem.policy.policy.gamma,
            "early_termination": False,
            "actions": "deterministic tanh(mu)",
            "terminal_value": "critic ensemble minimum" if problem.policy.policy.critic else "none (0)",
        },
    }


def _objectives(
    problem: Problem, starts: Any, horizon: int, seed: int, ridge: float
) -> tuple[dict[str, Any], torch.Tensor]:
    """Both objectives; the world model's read-out is fitted on a simulator rollout of θ from ``starts``."""
    policy = problem.policy.policy
    sim = SimulatorObjective(problem.env, policy, problem.device, stream_seed(seed, STREAMS["env"]))
    theta = policy.theta()
    with torch.no_grad():
        rollout = sim(perturbed(theta, [], torch.zeros(1, 0)), starts, [horizon], record=True)
    readout = fit_readout(problem.world_model.model, rollout.observations.reshape(-1, problem.obs_dim), ridge)
    wm = WorldModelObjective(
        problem.world_model.model,
        policy,
        readout,
        problem.world_model.reward_mean,
        problem.world_model.reward_std,
        problem.previous_action,
    )
    return {"sim": sim, "wm": wm}, readout.r2


def _fd_coefficients(count: int, steps: tuple[float, ...]) -> np.ndarray:
    """Rows +h d_k, -h d_k for every direction k and step h (k-major, then h, then sign)."""
    rows = []
    for k in range(count):
        for h in steps:
            for sign in (1.0, -1.0):
                row = np.zeros(count)
                row[k] = sign * h
                rows.append(row)
    return np.array(rows).reshape(-1, count)


def _slice_alphas(settings: LandscapeSettings) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Coordinates of the wide and zoomed 1-D grids, and of each axis of the 2-D contour."""
    alphas = {
        "wide": np.linspace(-settings.wide, settings.wide, settings.points),
        "zoom": np.linspace(-settings.zoom, settings.zoom, settings.points),
    }
    return alphas, np.linspace(-settings.wide, settings.wide, settings.contour_points)


def _slice_jobs(
    settings: LandscapeSettings, alphas: dict[str, np.ndarray], contour_alpha: np.ndarray
) -> list[tuple[str, int | None, np.ndarray, list[int]]]:
    """The grid evaluations of a slices analysis: (name, H of its gradient directions or None for the first
    random directions, coefficients [P, K], horizons rolled)."""
    hs, k = settings.sorted_horizons, settings.directions
    jobs: list[tuple[str, int | None, np.ndarray, list[int]]] = [
        (f"random_{grid}", None, line_coefficients(k, alphas[grid]), hs) for grid in GRIDS
    ]
    jobs.append(("random_fd", None, _fd_coefficients(k, settings.fd_steps), hs))
    for h in hs:
        for grid in GRIDS:
            jobs.append((f"gradient_{grid}_H{h}", h, line_coefficients(2, alphas[grid]), [h]))
        jobs.append((f"gradient_fd_H{h}", h, _fd_coefficients(2, settings.fd_steps), [h]))
    if settings.contour_points:
        coefficients = plane_coefficients(contour_alpha, contour_alpha)
        jobs.append(("contour", None, coefficients, [settings.contour_horizon]))
    return jobs


def run_slices(
    out: str | Path,
    problem: Problem,
    settings: LandscapeSettings,
    seed: int = 0,
    argv: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """1-D slices (random and gradient directions, wide and zoomed), FD checks and a 2-D contour pair."""
    out = Path(out)
    start = time.perf_counter(), time.process_time()
    if _already_complete(out, _problem_identity("slices", problem, settings, seed), argv, problem.device):
        return out
    hs, k = settings.sorted_horizons, settings.directions
    policy = problem.policy.policy
    theta = policy.theta()
    starts = sample_start_states(
        problem.env, settings.batch, stream_seed(seed, STREAMS["starts"]), problem.device
    )
    objectives, readout_r2 = _objectives(problem, starts, hs[-1], seed, settings.readout_ridge)
    random = random_directions(theta, k, stream_seed(seed, STREAMS["directions"]))

    # Gradients of the batch-mean J^H at θ (one per objective and H) and their filter-normalised directions.
    grads = {}
    for name, objective in objectives.items():
        per_h, _ = per_point_gradients(objective, perturbed(theta, [], torch.zeros(1, 0)), starts, hs)
        grads[name] = torch.stack([g[0] for g in per_h])  # [nH, n_params]
    grad_dirs = {
        h: [filter_normalize(unflatten(grads[o][i].to(torch.float32), theta), theta) for o in OBJECTIVES]
        for i, h in enumerate(hs)
    }
    alphas, contour_alpha = _slice_alphas(settings)
    jobs = _slice_jobs(settings, alphas, contour_alpha)
    total = sum(c.shape[0] for _, _, c, _ in jobs) * len(objectives)
    bar = _progress(total, "slices: grid points", progress)
    results: dict[str, np.ndarray] = {}
    invalid = {name: 0 for name in objectives}
    for name, objective in objectives.items():
        for job, gradient_h, coefficients, horizons in jobs:
            if coefficients.shape[0] == 0:
                continue
            directions = random[: coefficients.shape[1]] if gradient_h is None else grad_dirs[gradient_h]
            store = NpzStore(out / "partial", f"{name}_{job}")
            values, bad = evaluate_grid(
                objective,
                theta,
                directions,
                coefficients,
                starts,
                horizons,
                settings.chunk,
                store,
                bar.update,
            )
            results[f"{name}_{job}"] = values
            invalid[name] += bad
    bar.close()

    arrays = _assemble_slices(results, grads, random, grad_dirs, settings, readout_r2, alphas, contour_alpha)
    arrays["invalid_states"] = np.array([invalid[o] for o in OBJECTIVES])
    write_npz(out / NPZ, **arrays)
    _slice_tables(out, arrays, settings, seed)
    return _finish(out, start)


def _assemble_slices(
    results: dict[str, np.ndarray],
    grads: dict[str, torch.Tensor],
    random: list[Any],
    grad_dirs: dict[int, list[Any]],
    settings: LandscapeSettings,
    readout_r2: torch.Tensor,
    alphas: dict[str, np.ndarray],
    contour_alpha: np.ndarray,
) -> dict[str, np.ndarray]:
    """Raw arrays of the slices analysis (J values keep the start-state axis B last)."""
    hs, k, a, b = settings.sorted_horizons, settings.directions, settings.points, settings.batch
    nfd = len(settings.fd_steps)
    arrays: dict[str, np.ndarray] = {
        "horizons": np.array(hs),
        "alpha_wide": alphas["wide"],
        "alpha_zoom": alphas["zoom"],
        "fd_steps": np.array(settings.fd_steps),
        "readout_r2": readout_r2.cpu().numpy(),
    }
    for o in OBJECTIVES:
        for grid in GRIDS:
            if k:
                arrays[f"{o}_random_{grid}"] = results[f"{o}_random_{grid}"].reshape(len(hs), k, a, b)
            else:
                arrays[f"{o}_random_{grid}"] = np.zeros((len(hs), 0, a, b))
            arrays[f"{o}_gradient_{grid}"] = np.stack(
                [results[f"{o}_gradient_{grid}_H{h}"][0].reshape(2, a, b) for h in hs]
            )
        random_fd = (
            results[f"{o}_random_fd"].reshape(len(hs), k, nfd, 2, b)
            if k
            else np.zeros((len(hs), 0, nfd, 2, b))
        )
        gradient_fd = np.stack([results[f"{o}_gradient_fd_H{h}"][0].reshape(2, nfd, 2, b) for h in hs])
        arrays[f"{o}_fd"] = np.concatenate([random_fd, gradient_fd], axis=1)  # [nH, K + 2, nfd, ±, B]
        # Autodiff directional derivatives g·d of the batch-mean J^H along every direction at that H.
        derivative = np.zeros((len(hs), k + 2))
        for i, h in enumerate(hs):
            dirs = [*random, *grad_dirs[h]]
            derivative[i] = [float(grads[o][i] @ flatten(d)) for d in dirs]
        arrays[f"{o}_autodiff"] = derivative
        arrays[f"{o}_grad_norm"] = grads[o].norm(dim=1).cpu().numpy()
        if settings.contour_points:
            c = settings.contour_points
            arrays[f"{o}_contour"] = results[f"{o}_contour"][0].reshape(c, c, b)
    arrays["contour_alpha"] = contour_alpha
    arrays["grad_cosine"] = gradient_cosine(grads["sim"].cpu().numpy(), grads["wm"].cpu().numpy())
    return arrays


def _direction_names(k: int) -> list[str]:
    return [f"random_{i}" for i in range(k)] + list(GRADIENT_DIRECTIONS)


def _slice_tables(out: Path, arrays: dict[str, np.ndarray], settings: LandscapeSettings, seed: int) -> None:
    hs, k = settings.sorted_horizons, settings.directions
    names = _direction_names(k)
    values_rows, metric_rows, fd_rows, fd_summary = [], [], [], []
    for i, h in enumerate(hs):
        for grid in GRIDS:
            alpha = arrays[f"alpha_{grid}"]
            for o in OBJECTIVES:
                slices = np.concatenate([arrays[f"{o}_random_{grid}"][i], arrays[f"{o}_gradient_{grid}"][i]])
                for j, name in enumerate(names):
                    mean = slices[j].mean(axis=1)
                    sem = (
                        slices[j].std(axis=1, ddof=1) / np.sqrt(slices.shape[2])
                        if slices.shape[2] > 1
                        else 0 * mean
                    )
                    for x, m, s in zip(alpha, mean, sem, strict=True):
                        values_rows.append(
                            {
                                "objective": o,
                                "horizon": h,
                                "direction": name,
                                "grid": grid,
                                "alpha": x,
                                "J_mean": m,
                                "J_sem": s,
                            }
                        )
            groups = {"random": slice(0, k), "grad_sim": slice(k, k + 1), "grad_wm": slice(k + 1, k + 2)}
            for group, sel in groups.items():
                if sel.stop <= sel.start:
                    continue
                for metric in SLICE_METRICS:
                    draws = {}
                    for o in OBJECTIVES:
                        slices = np.concatenate(
                            [arrays[f"{o}_random_{grid}"][i], arrays[f"{o}_gradient_{grid}"][i]]
                        )
                        estimate, draws[o] = slice_metric_bootstrap(
                            alpha, slices[sel], metric, settings.resamples, seed
                        )
                        low, high = percentile_interval(draws[o])
                        metric_rows.append(
                            {
                                "horizon": h,
                                "grid": grid,
                                "directions": group,
                                "metric": metric,
                                "objective": o,
                                "estimate": estimate,
                                "low": low,
                                "high": high,
                            }
                        )
                    low, high = percentile_interval(draws["wm"] - draws["sim"])
                    metric_rows.append(
                        {
                            "horizon": h,
                            "grid": grid,
                            "directions": group,
                            "metric": metric,
                            "objective": "wm_minus_sim",
                            "estimate": metric_rows[-1]["estimate"] - metric_rows[-2]["estimate"],
                            "low": low,
                            "high": high,
                        }
                    )
        for o in OBJECTIVES:
            fd_values = arrays[f"{o}_fd"][i].mean(axis=-1)  # [K + 2, nfd, ±]
            autodiff = arrays[f"{o}_autodiff"][i]
            for s, step in enumerate(settings.fd_steps):
                central = central_difference(fd_values[:, s, 0], fd_values[:, s, 1], step)
                errors = relative_error(central, autodiff)
                for j, name in enumerate(names):
                    fd_rows.append(
                        {
                            "objective": o,
                            "horizon": h,
                            "direction": name,
                            "h": step,
                            "autodiff": autodiff[j],
                            "central_difference": central[j],
                            "relative_error": errors[j],
                        }
                    )
                fd_summary.append(
                    {
                        "objective": o,
                        "horizon": h,
                        "h": step,
                        "median_relative_error": float(np.nanmedian(errors)),
                        "cosine": float(gradient_cosine(central, autodiff)),
                        "sign_agreement": float(np.mean(np.sign(central) == np.sign(autodiff))),
                        "directions": len(names),
                    }
                )
    write_csv(out / "slices_values.csv", values_rows)
    write_csv(out / "slices_metrics.csv", metric_rows)
    write_csv(out / "slices_fd.csv", fd_rows)
    write_csv(out / "slices_fd_summary.csv", fd_summary)
    gradient_rows = [
        {
            "horizon": h,
            "grad_norm_sim": arrays["sim_grad_norm"][i],
            "grad_norm_wm": arrays["wm_grad_norm"][i],
            "cosine_wm_sim": arrays["grad_cosine"][i],
        }
        for i, h in enumerate(hs)
    ]
    write_csv(out / "slices_gradients.csv", gradient_rows)


# -- gradient statistics -------------------------------------------------------------------------------


def run_gradients(
    out: str | Path,
    problem: Problem,
    settings: LandscapeSettings,
    seed: int = 0,
    argv: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """n per-sample gradients of J_sim^H and J_wm^H at θ for every H: statistics, bands, cosines."""
    out = Path(out)
    start = time.perf_counter(), time.process_time()
    if _already_complete(out, _problem_identity("gradients", problem, settings, seed), argv, problem.device):
        return out
    hs, n, per = settings.sorted_horizons, settings.grad_samples, settings.grad_batch
    theta = problem.policy.policy.theta()
    starts = sample_start_states(
        problem.env, n * per, stream_seed(seed, STREAMS["gradient_starts"]), problem.device
    )
    objectives, readout_r2 = _objectives(problem, starts, hs[-1], seed, settings.readout_ridge)
    samples_per_call = max(1, settings.chunk // per)
    bar = _progress(len(hs) * n * len(objectives), "gradients: samples", progress)
    done: dict[int, dict[str, np.ndarray]] = {}
    for h in hs:
        path = out / "partial" / f"gradients_H{h:05d}.npz"
        if path.exists():
            with np.load(path) as data:
                done[h] = dict(data)
            bar.update(n * len(objectives))
            continue
        samples, returns = {}, {}
        for name, objective in objectives.items():
            rows, values = [], []
            for first in range(0, n, samples_per_call):
                count = min(samples_per_call, n - first)
                params = perturbed(theta, [], torch.zeros(count, 0))
                chunk = type(starts)(
                    starts.q[first * per : (first + count) * per],
                    starts.qd[first * per : (first + count) * per],
                    starts.obs[first * per : (first + count) * per],
                )
                (g,), rollout = per_point_gradients(objective, params, chunk, [h])
                rows.append(g.cpu().numpy())
                values.append(rollout.returns[0].mean(dim=1).cpu().numpy())
                bar.update(count)
            samples[name], returns[name] = np.concatenate(rows), np.concatenate(values)
        done[h] = _gradient_summary(samples, returns, settings.resamples, seed)
        write_npz(path, **done[h])
    bar.close()
    arrays: dict[str, np.ndarray] = {"horizons": np.array(hs), "readout_r2": readout_r2.cpu().numpy()}
    for key in done[hs[0]]:
        arrays[key] = np.stack([done[h][key] for h in hs])
    write_npz(out / NPZ, **arrays)
    _gradient_tables(out, arrays, settings, seed)
    return _finish(out, start)


def _gradient_summary(
    samples: dict[str, np.ndarray], returns: dict[str, np.ndarray], resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per objective: statistics, their bootstrap draws, per-sample norms and returns; the cosines."""
    summary: dict[str, np.ndarray] = {}
    for o in OBJECTIVES:
        g = samples[o]
        stats = gradient_statistics(g)
        draws = bootstrap_gradient_statistics(g, resamples, seed)
        summary[f"{o}_statistics"] = np.array([stats[s] for s in STATISTICS])
        summary[f"{o}_draws"] = np.stack([draws[s] for s in STATISTICS])
        summary[f"{o}_sample_norms"] = np.linalg.norm(g, axis=1)
        summary[f"{o}_returns"] = returns[o]
        summary[f"{o}_nonfinite"] = np.array(int((~np.isfinite(g)).any(axis=1).sum()))
    cosine = gradient_cosine(samples["sim"], samples["wm"])
    summary["cosine"] = cosine
    summary["cosine_of_means"] = np.array(gradient_cosine(samples["sim"].mean(0), samples["wm"].mean(0)))
    estimate, low, high = bootstrap_interval(cosine, _finite_mean, resamples, seed)
    summary["cosine_mean_interval"] = np.array([estimate, low, high])
    return summary


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries (nan where there are none: zero gradients)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _gradient_tables(
    out: Path, arrays: dict[str, np.ndarray], settings: LandscapeSettings, seed: int
) -> None:
    hs = settings.sorted_horizons
    rows = []
    for o in OBJECTIVES:
        for i, h in enumerate(hs):
            for s, stat in enumerate(STATISTICS):
                low, high = percentile_interval(arrays[f"{o}_draws"][i, s])
                rows.append(
                    {
                        "objective": o,
                        "horizon": h,
                        "statistic": stat,
                        "estimate": arrays[f"{o}_statistics"][i, s],
                        "low": low,
                        "high": high,
                        "samples": settings.grad_samples,
                    }
                )
        if len(hs) >= 2:
            norms = arrays[f"{o}_draws"][:, STATISTICS.index("mean_norm")]  # [nH, R]
            slopes = np.array([growth_rate(hs, norms[:, r]) for r in range(norms.shape[1])])
            low, high = percentile_interval(slopes)
            estimate = growth_rate(hs, arrays[f"{o}_statistics"][:, STATISTICS.index("mean_norm")])
            rows.append(
                {
                    "objective": o,
                    "horizon": -1,
                    "statistic": "log_mean_norm_growth_per_step",
                    "estimate": estimate,
                    "low": low,
                    "high": high,
                    "samples": settings.grad_samples,
                }
            )
    for i, h in enumerate(hs):
        estimate, low, high = arrays["cosine_mean_interval"][i]
        rows.append(
            {
                "objective": "wm_vs_sim",
                "horizon": h,
                "statistic": "cosine_mean",
                "estimate": estimate,
                "low": low,
                "high": high,
                "samples": settings.grad_samples,
            }
        )
        rows.append(
            {
                "objective": "wm_vs_sim",
                "horizon": h,
                "statistic": "cosine_of_means",
                "estimate": float(arrays["cosine_of_means"][i]),
                "low": np.nan,
                "high": np.nan,
                "samples": settings.grad_samples,
            }
        )
    write_csv(out / "gradients.csv", rows)


# -- plan ----------------------------------------------------------------------------------------------


def plan_analysis(
    analysis: str, problem: Problem, settings: LandscapeSettings, seed: int, command: str, preset: str | None
) -> plan.Plan:
    """The rollouts of ``analysis`` ("slices" or "gradients"), one stage per objective, with a wall-clock
    estimate from one chunk of the real work timed at the smallest horizon H and at 2H on this device
    (:func:`bench.plan.linear_cost`). The warm-up uses its own objectives and start states, and restores the
    global RNG states, so the analysis's numbers do not change. The gradients' bootstrap is a stage of its
    own; the slices' bootstrap, the tables and the figures are not included."""
    if analysis not in ("slices", "gradients"):
        raise ValueError(f"no plan for analysis {analysis!r}; valid: slices, gradients")
    hs = settings.sorted_horizons
    if analysis == "slices":
        chunk, batch, stream = settings.chunk, settings.batch, STREAMS["starts"]
        jobs = [(c.shape[0], max(h)) for _, _, c, h in _slice_jobs(settings, *_slice_alphas(settings))]
    else:
        chunk, batch, stream = (
            max(1, settings.chunk // settings.grad_batch),
            settings.grad_batch,
            STREAMS["gradient_starts"],
        )
        jobs = [(settings.grad_samples, h) for h in hs]
    points = min(chunk, max(p for p, _ in jobs))  # one call as large as the analysis's largest
    stages = []
    with plan.isolated(None):
        starts = sample_start_states(problem.env, batch, stream_seed(seed, stream), problem.device)
        objectives, _ = _objectives(problem, starts, hs[0], seed, settings.readout_ridge)
        params = perturbed(problem.policy.policy.theta(), [], torch.zeros(points, 0))
        many = starts.repeat(points)
        for name, objective in objectives.items():

            def call(h: int, objective: Any = objective) -> None:
                if analysis == "gradients":
                    per_point_gradients(objective, params, many, [h])
                else:
                    with torch.no_grad():
                        objective(params, many, [h])

            t1 = plan.seconds_per_call(lambda: call(hs[0]), 2)
            t2 = plan.seconds_per_call(lambda: call(2 * hs[0]), 1)  # the env of the first call is reused
            cost = plan.linear_cost(hs[0], t1, 2 * hs[0], t2)
            stages.append(plan.rollout_stage(f"{analysis} {name}", jobs, chunk, batch, cost))
        if analysis == "gradients":
            stages.append(_statistics_stage(problem, settings))
    return plan.Plan(command, problem.device, tuple(stages), preset)


def _statistics_stage(problem: Problem, settings: LandscapeSettings) -> plan.Stage:
    """The bootstrap of the gradient statistics at every H, timed on random gradients of the real size with
    10 and 20 resamples (its time is linear in the resamples and does not depend on the numbers)."""
    size = sum(t.numel() for t in problem.policy.policy.theta().values())
    rng = np.random.default_rng(0)
    samples = {o: rng.standard_normal((settings.grad_samples, size)) for o in OBJECTIVES}
    returns = {o: rng.standard_normal(settings.grad_samples) for o in OBJECTIVES}
    times = [
        plan.seconds_per_call(lambda r=r: _gradient_summary(samples, returns, r, 0), 1) for r in (10, 20)
    ]
    fixed, per_resample = plan.linear_cost(10, times[0], 20, times[1])
    count = len(settings.sorted_horizons)
    return plan.Stage(
        "gradients statistics",
        "resample",
        count * settings.resamples,
        per_resample,
        overhead_s=count * fixed,
        overhead=f"{count} horizons' statistics",
    )


def resolve_preset(preset: str, horizons: list[int] | None = None) -> LandscapeSettings:
    """A preset's settings, optionally with other horizons (the contour moves to the smallest if needed)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    settings = PRESETS[preset]
    if horizons is None:
        return settings
    hs = tuple(horizons)
    if not hs or min(hs) < 1:
        raise ValueError(f"horizons must be >= 1, got {list(hs)}")
    contour = settings.contour_horizon if settings.contour_horizon in hs else min(hs)
    return replace(settings, horizons=hs, contour_horizon=contour)


def build_problem(
    env: str,
    policy: str | None,
    at: str,
    world_model: str,
    seed: int,
    device: str = "cpu",
) -> Problem:
    """Load the policy (``at`` final: its actor; init: a fresh actor seeded from ``seed``) and the world
    model, checked against ``env``."""
    from bench.landscape_inputs import load_policy, load_world_model

    probe = envs.make(env, num_envs=1, device=device)
    init_seed = stream_seed(seed, STREAMS["init"])
    policy_inputs = load_policy(policy, at, env, probe.obs_dim, probe.act_dim, init_seed, device)
    wm_inputs = load_world_model(world_model, env, probe.obs_dim, probe.act_dim, device)
    return Problem(
        env, device, policy_inputs, wm_inputs, probe.obs_dim, probe.act_dim, probe.with_previous_action
    )
