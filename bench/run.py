"""``python -m bench.run``: train one algorithm on one env into a run directory (logic in bench.harness)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import headless

headless.select_gl_backend()  # before mujoco's first import (through envs): --video renders headless

import envs  # noqa: E402
from bench import cli  # noqa: E402
from bench.algorithms import ALGORITHMS  # noqa: E402
from bench.harness import COMMAND, resume_run, start_run  # noqa: E402
from bench.pipeline import run_pipeline  # noqa: E402
from bench.presets import PRESET_HELP, PRESETS, VARIANTS, default_variant  # noqa: E402
from bench.settings import ConfigError  # noqa: E402

EPILOG = """\
presets:
{presets}

examples:
  python -m bench.run --algo shac --env ant --seed 0 --preset cpu
  python -m bench.run --algo shac --env ant --variant diffrl --set algo.actor_lr=1e-3 --set env.num_envs=32
  python -m bench.run --algo shac --env ant --save-data --set env.early_termination=false
  python -m bench.run --algo ppo --env ant --preset cpu      # also sac, bptt (the paper's other contenders)
  python -m bench.run --resume runs/ant/shac/seed0_20250101T000000Z
  python -m bench.run --algo pwm --env ant --preset cpu     # whole pipeline: data, pretrain, policy
  python -m bench.run --algo pwm --env ant --variant offline \\
      --world-model PRETRAIN_DIR/checkpoints/final.pt --data SHAC_RUN_DIR/data
  python -m bench.run --algo tdmpc2 --env ant --preset cpu --set algo.plan=false

