"""Rendering checks that need OpenGL, run by tests/test_render.py in a fresh process.

MuJoCo fixes its OpenGL backend when it is first imported, and the test session imports it long before
(through ``envs``) without a headless backend; a fresh process lets ``bench.video`` choose EGL/OSMesa first.
Usage: ``python -m tests.render_probe RUN_DIR OUT_DIR``; writes videos into OUT_DIR, prints JSON measurements.
"""

from __future__ import annotations

# isort: off
from bench import video  # first: chooses the headless OpenGL backend before mujoco is imported

# isort: on

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402
from bench import rundir  # noqa: E402
from bench.collect import checkpoint_policy  # noqa: E402
from bench.render import main as render_main  # noqa: E402
from envs.render import EnvRenderer  # noqa: E402


def robot_pixels(frame: np.ndarray) -> np.ndarray:
    """Mask of the robot's orange (geom colour 0.85, 0.62, 0.38 under the headlight)."""
    r, g, b = (frame[..., k].astype(int) for k in range(3))
    return (r > 120) & (r - b > 50) & (g > b)


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def ant_frames() -> dict:
    env = envs.make("ant", num_envs=1, seed=0, stochastic_init=False)
    renderer = EnvRenderer(env, 160, 120, camera="fixed")
    first, again = renderer.frame(env), renderer.frame(env)
    for _ in range(30):  # the legs move
        env.step(torch.full((1, env.act_dim), 0.8))
    stepped = renderer.frame(env)
    q = env.q.clone()
    q[0, 0] += 1.0  # the whole ant 1 m along x
    env.set_state(q, env.qd)
    shifted = renderer.frame(env)
    renderer.close()
    return {
        "distinct_colours": len(np.unique(first.reshape(-1, 3), axis=0)),
        "robot_pixels": int(robot_pixels(first).sum()),
        "same_state_identical": bool(np.array_equal(first, again)),
        "step_change": float(np.abs(first.astype(int) - stepped.astype(int)).mean()),
        "shift_px": float(
            np.abs(np.subtract(centroid(robot_pixels(shifted)), centroid(robot_pixels(stepped)))).max()
        ),
    }


def snu_muscles() -> dict:
    env = envs.make("snu_humanoid", num_envs=1, seed=0, stochastic_init=False)
    renderer = EnvRenderer(env, 160, 120)
    counts = {}
    for name, value in (("rest", 0.0), ("full", 1.0)):
        frame = renderer.frame(env, 0, torch.full((1, env.act_dim), value))
        r, g, b = (frame[..., k].astype(int) for k in range(3))
        counts[name] = int(((r > 150) & (g < 90) & (b < 90)).sum())  # saturated red: active muscle
    renderer.close()
    return {"red_pixels_rest": counts["rest"], "red_pixels_full": counts["full"]}


def main(run_dir: Path, out: Path) -> None:
    results: dict = {"ant": ant_frames(), "snu": snu_muscles()}
    cli = [str(run_dir), "--steps", "10", "--fps", "60", "--width", "160", "--height", "120", "--seed", "1"]
    cli += ["--deterministic"]
    results["cli_exit"] = [render_main([*cli, "--out", str(out / name)]) for name in ("cli.mp4", "again.mp4")]
    env = envs.make("ant", num_envs=1, seed=0)
    zero = lambda obs: torch.zeros(obs.shape[0], env.act_dim)  # noqa: E731
    summaries = video.record_video(env, zero, out / "zero.gif", steps=12, width=64, height=48, fps=20)
    results["gif_frames_reported"] = sum(s.frames for s in summaries)
    config = rundir.read_json(run_dir / rundir.CONFIG)
    policy, _ = checkpoint_policy(run_dir, deterministic=True, device="cpu")
    results["evaluation_video"] = str(video.evaluation_video(out, config, policy, 128, seed=5))
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
