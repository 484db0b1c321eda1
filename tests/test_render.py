"""``python -m bench.render`` and its library: the qpos mirror, muscle segments, frames, videos, bad input.

Checks that draw pictures run in one fresh process (``tests/render_probe.py``): MuJoCo fixes its OpenGL
backend at its first import, which in this session happened without a headless one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as iio
import mujoco
import numpy as np
import pandas as pd
import pytest
import torch

import envs
from bench import headless, rundir, video
from bench.harness import start_run
from bench.render import main
from envs import rotations as rot
from envs.render import activation_colors, engine_muscles, mirror_state, render_model, segment_endpoints

ROOT = Path(__file__).resolve().parents[1]
needs_snu = pytest.mark.skipif(
    not os.environ.get("WARPBENCH_SNU_DIR"), reason="SNU data files not available (WARPBENCH_SNU_DIR)"
)


def varied_states(name: str, num_envs: int = 3, steps: int = 12) -> envs.registry.Any:
    """An env whose batch has left its start states under random actions (reset noise included)."""
    env = envs.make(name, num_envs=num_envs, seed=1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            env.step(torch.rand(num_envs, env.act_dim, generator=generator) * 2 - 1)
    return env


@pytest.mark.parametrize(
    "name", ["ant", "humanoid", pytest.param("snu_humanoid", marks=needs_snu), "hopper", "cheetah"]
)
def test_qpos_mirror_matches_the_engine_body_positions(name: str) -> None:
    env = varied_states(name)
    model = render_model(env, 640, 480)
    data = mujoco.MjData(model)
    engine = env.body_positions().cpu().numpy()
    for i in range(env.num_envs):
        mirror_state(model, data, env.q[i])
        np.testing.assert_allclose(data.xpos[1:], engine[i], atol=1e-6)
    assert np.ptp(engine[:, 0, :], axis=0).max() > 1e-3  # the batch's states really differ


def test_mirror_rejects_a_wrong_shape() -> None:
    env = envs.make("ant", num_envs=1)
    model = render_model(env, 64, 48)
    with pytest.raises(ValueError, match=r"shape \(15,\)"):
        mirror_state(model, mujoco.MjData(model), np.zeros(14))


@needs_snu
def test_drawn_muscle_segments_are_the_engine_segments() -> None:
    env = varied_states("snu_humanoid", num_envs=2)
    model = render_model(env, 64, 48)
    data = mujoco.MjData(model)
    muscles = engine_muscles(env)
    transforms = env.sim.link_transforms(env.q)  # [N, links, 7]: position, quaternion xyzw
    for side in ("a", "b"):
        links = torch.as_tensor(getattr(env.model.muscles, f"link_{side}").numpy(), dtype=torch.long)
        points = torch.as_tensor(muscles[f"point_{side}"])
        for i in range(env.num_envs):
            frame = transforms[i, links]
            engine = frame[:, :3] + rot.quat_rotate(frame[:, 3:], points)
            mirror_state(model, data, env.q[i])
            drawn = segment_endpoints(data, muscles)[0 if side == "a" else 1]
            np.testing.assert_allclose(drawn, engine.numpy(), atol=1e-6)


def test_activation_colours() -> None:
    rest, pull, push = activation_colors(np.array([0.0, 1.0, -1.0]))
    assert np.allclose(rest[:3], rest[0]) and rest[0] > 0.3  # grey
    assert pull[0] > 0.9 and pull[2] < 0.2  # red
    assert push[2] > 0.9 and push[0] < 0.2  # blue
    assert np.array_equal(activation_colors(np.array([3.0])), activation_colors(np.array([1.0])))


# -- pictures and videos (one probe process) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SHAC run on the ant (smoke preset: 32-step episodes) with final.pt and latest.pt."""
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    result = start_run("shac", "ant", preset="smoke", out=out, argv=["test"])
    torch.set_num_threads(threads)
    assert result.status == "complete"
    (run_dir,) = rundir.find_runs(out)
    return run_dir


