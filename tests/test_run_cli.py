"""``python -m bench.run`` end to end on the toy env: files, resume to the bit, signals, failures, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from algos.dataset import load_dataset
from bench import rundir
from bench.harness import resume_run, start_run
from bench.run import main
from tests.helpers import assert_same_run, load_checkpoint, only_run, straight_and_interrupted
from tests.toy_envs import register_toy_env

TOY = register_toy_env()
SMOKE = ["--algo", "shac", "--env", TOY, "--preset", "smoke"]


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_smoke_run_writes_the_run_directory(tmp_path: Path) -> None:
    assert main([*SMOKE, "--seed", "3", "--out", str(tmp_path)]) == 0
    run_dir = only_run(tmp_path)
    assert run_dir.parent == tmp_path / TOY / "shac" and run_dir.name.startswith("seed3_")
    config = rundir.read_json(run_dir / rundir.CONFIG)
    assert (config["algo"], config["env"], config["seed"], config["variant"]) == ("shac", TOY, 3, "pwm")
    assert config["settings"]["algo"]["horizon"] == 8 and config["settings"]["env"]["num_envs"] == 4
    assert set(config["provenance"]["versions"]) >= {
        "python",
        "torch",
        "warp-lang",
        "mujoco",
        "numpy",
        "scipy",
    }
    assert {"commit", "dirty"} <= set(config["provenance"]["git"])
    assert config["provenance"]["device"]["cpu_model"]

    evals = rundir.read_eval(run_dir)
    assert evals["env_steps"].tolist() == [0, 64, 128]  # start, every 50% (smoke), end
    assert (evals["eval_episodes"] == 2).all() and evals["return_mean"].notna().all()
    episodes = pd.read_csv(run_dir / rundir.EVAL_EPISODES)
    assert list(episodes.columns) == list(rundir.EPISODE_COLUMNS) and len(episodes) == 6
    train = pd.read_csv(run_dir / rundir.TRAIN)
    assert list(train.columns) == list(rundir.TRAIN_COLUMNS)
    assert train["step"].max() == 4
    metrics = set(train["metric"])
    expected = {
        "actor_loss",
        "critic_loss",
        "actor_grad_norm",
        "actor_grad_norm_clipped",
        "fps",
        "truncations",
    }
    assert expected | {"early_terminations", "nonfinite_actor_grad", "train_return"} <= metrics

    summary = rundir.read_summary(run_dir)
    assert summary["status"] == "complete" and summary["final_return"] == evals["return_mean"].iloc[-1]
    assert summary["best_return"]["return_mean"] == evals["return_mean"].max()
    assert "best-over-training" in summary["best_return"]["label"]
    assert summary["env_steps"]["training"] == summary["env_steps"]["budget"] == 128
    assert summary["nonfinite"] == {"nonfinite_actor_windows": 0, "nonfinite_critic_steps": 0}
    assert load_checkpoint(run_dir, "final.pt")["iteration"] == 4


def test_interrupt_and_resume_equals_uninterrupted_run(tmp_path: Path, capsys) -> None:
    straight, resumed = straight_and_interrupted("shac", TOY, tmp_path)
    assert rundir.read_summary(resumed)["iterations"] == 3
    assert load_checkpoint(resumed)["iteration"] == 3
    assert not (resumed / rundir.CHECKPOINTS / "final.pt").exists()

    capsys.readouterr()
    assert main(["--resume", str(resumed), "--dry-run"]) == 0  # the plan of what is left; nothing changes
    plan_text = capsys.readouterr().out
    assert "3 iterations x" in plan_text and "2 evaluations of at most 32 steps" in plan_text
    assert rundir.read_summary(resumed)["status"] == "interrupted"
    assert rundir.read_json(resumed / rundir.CONFIG)["resumes"] == []

    assert main(["--resume", str(resumed)]) == 0
    assert rundir.read_summary(resumed)["status"] == "complete"
    assert rundir.read_json(resumed / rundir.CONFIG)["resumes"][0]["from_iteration"] == 3

    assert_same_run(straight, resumed)
    data = load_dataset(straight / rundir.DATA)
    assert data.num_episodes == 4 and (data.episode_length == 32).all()  # no early stops


def test_sigterm_checkpoints_and_exits_143(tmp_path: Path) -> None:
    def terminate(iteration: int) -> None:
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    result = start_run("shac", TOY, preset="smoke", out=tmp_path, on_iteration=terminate)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert (result.status, result.exit_code) == ("interrupted", 143)
    assert load_checkpoint(result.run_dir)["iteration"] == 2
    assert rundir.read_summary(result.run_dir)["status"] == "interrupted"
    assert resume_run(result.run_dir).status == "complete"


def test_persistent_nan_fails_and_keeps_last_good_checkpoint(tmp_path: Path, capsys) -> None:
    overrides = ["--set", "env.nan_rewards_from=0", "--set", "algo.max_nonfinite_windows=2"]
    assert main([*SMOKE, "--out", str(tmp_path), *overrides]) == 1
    run_dir = only_run(tmp_path)
    summary = rundir.read_summary(run_dir)
    assert summary["status"] == "failed" and "2 consecutive windows" in summary["error"]
    assert summary["nonfinite"]["nonfinite_actor_windows"] == 2
    assert load_checkpoint(run_dir)["iteration"] == 0
    train = pd.read_csv(run_dir / rundir.TRAIN)
    assert train.loc[train["metric"] == "nonfinite_actor_grad", "value"].tolist() == [1.0]
    assert "last good checkpoint kept" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algo", "nope", "--env", TOY], "choose from"),
        (["--algo", "shac", "--env", "nope"], TOY),
        ([*SMOKE[:4], "--preset", "huge"], "smoke"),
        ([*SMOKE, "--set", "algo.nope=1"], "valid keys: algo.activation"),
        ([*SMOKE, "--set", "algo.horizon=abc"], "algo.horizon expects a value like"),
        ([*SMOKE, "--set", "env.bogus=1"], "valid: early_termination"),
        ([*SMOKE, "--set", "horizon"], "section.key=value"),
        (["--env", TOY], "--algo and --env are required"),
        (["--resume", "somewhere", "--algo", "shac"], "only --device, --video and --dry-run"),
    ],
)
def test_invalid_arguments_exit_2_with_choices(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)] if "--resume" not in argv else argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written for a rejected run


def test_help_documents_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--algo", "--env", "--seed", "--preset", "--variant", "--set", "--device", "--out"):
        assert option in text
    assert "--save-data" in text and "--resume" in text and "exit codes" in text
    assert "--dry-run" in text and "--video" in text and "plan" in text


def test_config_json_is_valid_json_with_resolved_settings(tmp_path: Path) -> None:
    assert main([*SMOKE, "--out", str(tmp_path), "--variant", "diffrl", "--set", "algo.actor_lr=0.01"]) == 0
    config = json.loads((only_run(tmp_path) / rundir.CONFIG).read_text())
    algo = config["settings"]["algo"]
    assert (algo["actor_lr"], algo["activation"], algo["target_critic_alpha"]) == (0.01, "elu", 0.2)


VIDEO_DRIVER = """
import sys
from bench import run  # first: chooses the headless OpenGL backend before mujoco is imported
from bench.harness import resume_run, start_run

