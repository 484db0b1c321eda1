"""Throughput and memory of the envs: ``python -m bench.perf`` (docs/quirks.md: evaluation §9).

For each env: forward env-steps/s (no recording), forward+backward env-steps/s (a taped window of
``horizon`` steps, backward from the summed reward), and MuJoCo's own C ``mj_step`` on the same model
at the same substep as a reference line (single-threaded, ground contact between the body geoms and
the plane as in the engine, reported per control step). Medians over repeats after one warm-up window,
with the 5th-percentile (slow-tail) throughput.
One env-step = one control step (1/60 s) of one env.

    python -m bench.perf --env ant humanoid --num-envs 64 --horizon 32 --out results/perf/perf_cpu.csv

``--train``: where a training iteration's time goes instead (``bench.perf_train``): simulator forward and
backward, actor, critic and world-model updates, evaluation and the rest, per iteration and as shares,
for the ``--preset`` settings (default ``cpu``), with each piece's matrix-product GFLOP and GFLOP per CPU
second set against this core's own matrix-product rate (a ``matmul_reference`` row); rows are appended to
``--out``.

    python -m bench.perf --train --algo shac pwm --env ant --iterations 10 --out results/perf/train_cpu.csv
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import envs
from algos.world_model import SIZES
from bench.algorithms import ALGORITHMS
from bench.cli import debug_requested, report_failure
from bench.perf_train import matmul_reference, train_breakdown, world_model_step
from bench.presets import PRESETS
from bench.provenance import device_info, git_state, package_versions
from bench.rundir import atomic_write_bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        import warp as wp

        return wp.get_mempool_used_mem_high(f"cuda:{device.index or 0}") / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _window(env: Any, horizon: int, generator: torch.Generator, backward: bool) -> float:
    """Run one window of ``horizon`` steps; returns its wall time in seconds."""
    actions = (torch.rand(horizon, env.num_envs, env.act_dim, generator=generator) * 2 - 1).to(env.device)
    _sync(env.device)
    start = time.perf_counter()
    if backward:
        env.detach_state()
        actions.requires_grad_(True)
        total = sum(env.step(actions[t])[1].sum() for t in range(horizon))
        total.backward()
    else:
        with torch.no_grad():
            for t in range(horizon):
                env.step(actions[t])
    _sync(env.device)
    return time.perf_counter() - start


def _summary(times: list[float], steps: int) -> tuple[float, float]:
    rates = steps / np.asarray(times)
    return float(np.median(rates)), float(np.percentile(rates, 5))


def mujoco_model(env: Any) -> mujoco.MjModel:
    """The env's MuJoCo model with the engine's contact pairs, at the engine's substep.

    The engine collides every body geom with the ground plane and nothing else (docs/quirks.md, envs §5);
    the assets switch MuJoCo's collisions off (contype 0), and MuJoCo fixes its collision filter at
    compile time, so the pairs are set on the spec before compiling. Friction is the env's contact_mu.
    """
    spec, params, _ = env.build_physics(env.cfg)
    for geom in spec.geoms:
        ground = geom.parent == spec.worldbody
        geom.contype, geom.conaffinity = (0, 1) if ground else (1, 0)
        geom.friction = [env.model.params.contact_mu, *geom.friction[1:]]
    model = spec.compile()
    model.opt.timestep = env.model.params.control_dt / env.model.params.substeps
    return model


def mujoco_reference(env: Any, steps: int, repeats: int) -> tuple[float, float]:
    """MuJoCo's mj_step env-steps/s on the env's model (ground contact on, same substep)."""
    m = mujoco_model(env)
    substeps = env.model.params.substeps
    d = mujoco.MjData(m)
    mujoco.mj_resetData(m, d)
    d.qpos[:] = env.start_q.cpu().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps * substeps):
            mujoco.mj_step(m, d)
        times.append(time.perf_counter() - start)
    return _summary(times, steps)


def measure(
    env_name: str, num_envs: int, horizon: int, device: str, repeats: int, seed: int = 0
) -> list[dict]:
    """Benchmark one env; returns tidy rows (one per mode)."""
    env = envs.make(env_name, num_envs=num_envs, device=device, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    base = {
        "env": env_name,
        "device": device,
        "num_envs": num_envs,
        "horizon": horizon,
        "substeps": env.model.params.substeps,
        "repeats": repeats,
    }
    for mode, backward in (("forward", False), ("forward_backward", True)):
        _window(env, horizon, generator, backward)  # warm-up: kernel compilation and buffer allocation
        times = [_window(env, horizon, generator, backward) for _ in range(repeats)]
        median, p5 = _summary(times, num_envs * horizon)
        rows.append(
            {
                **base,
                "mode": mode,
                "env_steps_per_s": median,
                "env_steps_per_s_p5": p5,
                "peak_memory_mib": _peak_memory_mib(env.device),
            }
        )
    median, p5 = mujoco_reference(env, horizon, repeats)
    rows.append(
        {
            **base,
            "num_envs": 1,
            "mode": "mujoco_mj_step",
            "env_steps_per_s": median,
            "env_steps_per_s_p5": p5,
            "peak_memory_mib": float("nan"),
        }
    )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env", nargs="+", default=["ant"], choices=envs.names(), help="envs to measure")
    parser.add_argument("--num-envs", type=int, default=64, help="parallel envs N")
    parser.add_argument("--horizon", type=int, default=32, help="steps per measured window H")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:i]'")
    parser.add_argument("--repeats", type=int, default=5, help="measured windows per mode (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV to write (--train: to append to); rows are also printed"
    )
    train = parser.add_argument_group("training breakdown (--train)")
    train.add_argument("--train", action="store_true", help="time training iterations instead of the env")
    train.add_argument("--algo", nargs="+", default=["shac"], choices=list(ALGORITHMS), help="algorithms")
    train.add_argument("--preset", default="cpu", choices=PRESETS, help="budget preset whose settings train")
    train.add_argument("--iterations", type=int, default=10, help="timed iterations (after 1 warm-up)")
    train.add_argument(
        "--world-model-size",
        choices=list(SIZES),
        default=None,
        help="also time world-model training steps of this size (batch 256 x 16 steps; single: the paper's)",
    )
    args = parser.parse_args(argv)
    if args.num_envs < 1 or args.horizon < 1 or args.repeats < 1 or args.iterations < 1:
        parser.error("--num-envs, --horizon, --repeats and --iterations must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but no CUDA device is visible; use --device cpu")
    return args


def _provenance(rows: list[dict], device: str) -> str:
    """Add hardware, time, git commit and package versions to every row; returns the hardware."""
    info = device_info(device)
    hardware = info.get("gpu_model") or f"{info['cpu_model']} (1 core of {info['cpu_count']})"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    versions = package_versions()
    git = git_state()
    for row in rows:
        row.update(
            hardware=hardware,
            measured_at=stamp,
            git_commit=git.get("commit", "unknown"),
            git_dirty=git.get("dirty", "unknown"),
            **{f"version_{k}": v for k, v in versions.items()},
        )
    return hardware


def main_train(args: argparse.Namespace) -> int:
    """``--train``: the per-iteration breakdown of each algo on each env; rows appended to ``--out``."""
    rows = []
    for algo in args.algo:
        for name in args.env:
            breakdown = train_breakdown(algo, name, args.iterations, args.preset, args.seed, args.device)
            rows += breakdown.rows()
    if args.world_model_size is not None:
        for name in args.env:
            size, device = args.world_model_size, args.device
            rows.append(world_model_step(name, size, args.iterations, args.seed, device))
    if args.device == "cpu":
        rows.append(matmul_reference())
    hardware = _provenance(rows, args.device)
    table = pd.DataFrame(rows)
    columns = ["algo", "env", "category", "seconds_per_iteration", "share", "cpu_seconds_per_iteration"]
    shown = table[table["category"] != "matmul_reference"][
        [*columns, "gflop_per_iteration", "gflop_per_cpu_s"]
    ]
    print(f"hardware: {hardware}; preset {args.preset}, {args.iterations} iterations after 1 warm-up")
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for row in rows:
        if row["category"] == "world_model_step":
            print(
                f"world-model step ({row['world_model_size']}, {row['env']}): "
                f"{row['seconds_per_iteration']:.3f} s ({row['cpu_seconds_per_iteration']:.3f} CPU s), "
                f"{row['gflop_per_iteration']:.1f} GFLOP at {row['gflop_per_cpu_s']:.0f} GFLOP per CPU s"
            )
        if row["category"] == "matmul_reference":
            print(
                f"this core's float32 matrix product {row['matmul_shape']} (one thread): "
                f"{row['gflop_per_cpu_s']:.0f} GFLOP per CPU s, the ceiling of the GFLOP rates above"
            )
        if row["category"] == "total":
            print(
                f"{row['algo']} {row['env']}: {row['env_steps_per_s']:,.0f} env-steps/s "
                f"({row['env_steps_per_cpu_s']:,.0f} per CPU second)"
            )
    if args.out is not None:
        if args.out.exists():
            table = pd.concat([pd.read_csv(args.out), table], ignore_index=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, table.to_csv(index=False).encode())
        print(f"appended to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: an error (e.g. the SNU humanoid's missing data files) is one line, exit 1."""
    args = parse_args(argv)
    if debug_requested(args.debug):
        return _main(args)
    try:
        return _main(args)
    except Exception as error:
        return report_failure("python -m bench.perf", error)


def _main(args: argparse.Namespace) -> int:
    if args.train:
        return main_train(args)  # each run sets its own thread count (run.torch_threads)
    torch.set_num_threads(1)  # the Warp CPU kernels are single-threaded; measure one core
    rows = []
    for name in tqdm(args.env, desc="bench.perf", disable=not sys.stderr.isatty()):
        rows += measure(name, args.num_envs, args.horizon, args.device, args.repeats, args.seed)
    hardware = _provenance(rows, args.device)
    table = pd.DataFrame(rows)
    shown = table[
        [
            "env",
            "mode",
            "device",
            "num_envs",
            "horizon",
            "substeps",
            "env_steps_per_s",
            "env_steps_per_s_p5",
            "peak_memory_mib",
        ]
    ]
    print(f"hardware: {hardware}")
    print(shown.to_string(index=False, float_format=lambda x: f"{x:,.0f}"))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, table.to_csv(index=False).encode())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
