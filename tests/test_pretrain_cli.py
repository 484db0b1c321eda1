"""``python -m bench.collect`` and ``python -m bench.pretrain`` end to end on the toy env."""

from __future__ import annotations

import io
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from algos.dataset import DatasetWriter, load_dataset
from algos.pwm import PWM, PWMConfig
from algos.wm_training import load_world_model, load_world_model_checkpoint
from bench import collect, pretrain, rundir
from bench.harness import start_run
from tests.toy_envs import make_toy_env, register_toy_env

TOY = register_toy_env()


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collect") / "data"
    assert (
        collect.main(["--env", TOY, "--episodes", "12", "--random", "--out", str(out), "--num-envs", "4"])
        == 0
    )
    return out


def only_run(out: Path) -> Path:
    (run_dir,) = rundir.find_runs(out)
    return run_dir


def checkpoint(run_dir: Path, name: str) -> dict:
    return torch.load(io.BytesIO((run_dir / rundir.CHECKPOINTS / name).read_bytes()), weights_only=False)


def test_collect_random_episodes(toy_data: Path) -> None:
    dataset = load_dataset(toy_data)
    info = rundir.read_json(toy_data / rundir.COLLECT_INFO)
    assert dataset.num_episodes == info["episodes"] == 12 and dataset.info["env"] == TOY
    assert info["transitions"] == dataset.num_transitions <= info["env_steps"]
    actions = dataset.action[1:][~pd.isna(dataset.reward[1:])]
    assert (abs(actions) <= 1).all() and actions.std() > 0.4  # uniform in [-1, 1]
    with pytest.raises(SystemExit, match="2"):  # the directory already holds a dataset
        collect.main(["--env", TOY, "--episodes", "1", "--random", "--out", str(toy_data)])


