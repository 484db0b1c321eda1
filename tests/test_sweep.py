"""``bench.sweep`` at the smoke preset: grids, skipping, resuming, retries, PWM stage order, Ray vs local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import envs
from bench import rundir
from bench.sweep import main
from bench.sweep_backends import CODE_ROOT
from bench.sweep_estimates import budget
from bench.sweep_plan import SweepSpec, build_plan, load_sweep_file, parse_seeds
from bench.sweep_runner import Manifest, run_sweep

GRID = ["--algos", "shac,pwm", "--envs", "ant", "--seeds", "0-1", "--preset", "smoke", "--pwm-data", "shac"]


def manifest(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def run_dir(out: Path, task_id: str) -> Path:
    return Path(manifest(out)["tasks"][task_id]["run_dir"])


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """shac and pwm (its data recorded by the SHAC run of the same seed) x seeds 0, 1 on the ant."""
    out = tmp_path_factory.mktemp("sweep")
    assert main([*GRID, "--out", str(out)]) == 0
    return out


# -- the plan ---------------------------------------------------------------------------------------------


def test_seed_ranges_and_bad_input():
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert parse_seeds([3, 1]) == [1, 3]
    for bad in ("2-1", "a", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)
    spec = SweepSpec(algos=["shac:nope"], envs=["ant"], seeds=[0], preset="smoke")
    with pytest.raises(ValueError, match="unknown variant 'nope' of shac; valid: pwm, diffrl"):
        build_plan(spec, envs.names())
    spec = SweepSpec(algos=["pwm"], envs=["ant"], seeds=[0], pwm_data="shac")
    with pytest.raises(ValueError, match="needs shac among the algos"):
        build_plan(spec, envs.names())


def test_pwm_data_modes_share_stages_as_asked():
    def deps(mode: str) -> dict[str, tuple[str, ...]]:
        spec = SweepSpec(algos=["pwm"], envs=["ant"], seeds=[0, 1], preset="smoke", pwm_data=mode)
        return {task.id: task.deps for task in build_plan(spec, envs.names())}

    separate = deps("separate")
    assert separate["ant-pwm-seed1"] == ("ant-pwm_pretrain-seed1", "ant-pwm_data-seed1")
    assert separate["ant-pwm_pretrain-seed1"] == ("ant-pwm_data-seed1",)
    shared = deps("shared")
    assert len(shared) == 4  # one data and one pretraining task serve both policy seeds
    assert shared["ant-pwm-seed1"] == ("ant-pwm_pretrain-seed0", "ant-pwm_data-seed0")


def test_sweep_file_cells_add_overrides(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'algos = ["shac:diffrl"]\nenvs = "ant"\nseeds = "0-1"\npreset = "smoke"\n'
        'set = ["run.eval_episodes=1"]\n[[cells]]\nseed = 1\nset = ["algo.actor_lr=0.001"]\n'
    )
    plan = build_plan(load_sweep_file(path), envs.names())
    assert [task.overrides for task in plan] == [
        ("run.eval_episodes=1",),
        ("run.eval_episodes=1", "algo.actor_lr=0.001"),
    ]
    assert {task.variant for task in plan} == {"diffrl"}
    (tmp_path / "bad.json").write_text('{"algos": "shac", "sedes": [0]}')
    with pytest.raises(ValueError, match="unknown keys \\['sedes'\\]"):
        load_sweep_file(tmp_path / "bad.json")


def test_dry_run_prints_commands_and_measured_estimates(tmp_path, capsys):
    args = ["--algos", "shac,pwm:offline", "--envs", "ant,humanoid", "--seeds", "0", "--preset", "cpu"]
    assert main([*args, "--pwm-data", "shac", "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "6 tasks (4 scored runs)" in text
    assert "--world-model <ant-pwm_pretrain-seed0>/checkpoints/final.pt --data <ant-shac-seed0>/data" in text
    # ant SHAC at the cpu preset: 2.05M env-steps at the rate measured in results/ (3,030 s)
    assert "ant-shac-seed0                    50.5 min" in text and "results/ant_shac_vs_pwm/runs.csv" in text
    assert ">= 27.1 min" in text  # humanoid SHAC: only its simulator's speed is measured (a lower bound)
    assert "2 task(s) unknown, not counted" in text  # humanoid pretraining and offline PWM
    assert not (tmp_path / "s").exists()


def test_a_sweep_may_grow_but_not_change_its_tasks(tmp_path):
    def plan(seeds: list[int], preset: str) -> list:
        return build_plan(SweepSpec(algos=["shac"], envs=["ant"], seeds=seeds, preset=preset), envs.names())

    Manifest(tmp_path, plan([0], "smoke"), [], "local")
    grown = Manifest(tmp_path, plan([0, 1], "smoke"), [], "local")
    assert sorted(grown.data["tasks"]) == ["ant-shac-seed0", "ant-shac-seed1"]
    assert len(grown.data["invocations"]) == 2
    with pytest.raises(ValueError, match="task ant-shac-seed0 differs from the one recorded"):
        Manifest(tmp_path, plan([0], "cpu"), [], "local")


def test_bad_arguments_exit_2(tmp_path, capsys):
    for argv in (
        ["--algos", "nope", "--envs", "ant", "--seeds", "0"],
        ["--algos", "shac", "--envs", "walker", "--seeds", "0"],
        ["--algos", "shac", "--envs", "ant", "--seeds", "0", "--gpus-per-run", "1"],
        ["--algos", "shac", "--envs", "ant", "--seeds", "0", "--set", "algo.horizon=eight"],
        ["--resume"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path)])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "valid: shac, pwm" in err and "sweep.json does not exist" in err
    assert "algo.horizon expects a value like 32" in err


# -- running ----------------------------------------------------------------------------------------------


def test_grid_completes_with_pwm_stages_in_dependency_order(grid):
    tasks = manifest(grid)["tasks"]
    assert {task_id: entry["status"] for task_id, entry in tasks.items()} == dict.fromkeys(
        [f"ant-{kind}-seed{seed}" for kind in ("shac", "pwm_pretrain", "pwm") for seed in (0, 1)], "complete"
    )
    for seed in (0, 1):
        data, pretrain, policy = (tasks[f"ant-{kind}-seed{seed}"] for kind in ("shac", "pwm_pretrain", "pwm"))
        assert data["attempts"][0]["end"] <= pretrain["attempts"][0]["start"]
        assert pretrain["attempts"][0]["end"] <= policy["attempts"][0]["start"]
        assert "--save-data" in data["attempts"][0]["argv"]
        inputs = rundir.read_json(Path(policy["run_dir"]) / rundir.CONFIG)["inputs"]
        assert inputs["data"] == str((Path(data["run_dir"]) / rundir.DATA).resolve())
        assert inputs["world_model"] == str(
            (Path(pretrain["run_dir"]) / rundir.CHECKPOINTS / rundir.FINAL).resolve()
        )
    for entry in tasks.values():
        (attempt,) = entry["attempts"]
        assert attempt["exit_code"] == 0 and attempt["host"] and len(attempt["cpus"]) == 1
    scores = pd.read_csv(grid / "report" / "scores.csv")  # bench.report ran on the four scored runs
    assert sorted(zip(scores["algo"], scores["seed"], strict=True)) == [
        (a, s) for a in ("pwm", "shac") for s in (0, 1)
    ]


def test_rerun_skips_complete_runs(grid, capsys):
    before = {p: p.stat().st_mtime for p in grid.rglob("summary.json")}
    assert main([*GRID, "--out", str(grid), "--no-report"]) == 0
    assert capsys.readouterr().out.count("skipped") == 6
    assert {p: p.stat().st_mtime for p in grid.rglob("summary.json")} == before
    assert main(["--resume", "--out", str(grid), "--no-report"]) == 0  # the plan recorded in sweep.json
    assert capsys.readouterr().out.count("skipped") == 6
    assert {p: p.stat().st_mtime for p in grid.rglob("summary.json")} == before
    assert all(len(entry["attempts"]) == 1 for entry in manifest(grid)["tasks"].values())


def test_failing_cell_is_retried_and_reported(grid, tmp_path, capsys):
    """The grid grows by seed 2, whose SHAC run diverges (actor learning rate 1e30: bench.run exits 1): it is
    retried from its checkpoint, reported failed, and the PWM stages that read it are blocked; seed 0 is
    complete and skipped."""
    path = tmp_path / "grow.json"
    cell = {"algo": "shac", "seed": 2, "set": ["algo.actor_lr=1e30"]}
    values = {"algos": ["shac", "pwm"], "envs": ["ant"], "seeds": [0, 2], "pwm_data": "shac", "cells": [cell]}
    path.write_text(json.dumps(values))
    assert main(["--file", str(path), "--preset", "smoke", "--out", str(grid), "--retries", "1"]) == 1
    out = capsys.readouterr().out
    assert out.count("skipped") == 3 and "retry 1 of 1" in out and "failed: exit code 1" in out
    tasks = manifest(grid)["tasks"]
    entry = tasks["ant-shac-seed2"]
    assert entry["status"] == "failed" and [a["exit_code"] for a in entry["attempts"]] == [1, 1]
    assert entry["attempts"][1]["argv"][3:5] == ["--resume", entry["run_dir"]]
    assert tasks["ant-pwm_pretrain-seed2"]["status"] == tasks["ant-pwm-seed2"]["status"] == "blocked"
    assert rundir.read_summary(Path(entry["run_dir"]))["status"] == "failed"
    assert "actions contain NaN or infinite values" in (grid / "logs" / "ant-shac-seed2.log").read_text()
    assert len(manifest(grid)["invocations"]) >= 2


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (started by any of its threads)."""
    return [
        int(child)
        for path in Path(f"/proc/{pid}/task").glob("*/children")
        for child in path.read_text().split()
    ]


