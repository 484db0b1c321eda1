"""``bench.run --algo pwm`` on the real ant at the smoke preset: the whole pipeline and the direct path."""

from __future__ import annotations

import contextlib
import io

import pytest

from bench import rundir
from bench.harness import resume_run, start_run
from bench.pipeline import pipeline_root
from bench.run import main
from tests.helpers import assert_same_run, interrupt_at


@pytest.fixture(scope="module")
def pipeline_and_console(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(["--algo", "pwm", "--env", "ant", "--preset", "smoke", "--out", str(out)]) == 0
    return out, console.getvalue()


@pytest.fixture(scope="module")
def pipeline(pipeline_and_console):
    return pipeline_and_console[0]


def stage_runs(out, stage):
    return rundir.find_runs(pipeline_root(out, "ant", 0, "smoke", "online") / stage)


def test_pipeline_runs_all_three_stages(pipeline):
    for stage in ("data", "pretrain", "policy"):
        runs = stage_runs(pipeline, stage)
        assert len(runs) == 1, stage
        assert rundir.read_summary(runs[0])["status"] == "complete"
    assert (stage_runs(pipeline, "data")[0] / "data" / "dataset.json").exists()
    policy = rundir.read_eval(stage_runs(pipeline, "policy")[0])
    assert len(policy) >= 2 and policy["return_mean"].notna().all()


def test_the_plan_comes_first_and_one_progress_line_spans_the_stages(pipeline_and_console):
    console = pipeline_and_console[1]
    assert console.startswith("plan: bench.run --algo pwm --env ant (pipeline, online)")
    for number, name in enumerate(("data collection with SHAC", "world-model pretraining", "policy"), 1):
        assert f"  {number}/3 {name}" in console
    assert "parameters" in console and "env steps 128" in console
    progress = [line for line in console.splitlines() if line.startswith("[pipeline stage")]
    assert {line.split(":")[0] for line in progress} == {f"[pipeline stage {k}/3" for k in (1, 2, 3)}
    assert all("overall ETA" in line for line in progress)
    assert progress[-1].startswith("[pipeline stage 3/3: policy learning (online) 100%] overall ETA 0:00:00")


def test_dry_run_plans_the_pipeline_and_writes_nothing(tmp_path, capsys):
    argv = ["--algo", "pwm", "--env", "ant", "--preset", "smoke", "--variant", "offline", "--dry-run"]
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "3/3 policy learning (offline): 4 iterations" in out and "estimated total" in out
    assert not (tmp_path / "runs").exists()


def test_running_again_skips_complete_stages(pipeline, capsys):
    assert main(["--algo", "pwm", "--env", "ant", "--preset", "smoke", "--out", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert out.count("complete, skipped") == 3  # the plan: nothing left to do
    assert "estimated total 0:00:00" in out
    assert len([line for line in out.splitlines() if line.startswith("[pipeline") and "skipped" in line]) == 3
    assert all(len(stage_runs(pipeline, stage)) == 1 for stage in ("data", "pretrain", "policy"))


def test_offline_policy_from_a_given_world_model_and_dataset(pipeline, tmp_path):
    checkpoint = stage_runs(pipeline, "pretrain")[0] / "checkpoints" / "final.pt"
    data = stage_runs(pipeline, "data")[0] / "data"
    argv = ["--algo", "pwm", "--env", "ant", "--preset", "smoke", "--variant", "offline"]
    argv += ["--out", str(tmp_path)]
    assert main([*argv, "--world-model", str(checkpoint), "--data", str(data)]) == 0
    (run,) = rundir.find_runs(tmp_path)
    config = rundir.read_json(run / rundir.CONFIG)
    assert config["inputs"] == {"world_model": str(checkpoint.resolve()), "data": str(data.resolve())}
    architecture = rundir.read_json(stage_runs(pipeline, "pretrain")[0] / rundir.CONFIG)["settings"][
        "world_model"
    ]
    assert (
        config["settings"]["algo"]["world_model"] == architecture
    )  # the checkpoint's architecture, recorded
    summary = rundir.read_summary(run)
    assert summary["status"] == "complete"
    assert summary["env_steps"]["training"] == 0 and summary["env_steps"]["data"] > 0


def test_world_model_option_is_pwm_only_and_must_exist(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--algo", "shac", "--env", "ant", "--world-model", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--algo", "pwm", "--env", "ant", "--world-model", str(tmp_path / "missing.pt")])
    assert exit_info.value.code == 2


def test_a_pwm_run_resumes_bit_exactly_reloading_its_inputs(pipeline, tmp_path):
    inputs = {
        "world_model": stage_runs(pipeline, "pretrain")[0] / "checkpoints" / "final.pt",
        "data": stage_runs(pipeline, "data")[0] / "data",
    }
    settings = {"preset": "smoke", "overrides": ["algo.max_epochs=6", "run.eval_interval=0.25"], **inputs}

    straight = start_run("pwm", "ant", out=tmp_path / "a", **settings).run_dir
    stopped = start_run("pwm", "ant", out=tmp_path / "b", on_iteration=interrupt_at(3), **settings)
    assert stopped.exit_code == 130 and resume_run(stopped.run_dir).status == "complete"
    assert_same_run(straight, stopped.run_dir)