def test_a_dataset_without_termination_flags_gets_no_termination_head(
    toy_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old"
    shutil.copytree(toy_data, old)
    for chunk in old.glob("chunk_*.npz"):  # as written before the flags existed
        with np.load(chunk) as data:
            arrays = {name: data[name] for name in data.files if name != "would_terminate"}
        np.savez(chunk, **arrays)
    argv = ["--env", TOY, "--data", str(old), "--preset", "smoke", "--out", str(tmp_path / "runs")]
    argv.append("--termination-head")
    assert pretrain.main(argv) == 0
    assert "records no would_terminate flags" in capsys.readouterr().err
    run_dir = only_run(tmp_path / "runs")
    assert not rundir.read_json(run_dir / rundir.CONFIG)["settings"]["world_model"]["termination_head"]
    assert load_world_model(run_dir / rundir.CHECKPOINTS / rundir.FINAL).config.termination_head is False


def test_pretrain_smoke_writes_the_run_directory(toy_data: Path, tmp_path: Path) -> None:
    argv = ["--env", TOY, "--data", str(toy_data), "--preset", "smoke", "--out", str(tmp_path), "--seed", "2"]
    argv.append("--termination-head")
    assert pretrain.main(argv) == 0
    run_dir = only_run(tmp_path)
    assert run_dir.parent == tmp_path / TOY / rundir.PRETRAIN_ALGO and run_dir.name.startswith("seed2_")
    config = rundir.read_json(run_dir / rundir.CONFIG)
    assert config["settings"]["steps"] == 20 and config["settings"]["world_model"]["latent_dim"] == 32
    assert {"versions", "git", "device"} <= set(config["provenance"])
    # 5% of the 12 episodes (one) held out of training, its id recorded for PWM's diagnostics.
    assert config["data"]["episodes"] == 11 and len(config["data"]["heldout_episodes"]) == 1
    assert config["settings"]["world_model"]["termination_head"]  # the dataset records would_terminate
    curve = pd.read_csv(run_dir / rundir.PRETRAIN_CSV)
    assert list(curve.columns) == list(rundir.PRETRAIN_COLUMNS)
    assert sorted(curve["step"].unique()) == list(range(1, 21))
    assert {"wm_loss", "wm_dynamics_loss", "wm_reward_loss", "wm_grad_norm"} <= set(curve["metric"])
    held_out = {"heldout_latent_error_1step", "heldout_reward_error_Hstep", "heldout_termination_accuracy"}
    assert {"wm_termination_loss"} | held_out <= set(curve["metric"])
    assert (run_dir / f"{rundir.LOSS_FIGURE}.png").stat().st_size > 0
    summary = rundir.read_json(run_dir / rundir.SUMMARY)
    assert (summary["status"], summary["steps"], summary["nonfinite_wm_steps"]) == ("complete", 20, 0)

    trainer, data = load_world_model_checkpoint(run_dir / rundir.CHECKPOINTS / "final.pt")
    assert trainer.steps == 20 and data["dataset_transitions"] == load_dataset(toy_data).num_transitions
    pretrained = load_world_model(run_dir / rundir.CHECKPOINTS / rundir.FINAL)
    pwm = PWM(make_toy_env(num_envs=2), PWMConfig(), seed=0, world_model=pretrained)
    assert pwm.data_env_steps == data["dataset_transitions"]


def test_interrupt_and_resume_equals_uninterrupted_run(toy_data: Path, tmp_path: Path, capsys) -> None:
    common = {"preset": "smoke", "steps": 12}
    pretrain.start_pretrain(TOY, toy_data, out=tmp_path / "a", **common)

    def interrupt(step: int) -> None:
        if step == 7:
            signal.raise_signal(signal.SIGINT)

    result = pretrain.start_pretrain(TOY, toy_data, out=tmp_path / "b", on_step=interrupt, **common)
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert checkpoint(result.run_dir, "latest.pt")["trainer"]["steps"] == 7
    assert not (result.run_dir / rundir.CHECKPOINTS / "final.pt").exists()
    capsys.readouterr()
    assert pretrain.main(["--resume", str(result.run_dir), "--dry-run"]) == 0  # the plan; nothing changes
    assert "world-model pretraining: 5 steps x" in capsys.readouterr().out
    assert rundir.read_json(result.run_dir / rundir.CONFIG)["resumes"] == []
    assert pretrain.main(["--resume", str(result.run_dir)]) == 0

    reference, resumed = only_run(tmp_path / "a"), result.run_dir
    a, b = checkpoint(reference, "final.pt")["trainer"], checkpoint(resumed, "final.pt")["trainer"]
    assert a["steps"] == b["steps"] == 12
    assert all(torch.equal(v, b["world_model"][k]) for k, v in a["world_model"].items())
    curves = [pd.read_csv(d / rundir.PRETRAIN_CSV).drop(columns="wall_time_s") for d in (reference, resumed)]
    pd.testing.assert_frame_equal(*curves)
    assert rundir.read_json(resumed / rundir.CONFIG)["resumes"][0]["from_step"] == 7

    assert pretrain.main(["--resume", str(resumed)]) == 0  # already complete: nothing to do
    assert pretrain.main(["--resume", str(resumed), "--steps", "15"]) == 0  # train longer
    assert rundir.read_json(resumed / rundir.SUMMARY)["steps"] == 15


def test_invalid_arguments_exit_2(toy_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    DatasetWriter(empty, env=TOY, obs_dim=4, act_dim=2)
    cases = [
        (["--env", TOY, "--data", str(tmp_path / "missing")], "no episode dataset"),
        (["--env", TOY, "--data", str(empty)], "holds no episodes"),
        (["--env", "ant", "--data", str(toy_data)], "recorded on 'toy_pointmass'"),
        (["--env", "nope", "--data", str(toy_data)], "invalid choice"),
        (["--env", TOY, "--data", str(toy_data), "--preset", "huge"], "invalid choice"),
        (["--env", TOY], "--data are required"),
        (["--resume", str(tmp_path), "--env", TOY], "only --steps, --device and --dry-run"),
        (["--resume", str(tmp_path)], "not a pretraining run directory"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            pretrain.main([*argv, "--out", str(tmp_path / "runs")] if "--resume" not in argv else argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "runs").exists()  # nothing written for invalid arguments


def test_collect_from_a_policy_checkpoint(tmp_path: Path) -> None:
    result = start_run("shac", TOY, preset="smoke", out=tmp_path / "runs")
    out = tmp_path / "data"
    argv = [
        "--env",
        TOY,
        "--episodes",
        "5",
        "--policy",
        str(result.run_dir),
        "--out",
        str(out),
        "--deterministic",
    ]
    assert collect.main([*argv, "--set", "early_termination=false", "--num-envs", "2"]) == 0
    dataset = load_dataset(out)
    assert dataset.num_episodes == 5 and not dataset.episode_terminated.any()
    assert rundir.read_json(out / rundir.COLLECT_INFO)["policy"] == str(result.run_dir.resolve())