def _iterations(run: Path) -> int:
    path = run / rundir.TRAIN
    if not path.exists() or not path.stat().st_size:
        return 0
    steps = pd.read_csv(path)["step"]  # header only right after a resume dropped the rows past its checkpoint
    return int(steps.max()) if len(steps) else 0


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_killed_cell_resumes_and_ctrl_c_checkpoints(tmp_path):
    """SIGKILL a cell: its retry resumes from the checkpoint. Ctrl-C the sweep: the run checkpoints, exit 130;
    the rerun resumes it to completion."""
    out = tmp_path / "sweep"
    argv = [
        "--algos",
        "shac",
        "--envs",
        "ant",
        "--seeds",
        "0",
        "--preset",
        "smoke",
        "--set",
        "algo.max_epochs=100",
    ]
    argv += ["--out", str(out), "--retries", "1", "--no-report"]
    driver = subprocess.Popen([sys.executable, "-m", "bench.sweep", *argv], cwd=CODE_ROOT)
    try:
        runs = out / "runs" / "ant-shac-seed0"
        _wait_for(lambda: list(runs.rglob("latest.pt")), "the first checkpoint")
        (run,) = rundir.find_runs(runs)
        (cell,) = _children(driver.pid)
        os.kill(cell, signal.SIGKILL)
        _wait_for(lambda: rundir.read_json(run / rundir.CONFIG)["resumes"], "the retry to resume")
        # Rows after the checkpoint were dropped on resume: a new row means the resumed loop is running.
        _wait_for(lambda: _iterations(run) >= 1, "a resumed iteration")
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 130
    finally:
        if driver.poll() is None:
            driver.kill()
    entry = manifest(out)["tasks"]["ant-shac-seed0"]
    assert entry["status"] == "interrupted"
    assert [a["exit_code"] for a in entry["attempts"]] == [-signal.SIGKILL, 130]
    assert entry["attempts"][1]["argv"][3:5] == ["--resume", str(run)]
    assert rundir.read_summary(run)["status"] == "interrupted"
    assert main([*argv]) == 0
    assert rundir.read_summary(run)["status"] == "complete"
    assert len(rundir.read_json(run / rundir.CONFIG)["resumes"]) == 2
    assert rundir.find_runs(out) == [run]


