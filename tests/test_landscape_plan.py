"""The plan ``bench.landscape slices|gradients`` prints before it starts: its arithmetic, its isolation from
the analysis's numbers, and ``--dry-run``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import landscape as cli
from bench import plan
from bench.landscape_run import build_problem, plan_analysis, run_gradients, run_slices
from tests.test_landscape import TINY, _smoke_world_model


def test_linear_cost_recovers_setup_and_per_step_seconds() -> None:
    a, b = plan.linear_cost(16, 0.5 + 16 * 0.01, 32, 0.5 + 32 * 0.01)
    assert math.isclose(a, 0.5) and math.isclose(b, 0.01)
    # Timing noise (the longer call no slower): every second is charged per step, the larger rate wins.
    assert plan.linear_cost(10, 2.0, 20, 1.8) == (0.0, 0.2)
    assert all(math.isnan(x) for x in plan.linear_cost(10, math.nan, 20, 1.0))
    with pytest.raises(ValueError):
        plan.linear_cost(20, 1.0, 10, 2.0)


def test_rollout_stage_counts_calls_steps_and_env_steps() -> None:
    stage = plan.rollout_stage("slices sim", [(42, 64), (12, 16)], chunk=32, batch=8, cost=(0.5, 0.01))
    assert stage.count == 2 * 64 + 1 * 16  # chunk steps: 2 calls of 64 steps, 1 of 16
    assert stage.env_steps == 42 * 8 * 64 + 12 * 8 * 16
    assert math.isclose(stage.overhead_s, 3 * 0.5)
    assert math.isclose(stage.seconds, 144 * 0.01 + 1.5)
    with pytest.raises(ValueError):
        plan.rollout_stage("x", [(1, 1)], chunk=0, batch=1, cost=(0.0, 0.0))


@pytest.fixture(scope="module")
def ant_problem(tmp_path_factory):
    wm = _smoke_world_model(tmp_path_factory.mktemp("wm") / "wm.pt")
    return build_problem("ant", None, "init", str(wm), seed=0), wm


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "landscape.npz") as data:
        return dict(data)


@pytest.mark.parametrize("analysis", ["slices", "gradients"])
def test_plan_measures_without_changing_the_analysis(tmp_path: Path, ant_problem, analysis: str) -> None:
    problem, _ = ant_problem
    run = run_slices if analysis == "slices" else run_gradients
    before = _npz(run(tmp_path / "a", problem, TINY, seed=0, progress=False))
    planned = plan_analysis(analysis, problem, TINY, 0, "bench.landscape test", "quick")
    after = _npz(run(tmp_path / "b", problem, TINY, seed=0, progress=False))
    for key in before:
        assert np.array_equal(before[key], after[key], equal_nan=True), key
    names = [f"{analysis} sim", f"{analysis} wm"] + (
        ["gradients statistics"] if analysis == "gradients" else []
    )
    assert [s.name for s in planned.stages] == names
    assert all(s.seconds_per_unit > 0 and math.isfinite(s.seconds) for s in planned.stages)
    if analysis == "gradients":  # n samples of grad_batch states at every H; R resamples at every H
        assert planned.stages[2].count == TINY.resamples * len(TINY.horizons)
        assert planned.stages[0].env_steps == TINY.grad_samples * TINY.grad_batch * sum(TINY.horizons)
    else:  # every grid point's B start states rolled to the largest H it needs, at least the contour's
        assert planned.stages[0].env_steps > TINY.contour_points**2 * TINY.batch * TINY.contour_horizon


@pytest.mark.parametrize("analysis", ["slices", "gradients"])
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, ant_problem, analysis: str, capsys):
    _, wm = ant_problem
    out = tmp_path / "out"
    argv = [analysis, "--env", "ant", "--at", "init", "--world-model", str(wm), "--out", str(out)]
    assert cli.main([*argv, "--horizons", "2", "4", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("plan: bench.landscape " + analysis) and f"{analysis} wm" in printed
    assert "estimated total" in printed and not out.exists()
