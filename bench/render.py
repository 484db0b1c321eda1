"""``python -m bench.render``: video of a trained policy in the real simulator (logic in bench.video)."""

from __future__ import annotations

import sys

from bench import headless

try:  # before mujoco is imported (bench.video does it too, but a failure here is one line, not a traceback)
    headless.select_gl_backend()
except headless.GLError as error:
    sys.exit(f"python -m bench.render: error: {error}")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

import envs  # noqa: E402
from bench import rundir, video  # noqa: E402
from bench.collect import checkpoint_policy  # noqa: E402
from bench.presets import ConfigError, env_overrides  # noqa: E402
from envs.render import CAMERAS  # noqa: E402

EPILOG = """\
examples:
  python -m bench.render runs/ant/shac/seed0_20250101T000000Z --deterministic
  python -m bench.render RUN_DIR --checkpoint latest --episodes 1 --steps 300 --out ant.gif \\
      --width 320 --height 240

The video (MP4 or GIF, by the suffix of --out) shows env 0 of a one-env batch: the engine's state is copied
into MuJoCo's MjData.qpos of the same compiled model at every drawn step and rendered by mujoco.Renderer
(headless: EGL, else OSMesa; MUJOCO_GL overrides). The SNU humanoid's muscles are drawn as the segments the
engine pulls along, grey (0) to red (1) by activation, blue for negative ('signed') activations. Episode,
step, time and return are overlaid; FILE.csv beside the video holds every step's reward and return.

exit codes: 0 done, 2 invalid arguments or missing run/checkpoint, 1 no OpenGL library or no
imageio-ffmpeg (install the extra: pip install -e .[video]).
"""


class Parser(argparse.ArgumentParser):
    """Errors as one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m bench.render",
        description="Render episodes of a bench.run policy with MuJoCo's renderer into an MP4 or GIF.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a bench.run run directory")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="final|latest|PATH",
        help="checkpoints/final.pt, checkpoints/latest.pt or a checkpoint file (default: final, else latest)",
    )
    parser.add_argument("--episodes", type=int, default=2, help="episodes to record (2)")
    parser.add_argument(
        "--steps", type=int, default=1000, help="at most this many control steps per episode (1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the env's start states (0)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="act with tanh(mu), as evaluation does (default: sample the stochastic policy)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.mp4|FILE.gif",
        help="output video (default: RUN_DIR/videos/<checkpoint>_seed<S>.mp4)",
    )
    parser.add_argument("--width", type=int, default=640, help="frame width in pixels, even (640)")
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels, even (480)")
    parser.add_argument(
        "--camera", choices=CAMERAS, default="track", help="track: follow the root (default); fixed: stay put"
    )
    parser.add_argument(
        "--fps",
        type=int,
        choices=video.FPS_CHOICES,
        help="frames per second, real time: every 60/fps control steps is drawn (default 30, GIF 20)",
    )
    parser.add_argument("--device", default="cpu", help="torch/warp device (cpu)")
    return parser


def resolve_checkpoint(run_dir: Path, checkpoint: str | None) -> Path:
    """The checkpoint file that ``--checkpoint`` names for ``run_dir`` (ConfigError when it is missing)."""
    if not (run_dir / rundir.CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a bench.run run directory (no {rundir.CONFIG})")
    checkpoints = run_dir / rundir.CHECKPOINTS
    if checkpoint is None:
        checkpoint = "final" if (checkpoints / "final.pt").is_file() else "latest"
    path = checkpoints / f"{checkpoint}.pt" if checkpoint in ("final", "latest") else Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"no checkpoint {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run_dir = Path(args.run_dir)
    try:
        if args.episodes < 1 or args.steps < 1:
            raise ConfigError("--episodes and --steps must be >= 1")
        if args.width % 2 or args.height % 2 or min(args.width, args.height) < 16:
            raise ConfigError(f"--width and --height must be even and >= 16, got {args.width}x{args.height}")
        checkpoint = resolve_checkpoint(run_dir, args.checkpoint)
        out = Path(args.out or run_dir / "videos" / f"{checkpoint.stem}_seed{args.seed}.mp4")
        video.check_video_path(out)
        policy, config = checkpoint_policy(checkpoint, args.deterministic, args.device)
        env = envs.make(
            config["env"], num_envs=1, device=args.device, seed=args.seed, **env_overrides(config["settings"])
        )
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    title = f"{config['algo']} {config['env']} seed {config['seed']} ({checkpoint.name})"
    try:
        summaries = video.record_video(
            env,
            policy,
            out,
            episodes=args.episodes,
            steps=args.steps,
            width=args.width,
            height=args.height,
            camera=args.camera,
            fps=args.fps,
            title=title,
        )
    except video.VideoError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    for s in summaries:
        end = "terminated" if s.terminated else "not terminated"
        print(f"episode {s.episode + 1}: return {s.ret:.1f} over {s.steps} steps ({end}), {s.frames} frames")
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
