"""``python -m bench.sweep``: a grid of bench.run / bench.pretrain commands on this machine or a Ray cluster.

Plan: ``bench.sweep_plan``; scheduling, manifest and resume: ``bench.sweep_runner``; backends:
``bench.sweep_backends``; time estimates: ``bench.sweep_estimates``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import envs
from bench import sweep_plan
from bench.presets import PRESETS
from bench.rundir import read_json
from bench.sweep_backends import BACKENDS, CODE_ROOT, BackendError, LocalBackend, RayBackend
from bench.sweep_estimates import format_plan
from bench.sweep_plan import PWM_DATA, SweepSpec, Task
from bench.sweep_runner import MANIFEST, run_sweep

EPILOG = """\
examples:
  python -m bench.sweep --algos shac,pwm --envs ant,humanoid --seeds 0-4 --preset cpu --out runs/s1 --dry-run
  python -m bench.sweep --algos shac,pwm --envs ant,humanoid --seeds 0-4 --preset cpu --out runs/s1
  python -m bench.sweep --file sweep.toml --out runs/sweep2 --backend ray --address auto --gpus-per-run 1
  python -m bench.sweep --resume --out runs/s1          # the recorded plan again
  python -m bench.sweep --report --out runs/s1          # only bench.report on the complete runs

ALGOS are algo or algo:variant (shac, shac:diffrl, pwm, pwm:offline). A PWM cell is three tasks (data,
pretraining, policy; --pwm-data chooses how they are shared). Every task is the bench.run / bench.pretrain
command a user would type, in its own process and run directory under OUT (layout: bench/sweep_runner.py);
OUT/sweep.json records the plan and every attempt. Running the same sweep again skips complete runs and
resumes interrupted ones from their checkpoints; failed attempts are retried --retries times. Ctrl-C
forwards SIGINT to the running tasks, which checkpoint; run the command again to continue.

exit codes: 0 all tasks complete, 1 some task failed, 2 invalid arguments, 130 / 143 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sweep",
        description="Run a grid of warpbench runs (algos x envs x seeds) locally or on a Ray cluster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = parser.add_argument_group("the grid (or --file)")
    grid.add_argument("--algos", help="comma-separated algo[:variant] names, e.g. shac,pwm:offline")
    grid.add_argument("--envs", help="comma-separated env names: " + ", ".join(envs.names()))
    grid.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,2,5")
    grid.add_argument("--preset", choices=PRESETS, help="budget preset of every run (default: paper)")
    grid.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bench.run --set for every scored run (SHAC runs, PWM policies); repeatable",
    )
    grid.add_argument(
        "--pwm-data",
        choices=PWM_DATA,
        help="PWM data and world model: separate (per seed, default), shared (one per env serves all "
        "seeds), shac (the sweep's SHAC run of the same seed records the data)",
    )
    grid.add_argument("--file", type=Path, help="a TOML or JSON sweep file (keys as above, plus [[cells]])")
    grid.add_argument("--resume", action="store_true", help="run the plan recorded in OUT/sweep.json")
    parser.add_argument("--out", type=Path, required=True, help="the sweep directory")
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="(default: %(default)s)")
    parser.add_argument(
        "--address", help="ray: 'auto' or HOST:PORT of a running cluster (default: start a local instance)"
    )
    parser.add_argument("--cpus-per-run", type=int, default=1, help="cores per run (default: %(default)s)")
    parser.add_argument(
        "--gpus-per-run", type=float, default=0, help="ray: GPUs per run; > 0 runs on cuda (default: 0)"
    )
    parser.add_argument("--workers", type=int, help="local: runs at a time (default: cores / --cpus-per-run)")
    parser.add_argument("--retries", type=int, default=1, help="retries of a failed task (default: 1)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and estimated time; run nothing"
    )
    parser.add_argument("--report", action="store_true", help="only run bench.report on OUT/runs")
    parser.add_argument("--no-report", action="store_true", help="skip bench.report at the end")
    return parser


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The sweep file's spec (if any) with the grid options given on the command line on top."""
    spec = sweep_plan.load_sweep_file(args.file) if args.file else SweepSpec()
    if args.algos:
        spec.algos = sweep_plan.split_names(args.algos)
    if args.envs:
        spec.envs = sweep_plan.split_names(args.envs)
    if args.seeds:
        spec.seeds = sweep_plan.parse_seeds(args.seeds)
    spec.preset = args.preset or spec.preset
    spec.pwm_data = args.pwm_data or spec.pwm_data
    spec.set = [*spec.set, *args.overrides]
    return spec


def recorded_plan(out: Path) -> list[Task]:
    """The tasks recorded in ``out/sweep.json``, in dependency order."""
    path = out / MANIFEST
    if not path.exists():
        raise ValueError(f"{path} does not exist: nothing to resume")
    tasks = [Task.from_dict(entry["task"]) for entry in read_json(path)["tasks"].values()]
    return sweep_plan.dependency_order(tasks)


def run_report(out: Path) -> int:
    """``bench.report`` on the sweep's scored runs, into ``out/report``."""
    command = [sys.executable, "-m", "bench.report", str(out / "runs"), "--out", str(out / "report")]
    print("[sweep] " + " ".join(command[1:]), flush=True)
    return subprocess.call(command, cwd=CODE_ROOT)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.report:
        return run_report(out)
    if args.backend == "local" and args.gpus_per_run:
        parser.error(
            "--gpus-per-run needs --backend ray (a local Ray instance schedules this machine's GPUs)"
        )
    if args.retries < 0:
        parser.error(f"--retries must be >= 0, got {args.retries}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    grid = ("algos", "envs", "seeds", "preset", "pwm_data", "file", "overrides")
    if args.resume and any(getattr(args, name) for name in grid):
        parser.error("--resume runs the plan recorded in OUT/sweep.json; give only --out and backend options")
    try:
        plan = (
            recorded_plan(out) if args.resume else sweep_plan.build_plan(spec_from_args(args), envs.names())
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if args.dry_run:
        slots = args.workers or max(1, len(os.sched_getaffinity(0)) // args.cpus_per_run)
        print(format_plan(plan, out, slots))
        return 0
    try:
        if args.backend == "ray":
            backend = RayBackend(args.address, args.cpus_per_run, args.gpus_per_run)
        else:
            backend = LocalBackend(args.cpus_per_run, args.workers)
    except BackendError as error:
        parser.error(str(error))
    print(f"[sweep] {len(plan)} tasks on {backend.describe()}; manifest {out / MANIFEST}", flush=True)
    try:
        code = run_sweep(
            plan,
            out,
            backend,
            retries=args.retries,
            device="cuda" if args.gpus_per_run else "cpu",
            # Ray workers do not inherit the driver's environment: pass the project's settings on.
            env={k: v for k, v in os.environ.items() if k.startswith("WARPBENCH_")},
            argv=["python", "-m", "bench.sweep", *argv],
            backend_name=args.backend,
        )
    except ValueError as error:
        parser.error(str(error))
    finally:
        backend.close()
    if code == 0 and not args.no_report:
        code = run_report(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