@pytest.fixture(scope="module")
def probe(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if headless.available_backend() is None and not os.environ.get("MUJOCO_GL"):
        pytest.skip("no headless OpenGL library (libEGL or libOSMesa) on this machine")
    out = tmp_path_factory.mktemp("videos")
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # let bench.headless choose
    done = subprocess.run(
        [sys.executable, "-m", "tests.render_probe", str(smoke_run), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "out": out}


def test_a_frame_is_not_blank_and_changes_as_the_ant_moves(probe: dict) -> None:
    ant = probe["ant"]
    assert ant["distinct_colours"] > 50 and ant["robot_pixels"] > 100
    assert ant["same_state_identical"]
    assert ant["step_change"] > 0.3  # the legs moved under a fixed camera
    assert ant["shift_px"] > 10.0  # the ant moved 1 m


@needs_snu
def test_snu_muscles_are_drawn_by_activation(probe: dict) -> None:
    snu = probe["snu"]
    assert snu["red_pixels_full"] > 20 and snu["red_pixels_full"] > 5 * snu["red_pixels_rest"]


def read_frames(path: Path) -> list[np.ndarray]:
    if path.suffix == ".gif":
        return iio.mimread(path)
    with iio.get_reader(path, format="FFMPEG") as reader:
        return list(reader.iter_data())


def test_cli_writes_an_mp4_of_the_requested_length(probe: dict) -> None:
    assert probe["cli_exit"] == [0, 0]
    video, steps = probe["out"] / "cli.mp4", pd.read_csv(probe["out"] / "cli.csv")
    reader = iio.get_reader(video, format="FFMPEG")
    assert reader.get_meta_data()["codec"] == "h264" and reader.get_meta_data()["fps"] == 60
    frames = read_frames(video)
    # 2 episodes x (start + 10 steps at 60 fps), none ended early (10 < the 32-step episodes)
    assert len(steps) == 20 and steps.groupby("episode")["step"].max().tolist() == [10, 10]
    assert len(frames) == 22 and frames[0].shape == (120, 160, 3)
    assert steps["frame"].tolist() == [f for f in range(22) if f not in (0, 11)]
    assert np.allclose(steps.groupby("episode")["reward"].sum(), steps.groupby("episode")["return"].last())
    again = pd.read_csv(probe["out"] / "again.csv")
    pd.testing.assert_frame_equal(steps, again)  # same seed, deterministic policy: same episode


def test_gif_and_the_evaluation_video(probe: dict) -> None:
    gif = read_frames(probe["out"] / "zero.gif")
    assert len(gif) == probe["gif_frames_reported"] == 1 + 12 // 3 and gif[0].shape[:2] == (48, 64)
    path = Path(probe["evaluation_video"])
    assert path == probe["out"] / "videos" / "env_steps_000000000128.mp4"
    steps = pd.read_csv(path.with_suffix(".csv"))
    assert len(steps) == 32  # one whole 32-step smoke episode; its truncating step is not drawn
    assert len(read_frames(path)) == 1 + 15
    assert not list(path.parent.glob(".*partial*"))


# -- bad input -----------------------------------------------------------------------------------------------


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return exit_info.value.code, err


def test_missing_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = run_main([str(tmp_path / "nope")], capsys)
    assert code == 2 and "not a bench.run run directory" in err


def test_no_checkpoint_exits_2(smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.CONFIG).write_text((smoke_run / rundir.CONFIG).read_text())
    code, err = run_main([str(run_dir)], capsys)
    assert code == 2 and "no checkpoint" in err and "latest.pt" in err
    code, err = run_main([str(smoke_run), "--checkpoint", str(tmp_path / "x.pt")], capsys)
    assert code == 2 and "no checkpoint" in err


def test_bad_options_exit_2_with_the_choices(smoke_run: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = run_main([str(smoke_run), "--camera", "orbit"], capsys)
    assert code == 2 and "track" in err and "fixed" in err
    code, err = run_main([str(smoke_run), "--out", "x.avi"], capsys)
    assert code == 2 and ".mp4" in err and ".gif" in err
    code, err = run_main([str(smoke_run), "--width", "641"], capsys)
    assert code == 2 and "even" in err
    code, err = run_main([str(smoke_run), "--steps", "0"], capsys)
    assert code == 2 and ">= 1" in err


def test_gl_errors_name_the_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headless.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    message = headless.gl_error_message(RuntimeError())
    assert "libOSMesa" in message and "apt-get install libosmesa6" in message
    monkeypatch.setenv("MUJOCO_GL", "egl")
    message = headless.gl_error_message(RuntimeError())
    assert "libEGL" in message and "apt-get install libegl1" in message
    monkeypatch.delenv("MUJOCO_GL")
    message = headless.gl_error_message(RuntimeError())
    assert "libEGL" in message and "libOSMesa" in message and "\n" not in message
    assert headless.available_backend() is None


def test_a_missing_encoder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    with pytest.raises(video.VideoError, match=r"pip install 'warpbench\[video\]'"):
        video.VideoWriter(tmp_path / "x.mp4", 64, 48, 30)
    assert not list(tmp_path.iterdir())
