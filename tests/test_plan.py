"""The plan printed before long commands: its arithmetic, its warm-up's isolation, and ``--dry-run``."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench import plan, rundir
from bench.collect import main as collect_main
from bench.harness import start_run
from bench.pretrain import main as pretrain_main
from bench.run import main as run_main
from tests.toy_envs import register_toy_env

TOY = register_toy_env()


def stage(count: int = 10, per_unit: float = 2.0, **kwargs) -> plan.Stage:
    return plan.Stage("train", "iteration", count, per_unit, **kwargs)


def test_stage_and_plan_estimates_add_up() -> None:
    assert stage().seconds == 20.0
    assert stage(overhead_s=5.0, overhead="evaluation").seconds == 25.0
    assert stage(skipped=True).seconds == 0.0
    two = plan.Plan("cmd", "cpu", (stage(), stage(count=3, per_unit=1.5)), "paper")
    assert two.seconds == pytest.approx(24.5)
    text = two.format()
    assert "10 iterations x 2 s = 0:00:20" in text and "estimated total 0:00:24" in text
    with pytest.raises(ValueError, match="must be >= 0"):
        stage(count=-1)


def test_over_a_day_warns_with_the_cpu_preset() -> None:
    day = plan.DAY_S
    assert plan.Plan("cmd", "cpu", (stage(count=1, per_unit=day),), "paper").warning() is None
    long = plan.Plan("cmd", "cpu", (stage(count=2, per_unit=day),), "paper")
    assert "--preset cpu" in long.warning() and long.warning() in long.format()
    assert "2d 0:00:00" in long.warning()
    already_cpu = plan.Plan("cmd", "cpu", (stage(count=2, per_unit=day),), "cpu")
    assert "--device cuda" in already_cpu.warning()


def test_format_duration() -> None:
    assert plan.format_duration(59.6) == "0:01:00"
    assert plan.format_duration(3 * 86_400 + 3661) == "3d 1:01:01"
    assert plan.format_duration(float("inf")) == "?"


def test_evaluation_points_match_the_harness_schedule() -> None:
    assert plan.evaluation_points(4, 2) == 3  # start, 2, 4
    assert plan.evaluation_points(5, 2) == 4  # start, 2, 4, 5 (the end)
    assert plan.evaluation_points(2000, 40) == 51
    assert plan.evaluation_points(5, 2, done=3) == 2  # a resume from iteration 3: 4 and 5
    assert plan.evaluation_points(4, 2, done=2) == 1 and plan.evaluation_points(4, 2, done=4) == 0


def test_seconds_per_call_never_passes_the_budget() -> None:
    calls = []
    assert plan.seconds_per_call(lambda: calls.append(1), 1) >= 0.0 and len(calls) == 1
    calls.clear()
    plan.seconds_per_call(lambda: calls.append(1), 100)
    assert len(calls) == plan.WARMUP_CALLS + plan.TIMED_CALLS
    with pytest.raises(ValueError, match="at least one"):
        plan.seconds_per_call(lambda: None, 0)

    def diverges() -> None:
        raise FloatingPointError("nan gradients")

    unknown = stage(per_unit=plan.seconds_per_call(diverges, 5))
    assert math.isnan(unknown.seconds) and "= ?" in plan.stage_lines(1, 1, unknown)[0]
    assert plan.Plan("cmd", "cpu", (unknown,)).warning() is None


def test_stage_clock_eta_uses_the_measured_rate_then_later_stages() -> None:
    the_plan = plan.Plan("cmd", "cpu", (stage(count=10, per_unit=2.0), stage(count=5, per_unit=4.0)))
    first, second = plan.StageClock(the_plan, 1), plan.StageClock(the_plan, 2)
    assert first.eta(remaining=10, done=0, elapsed_s=0.0) == 20.0 + 20.0  # the plan's estimates
    assert first.eta(remaining=6, done=4, elapsed_s=12.0) == 6 * 3.0 + 20.0  # this session's rate
    assert second.eta(remaining=0, done=5, elapsed_s=1.0) == 0.0
    assert "stage 1/2" in first.line(4, 10, 4, 12.0) and "overall ETA 0:00:38" in first.line(4, 10, 4, 12.0)
    assert [first.due(p, 10) for p in (1, 1, 2, 9, 10)] == [True, False, True, True, True]
    with pytest.raises(ValueError):
        plan.StageClock(the_plan, 3)


def test_isolated_restores_random_states_and_threads() -> None:
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    threads = torch.get_num_threads()
    with plan.isolated(threads + 1):
        assert torch.get_num_threads() == threads + 1
        torch.rand(5), np.random.rand(5), random.random()
    assert torch.get_num_threads() == threads
    assert (torch.rand(1), np.random.rand(), random.random()) == expected


def test_synthetic_dataset_has_whole_episodes() -> None:
    data = plan.synthetic_dataset(4, 2, episodes=3, length=10)
    assert data.num_episodes == 3 and data.num_transitions == 30 and data.obs.shape == (33, 4)
    assert data.episode_start.tolist() == [0, 11, 22]


def test_run_dry_run_prints_the_plan_and_creates_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert (
        run_main(["--algo", "shac", "--env", TOY, "--preset", "smoke", "--out", str(out), "--dry-run"]) == 0
    )
    text = capsys.readouterr().out
    assert "plan: bench.run --algo shac" in text and "4 iterations x" in text and "env steps 128" in text
    assert "parameters" in text and "on cpu" in text and "estimated total" in text
    assert not out.exists()


def test_the_warmup_leaves_the_run_unchanged(tmp_path: Path, capsys) -> None:
    measured = start_run("shac", TOY, preset="smoke", out=tmp_path / "a")
    assert "plan: bench.run" in capsys.readouterr().out
    # As a pipeline stage (a clock given) the run measures nothing: no warm-up at all.
    clock = plan.StageClock(plan.Plan("cmd", "cpu", (stage(count=4, per_unit=1.0),)), 1)
    unmeasured = start_run("shac", TOY, preset="smoke", out=tmp_path / "b", clock=clock)
    text = capsys.readouterr().out
    assert "plan:" not in text and "[pipeline stage 1/1: train 100%] overall ETA" in text
    for name in (rundir.EVAL_EPISODES, rundir.TRAIN):
        a, b = (pd.read_csv(run.run_dir / name) for run in (measured, unmeasured))
        if name == rundir.TRAIN:
            a, b = (
                t[t["metric"] != "fps"].drop(columns="wall_time_s").reset_index(drop=True) for t in (a, b)
            )
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)


def test_pretrain_and_collect_dry_runs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    argv = ["--env", TOY, "--episodes", "6", "--random", "--num-envs", "4"]
    assert collect_main([*argv, "--out", str(data), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "plan: bench.collect" in text and "128 batch steps" in text  # 2 rounds of 64-step episodes
    assert not data.exists()
    assert collect_main([*argv, "--out", str(data)]) == 0
    out = tmp_path / "runs"
    assert (
        pretrain_main(
            ["--env", TOY, "--data", str(data), "--preset", "smoke", "--out", str(out), "--dry-run"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "world-model pretraining: 20 steps" in text and "world_model" in text
    assert not out.exists()