@pytest.mark.slow
def test_ray_backend_matches_local_bit_for_bit(grid, tmp_path):
    """The grid on a private 2-CPU Ray instance, Ctrl-C'd once its first checkpoint exists, then rerun: the
    same evaluation episodes as the local backend's uninterrupted grid, bit for bit."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e .[ray])")
    from bench.sweep_backends import RayBackend

    spec = SweepSpec(algos=["shac", "pwm"], envs=["ant"], seeds=[0, 1], preset="smoke", pwm_data="shac")
    plan = build_plan(spec, envs.names())
    env = {k: v for k, v in os.environ.items() if k.startswith("WARPBENCH_")}

    def ctrl_c() -> None:
        _wait_for(lambda: list((tmp_path / "runs").rglob("latest.pt")), "a checkpoint")
        os.kill(os.getpid(), signal.SIGINT)

    backend = RayBackend(None, cpus_per_run=1, num_cpus=2)
    try:
        assert backend.describe().startswith("ray: 1 node(s), 2 CPUs")
        stopper = threading.Thread(target=ctrl_c)
        stopper.start()
        assert run_sweep(plan, tmp_path, backend, env=env, backend_name="ray") == 130
        stopper.join()
        assert "complete" not in {entry["status"] for entry in manifest(tmp_path)["tasks"].values()} - {
            "complete"
        }
        assert run_sweep(plan, tmp_path, backend, env=env, backend_name="ray") == 0
    finally:
        backend.close()
    for task in plan:
        if task.scored:
            ours = pd.read_csv(run_dir(tmp_path, task.id) / rundir.EVAL_EPISODES)
            local = pd.read_csv(run_dir(grid, task.id) / rundir.EVAL_EPISODES)
            pd.testing.assert_frame_equal(ours, local, check_exact=True)


def test_estimate_budgets_are_each_algorithms_env_steps():
    """The work a dry run divides by a rate: every algorithm's env-steps at the cpu preset, counted the way
    each trainer counts them (SAC and TD-MPC2 by steps_per_iteration, BPTT by whole episodes)."""
    algos = ["shac", "ppo", "sac", "bptt", "tdmpc2"]
    spec = SweepSpec(algos=algos, envs=["ant", "double_pendulum"], seeds=[0], preset="cpu")
    work = {(t.algo, t.env): budget(t) for t in build_plan(spec, envs.names())}
    assert work[("shac", "ant")] == work[("ppo", "ant")] == work[("sac", "ant")] == 2_048_000
    assert work[("bptt", "ant")] == 32 * 1000 * 64  # 1,000-step episodes
    assert work[("bptt", "double_pendulum")] == 32 * 240 * 64  # the pendulum's 240-step episodes
    assert work[("tdmpc2", "ant")] == 16 * 64 * 100