def interrupt(iteration):
    if iteration == 3:
        raise KeyboardInterrupt

out, overrides = sys.argv[1], sys.argv[2:]
stopped = start_run("shac", "ant", preset="smoke", overrides=overrides, out=out, on_iteration=interrupt)
assert stopped.exit_code == 130, stopped
sys.exit(resume_run(stopped.run_dir, video=True).exit_code)
"""


def test_video_records_each_evaluation_point_and_changes_nothing(tmp_path: Path) -> None:
    """--video (here turned on by the resume, after an interrupt) writes one MP4 per evaluation point, and
    the run's numbers equal those of an uninterrupted run without videos, bit for bit."""
    from bench import headless

    if headless.available_backend() is None and not os.environ.get("MUJOCO_GL"):
        pytest.skip("no headless OpenGL library (libEGL or libOSMesa) on this machine")
    pytest.importorskip("imageio_ffmpeg", reason="--video needs imageio-ffmpeg (pip install .[video])")
    overrides = ["algo.max_epochs=6", "run.eval_interval=0.25"]
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # let bench.headless choose
    done = subprocess.run(
        [sys.executable, "-c", VIDEO_DRIVER, str(tmp_path / "video"), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with_video = only_run(tmp_path / "video")
    # Videos at 0 and 2 were not asked for before the interrupt; from the resume on (iteration 3) they are.
    assert sorted(p.name for p in (with_video / "videos").glob("*.mp4")) == [
        "env_steps_000000000128.mp4",
        "env_steps_000000000192.mp4",
    ]
    for video in (with_video / "videos").glob("*.mp4"):
        assert video.read_bytes()[4:8] == b"ftyp" and video.with_suffix(".csv").exists()
    plain = start_run("shac", "ant", preset="smoke", overrides=overrides, out=tmp_path / "plain").run_dir
    # From the command line, from the start: one video per evaluation point (start, 50%, end).
    argv = ["-m", "bench.run", "--algo", "shac", "--env", "ant", "--preset", "smoke", "--video"]
    cli_run = subprocess.run(
        [sys.executable, *argv, "--out", str(tmp_path / "cli")], env=env, capture_output=True, timeout=600
    )
    assert cli_run.returncode == 0, cli_run.stderr[-2000:]
    names = sorted(p.name for p in (only_run(tmp_path / "cli") / "videos").glob("*.mp4"))
    assert names == [f"env_steps_{n:012d}.mp4" for n in (0, 64, 128)]
    assert_same_run(plain, with_video)


def test_git_state_outside_a_checkout_reads_the_commit_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.provenance import git_state

    monkeypatch.delenv("WARPBENCH_GIT_COMMIT", raising=False)
    assert git_state(tmp_path) == {"commit": "unknown", "dirty": "unknown"}
    monkeypatch.setenv("WARPBENCH_GIT_COMMIT", "abc123")
    assert git_state(tmp_path) == {"commit": "abc123", "dirty": "unknown"}
