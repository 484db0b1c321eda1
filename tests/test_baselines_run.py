"""PPO, SAC and BPTT through the harness: ``bench.run`` smoke runs on the ant, ``bench.report`` over them, and
interrupted runs resumed bit for bit on the toy env (datasets of ``--save-data`` included)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import envs
from algos.dataset import load_dataset
from algos.ppo import PPO, PPOConfig
from algos.sac import SAC, SACConfig
from bench import report, rundir
from bench.harness import resume_run
from bench.presets import BASELINE_SMOKE, resolve_settings
from bench.run import main
from bench.settings import jsonable
from tests.helpers import assert_same_run, load_checkpoint, only_run, straight_and_interrupted
from tests.toy_envs import register_toy_env

TOY = register_toy_env()
BASELINES = ("ppo", "sac", "bptt")
SMOKE_ENV_STEPS = {"ppo": 4 * 8, "sac": 4 * 8, "bptt": 4 * 32}
"""Env steps per smoke iteration: 4 envs x 8 steps (BPTT: the whole 32-step smoke episode)."""


@pytest.fixture(scope="module")
def ant_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    for algo in BASELINES:
        assert main(["--algo", algo, "--env", "ant", "--preset", "smoke", "--out", str(out)]) == 0, algo
    torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("algo", BASELINES)
def test_smoke_run_on_the_ant_writes_the_run_directory(ant_runs: Path, algo: str) -> None:
    run_dir = only_run(ant_runs / "ant" / algo)
    config = rundir.read_json(run_dir / rundir.CONFIG)
    assert (config["algo"], config["variant"]) == (algo, "diffrl" if algo == "bptt" else "fork")
    evals = rundir.read_eval(run_dir)
    per_iteration = SMOKE_ENV_STEPS[algo]
    assert evals["env_steps"].tolist() == [0, 2 * per_iteration, 4 * per_iteration]
    assert evals["return_mean"].notna().all()
    train = pd.read_csv(run_dir / rundir.TRAIN)
    assert train["step"].max() == 4
    assert {"fps", "train_return", "early_terminations", "truncations", "reward/progress"} <= set(
        train["metric"]
    )
    summary = rundir.read_summary(run_dir)
    assert summary["status"] == "complete" and summary["env_steps"]["training"] == 4 * per_iteration
    assert set(summary["nonfinite"].values()) == {0}
    assert load_checkpoint(run_dir, "final.pt")["iteration"] == 4


def test_report_reads_the_baseline_runs(ant_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = [str(ant_runs), "--out", str(out), "--resamples", "100", "--curve-resamples", "20"]
    assert report.main(argv) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["algo"]) == set(BASELINES)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["runs_per_task"] == {algo: {"ant": 1} for algo in BASELINES} and not stats["excluded_runs"]
    assert all((out / f"{stem}.png").exists() for stem in ("curves_env_steps", "curves_wall_clock"))


def test_smoke_settings_and_cpu_budgets() -> None:
    for algo in BASELINES:
        smoke = resolve_settings(algo, "ant", "smoke")
        assert smoke["env"]["num_envs"] == 4 and smoke["algo"]["max_epochs"] == 4
        assert {k: smoke["algo"][k] for k in BASELINE_SMOKE[algo]} == jsonable(BASELINE_SMOKE[algo])
        cpu = resolve_settings(algo, "ant", "cpu")
        # Env steps per env and iteration: PPO's horizon, SAC's steps, BPTT's window (the ant's 1000 steps).
        per_env = cpu["algo"].get("steps_per_iteration") or cpu["algo"]["horizon"] or 1000
        budget = cpu["env"]["num_envs"] * per_env * cpu["algo"]["max_epochs"]
        assert budget == 2_048_000, algo  # SHAC's cpu budget: 64 envs x 32 steps x 1000 iterations


@pytest.mark.parametrize("algo", BASELINES)
def test_interrupt_and_resume_equals_uninterrupted_run(algo: str, tmp_path: Path) -> None:
    straight, resumed = straight_and_interrupted(algo, TOY, tmp_path)
    assert resume_run(resumed).status == "complete"
    assert_same_run(straight, resumed)
    assert load_dataset(straight / rundir.DATA).num_episodes > 0


def test_ppo_and_sac_step_the_ant_without_recording() -> None:
    env = envs.make("ant", num_envs=2, seed=0, episode_length=16)
    for trainer in (
        PPO(env, PPOConfig(horizon=4, hidden=(8,), minibatches=2, mini_epochs=1), seed=0),
        SAC(env, SACConfig(steps_per_iteration=4, batch_size=4, buffer_size=64, actor_hidden=(8,)), seed=0),
    ):
        trainer.train_iteration()
        assert not env.q.requires_grad and not env.qd.requires_grad, type(trainer).__name__