Before training starts, the plan is printed: stages, iterations, env steps, parameters, device, and the
estimated wall-clock of each stage, from a few iterations of a throwaway copy of the run timed on this
device (its own seeds; the run's random streams are untouched); a warning names --preset cpu when the
estimate exceeds a day. --dry-run prints the plan and exits 0 without creating a run directory.

pwm without --world-model runs the pipeline of bench.pipeline (SHAC data collection, world-model
pretraining, policy learning), each stage a run directory under
runs/<env>/pwm/pipeline_seed<k>_<preset>_<mode>/; running the same command again skips complete stages
and resumes an interrupted one. --data skips the collection stage.

exit codes: 0 complete, 1 failed (e.g. persistent nan/inf gradients; one line, --debug for the traceback),
2 invalid arguments,
130 interrupted by Ctrl-C, 143 terminated by SIGTERM (both checkpoint first; continue with --resume).
"""


@dataclass
class RunOptions(cli.Options):
    algo: str | None = None
    """Algorithm (required unless --resume)."""
    env: str | None = None
    """Registered env name (required unless --resume)."""
    seed: int | None = None
    """Run seed; env, eval env and trainer streams derive from it (default 0)."""
    preset: str | None = None
    """Budget preset (default: paper; see below)."""
    variant: str | None = None
    """Published configuration of the algorithm; shac: pwm (FoRL/PWM, default) or diffrl (original); pwm:
    online (default, the released single-task driver) or offline (frozen world model); ppo, sac: fork
    (rl_games configs of the AHAC-era fork, default) or diffrl; bptt: diffrl; tdmpc2: tdmpc2 (default) or pwm
    (how PWM's world models were trained: horizon 16, rho 0.99, batch 1024, no planning)."""
    world_model: str | None = field(default=None, metadata=cli.option(metavar="CKPT"))
    """pwm: a bench.pretrain checkpoint (or a TD-MPC2 run's checkpoints/world_model.pt) to learn the policy
    from (without it the whole pipeline runs)."""
    data: str | None = field(default=None, metadata=cli.option(metavar="DIR"))
    """pwm: an episode dataset (bench.run --save-data or bench.collect): start states and replay; in the
    pipeline it replaces the SHAC collection stage."""
    overrides: list[str] = field(default_factory=list, metadata=cli.option(flag="--set", metavar="KEY=VALUE"))
    """Override a resolved setting, repeatable; KEY is section.name (sections env, algo, run; nested
    settings with more dots, e.g. algo.world_model.latent_dim); env values are parsed and checked by the
    env's settings table (bools: true/false in any case), others as JSON (true/false in any case), else
    taken as a string; e.g. --set algo.horizon=16 --set env.early_termination=false."""
    device: str | None = None
    """torch/warp device, e.g. cpu or cuda:0 (default cpu; resume: as recorded)."""
    out: str | None = None
    """Root directory for new runs (default: runs)."""
    save_data: bool = False
    """Record every training episode (obs, actions, rewards, terminated, truncated) under RUN_DIR/data/ in
    the algos.dataset format."""
    video: bool = False
    """Record one deterministic evaluation episode at each evaluation point into RUN_DIR/videos/ (MP4,
    320x240; needs imageio-ffmpeg and a headless OpenGL library, EGL or OSMesa); training and evaluation
    are unchanged by it."""
    dry_run: bool = False
    """Print the plan (stages, iterations, env steps, parameters, device, estimated time from a short
    measured warm-up) and exit without creating a run directory."""
    resume: str | None = field(default=None, metadata=cli.option(metavar="RUN_DIR"))
    """Continue RUN_DIR from checkpoints/latest.pt with its recorded settings (only --device, --video and
    --dry-run may be given)."""


def build_parser(env_names: list[str]) -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:6s} {PRESET_HELP[name]}" for name in PRESETS)
    choices = {
        "algo": list(ALGORITHMS),
        "env": env_names,
        "preset": PRESETS,
        "variant": sorted({v for table in VARIANTS.values() for v in table}),
    }
    return cli.build_parser(
        RunOptions,
        choices,
        prog=f"python -m {COMMAND}",
        description="Train one algorithm on one env; writes runs/<env>/<algo>/seed<k>_<UTC time>/ "
        "(config.json, train.csv, eval.csv, eval_episodes.csv, summary.json, checkpoints/).",
        epilog=EPILOG.format(presets=presets),
    )


def _command(args: RunOptions, argv: list[str]) -> int:
    if args.video and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ConfigError("--video needs imageio-ffmpeg: pip install 'warpbench[video]'")
    if args.video and not (headless.available_backend() or os.environ.get("MUJOCO_GL")):
        raise ConfigError(
            "--video needs a headless OpenGL library: libEGL (apt-get install libegl1) or libOSMesa "
            "(apt-get install libosmesa6)"
        )
    if args.resume:
        fixed = ("algo", "env", "seed", "preset", "variant", "out", "world_model", "data", "overrides")
        if cli.given(args, [*fixed, "save_data"]):
            raise ConfigError(
                "--resume takes its settings from the run directory; only --device, --video and --dry-run "
                "may be given"
            )
        return resume_run(
            args.resume, device=args.device, argv=argv, video=args.video, dry_run=args.dry_run
        ).exit_code
    if args.algo is None or args.env is None:
        raise ConfigError("--algo and --env are required (or --resume RUN_DIR)")
    if args.algo != "pwm" and (args.world_model or args.data):
        raise ConfigError("--world-model and --data are options of --algo pwm")
    for path in (args.world_model, args.data):
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{path} does not exist")
    common = dict(
        seed=0 if args.seed is None else args.seed,
        preset=args.preset or "paper",
        device=args.device or "cpu",
        out=args.out or "runs",
        data=args.data,
        argv=argv,
        dry_run=args.dry_run,
    )
    if args.algo == "pwm" and args.world_model is None:
        if args.save_data or args.video:
            raise ConfigError("--save-data and --video are not options of the pwm pipeline")
        mode = args.variant or default_variant("pwm")
        return run_pipeline(args.env, mode=mode, overrides=args.overrides, **common).exit_code
    return start_run(
        args.algo,
        args.env,
        variant=args.variant,
        overrides=args.overrides,
        save_data=args.save_data,
        video=args.video,
        world_model=args.world_model,
        **common,
    ).exit_code


def main(argv: list[str] | None = None) -> int:
    return cli.main(RunOptions, build_parser(envs.names()), argv, _command)


if __name__ == "__main__":
    sys.exit(main())
