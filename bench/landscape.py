"""``python -m bench.landscape``: optimisation landscapes and gradient quality, simulator vs world model.

Subcommands (evaluation spec §4-§6; the library code is in ``algos.landscape``, ``algos.gradient_stats``,
``bench.landscape_metrics`` and the drivers in ``bench.landscape_run``):

- ``ball-wall`` (the default): the pedagogical ball-and-wall objective and its MLP / SimNorm fits;
- ``slices``: J_sim^H vs J_wm^H along random and gradient directions at one policy θ;
- ``gradients``: gradient statistics vs H for both objectives, and their cosine;
- ``plot DIR``: regenerate the figures of a finished analysis from its files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import envs
from bench.landscape_inputs import AT_CHOICES
from bench.landscape_plots import plot_analysis
from bench.landscape_run import (
    PRESET_HELP,
    PRESETS,
    build_problem,
    plan_analysis,
    resolve_preset,
    run_ball_wall,
    run_gradients,
    run_slices,
)

SUBCOMMANDS = ("ball-wall", "slices", "gradients", "plot")
DEFAULT_OUT = Path("runs") / "landscape"
EXIT_CODES = "exit codes: 0 done, 2 invalid arguments or inputs, 130 Ctrl-C (finished points are kept)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of start states, directions, fits (0)")
    parser.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/<analysis name>)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one core)")


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:6s} {PRESET_HELP[name]}" for name in PRESETS)
    parser = argparse.ArgumentParser(
        prog="python -m bench.landscape",
        description="Optimisation landscapes and gradient quality of the H-step objective, through the "
        "differentiable simulator and through a learned world model (no subcommand: ball-wall).",
        epilog=f"presets:\n{presets}\n\nexamples:\n"
        "  python -m bench.landscape\n"
        "  python -m bench.landscape slices --env ant --policy runs/ant/shac/seed0_<time> "
        "--world-model runs/ant/pwm_pretrain/seed0_<time>/checkpoints/final.pt --preset cpu\n"
        "  python -m bench.landscape gradients --env ant --at init --world-model WM.pt\n"
        "  python -m bench.landscape plot runs/landscape/slices_ant_final_cpu_seed0\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    ball = sub.add_parser(
        "ball-wall",
        help="the ball-and-wall objective and its two fits (seconds)",
        description="The ball-and-wall objective and its two fits; it runs in seconds, so prints no plan.",
    )
    _common(ball)
    for name, what in (
        ("slices", "1-D/2-D slices of J_sim^H and J_wm^H"),
        ("gradients", "gradient statistics"),
    ):
        p = sub.add_parser(
            name,
            help=what,
            description=f"{what} at one policy θ. Before it starts, the plan is printed: the rollouts per "
            "objective and their wall-clock, estimated from one chunk of the work timed on this device.",
            epilog=EXIT_CODES,
        )
        _common(p)
        p.add_argument("--device", default="cpu", help="torch/warp device (cpu)")
        p.add_argument("--preset", choices=list(PRESETS), default="quick", help="budget preset (quick)")
        p.add_argument("--env", choices=envs.names(), required=True, help="registered env name")
        p.add_argument(
            "--policy", help="bench.run SHAC run directory or checkpoint (not needed with --at init)"
        )
        p.add_argument(
            "--at",
            choices=AT_CHOICES,
            default="final",
            help="θ: the checkpoint's actor or a fresh one (final)",
        )
        p.add_argument("--world-model", required=True, help="bench.pretrain world-model checkpoint (.pt)")
        p.add_argument("--horizons", type=int, nargs="+", help="horizons H >= 1 (default: the preset's)")
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="print the plan (rollouts per objective, estimated from a short timed warm-up) and exit",
        )
    plot = sub.add_parser("plot", help="regenerate the figures of a finished analysis")
    plot.add_argument("dir", help="analysis output directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["ball-wall", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    recorded = ["python", "-m", "bench.landscape", *argv]
    try:
        if args.command == "plot":
            for path in plot_analysis(args.dir):
                print(path)
            return 0
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        if args.command == "ball-wall":
            out = args.out or DEFAULT_OUT / f"ball_wall_seed{args.seed}"
            print(f"output: {run_ball_wall(out, args.seed, argv=recorded)}")
            return 0
        settings = resolve_preset(args.preset, args.horizons)
        if args.policy is None and args.at != "init":
            parser.error("--policy is required unless --at init")
        problem = build_problem(args.env, args.policy, args.at, args.world_model, args.seed, args.device)
        name = f"{args.command}_{args.env}_{args.at}_{args.preset}_seed{args.seed}"
        out = args.out or DEFAULT_OUT / name
        command = " ".join(["bench.landscape", *argv])
        print(
            plan_analysis(args.command, problem, settings, args.seed, command, args.preset).format(),
            flush=True,
        )
        if args.dry_run:
            return 0
        run = run_slices if args.command == "slices" else run_gradients
        print(f"output: {run(out, problem, settings, args.seed, argv=recorded, progress=True)}")
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error).splitlines()[0])
    except KeyboardInterrupt:
        print(
            "interrupted; finished grid points are kept, rerun the same command to continue", file=sys.stderr
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
