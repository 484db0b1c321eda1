"""bench.perf and bench.publish through their CLIs (behaviour, not speed)."""

from __future__ import annotations

import time

import mujoco
import pandas as pd
import pytest

import envs
from bench import perf, perf_train, publish, rundir
from bench.algorithms import RunInputs
from bench.harness import resolve_run


def test_perf_writes_a_table_with_forward_backward_and_mujoco_rows(tmp_path, capsys):
    out = tmp_path / "perf.csv"
    argv = ["--env", "ant", "--num-envs", "2", "--horizon", "2", "--repeats", "1", "--out", str(out)]
    assert perf.main(argv) == 0
    table = pd.read_csv(out)
    assert list(table["mode"]) == ["forward", "forward_backward", "mujoco_mj_step"]
    assert (table["env_steps_per_s"] > 0).all()
    assert {"hardware", "git_commit", "version_warp-lang"} <= set(table.columns)
    assert "forward_backward" in capsys.readouterr().out


def test_perf_rejects_bad_arguments():
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["--env", "walker"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["--num-envs", "0"])
    assert exit_info.value.code == 2


def test_perf_reports_missing_snu_data_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WARPBENCH_SNU_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("WARPBENCH_DEBUG", raising=False)
    assert perf.main(["--env", "snu_humanoid", "--repeats", "1"]) == 1
    err = capsys.readouterr().err
    assert "error: SnuDataError" in err and str(tmp_path / "nowhere") in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["ant", "humanoid", "hopper", "cheetah"])
def test_perf_mujoco_reference_has_the_engines_ground_contact(name):
    """The reference line's MuJoCo model collides body geoms with the plane (and not with each other):
    a body dropped from the start pose comes to rest on the plane instead of falling through it."""
    env = envs.make(name, num_envs=1, stochastic_init=False)
    m = perf.mujoco_model(env)
    assert m.opt.timestep == pytest.approx(1.0 / 60.0 / env.model.params.substeps)
    d = mujoco.MjData(m)
    d.qpos[:] = env.start_q.numpy()
    mujoco.mj_kinematics(m, d)
    start_height = d.xpos[1, 2]  # the root body's origin; the assets are Z-up
    contacts = []
    for _ in range(round(1.5 / m.opt.timestep)):  # 1.5 s: falls, lands, settles
        mujoco.mj_step(m, d)
        contacts.append(d.ncon)
    assert max(contacts) > 0 and d.ncon > 0
    assert 0.1 < d.xpos[1, 2] < start_height
    bodies = [(d.contact[i].geom1, d.contact[i].geom2) for i in range(d.ncon)]
    assert all(0 in (m.geom_bodyid[a], m.geom_bodyid[b]) for a, b in bodies)  # only with the world plane


def make_run(root, status):
    run = rundir.new_run_dir(root, "ant", "shac", 0)
    rundir.write_json(run / rundir.CONFIG, {"env": "ant", "algo": "shac", "seed": 0})
    rundir.append_rows(run / rundir.EVAL, rundir.EVAL_COLUMNS, [dict.fromkeys(rundir.EVAL_COLUMNS, 1.0)])
    rundir.write_json(run / rundir.SUMMARY, {"status": status})
    (run / rundir.CHECKPOINTS).mkdir()
    (run / rundir.CHECKPOINTS / "final.pt").write_bytes(b"large")
    return run


def test_publish_copies_tidy_files_only(tmp_path):
    run = make_run(tmp_path / "runs", "complete")
    assert publish.main([str(run), "--out", str(tmp_path / "results")]) == 0
    dest = tmp_path / "results" / "ant" / "shac" / run.name
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "eval.csv", "summary.json"]
    assert rundir.find_runs(tmp_path / "results") == [dest]


def test_publish_refuses_incomplete_runs(tmp_path):
    run = make_run(tmp_path / "runs", "interrupted")
    with pytest.raises(SystemExit) as exit_info:
        publish.main([str(run), "--out", str(tmp_path / "results")])
    assert exit_info.value.code == 2
    # Asked for, a stopped run is kept as evidence, with its summary saying how far it got.
    assert publish.main([str(run), "--out", str(tmp_path / "results"), "--incomplete"]) == 0
    summary = rundir.read_summary(tmp_path / "results" / "ant" / "shac" / run.name)
    assert summary == {"status": "interrupted"}


@pytest.mark.parametrize("algo", ["shac", "pwm"])
def test_train_breakdown_covers_the_iteration(algo):
    """Every category is timed (exclusive times: shares sum to 1) and each wrapped piece lands in its own
    category."""
    breakdown = perf_train.train_breakdown(algo, "ant", iterations=2, preset="smoke")
    rows = breakdown.rows()
    assert [row["category"] for row in rows] == [*perf_train.CATEGORIES, "total"]
    parts = rows[:-1]
    assert sum(row["share"] for row in parts) == pytest.approx(1.0)
    assert sum(row["cpu_share"] for row in parts) == pytest.approx(1.0)
    assert all(row["seconds_per_iteration"] >= 0.0 for row in parts)
    seconds = breakdown.seconds
    assert seconds["simulator_forward"] > 0 and seconds["actor_update"] > 0 and seconds["critic_update"] > 0
    assert seconds["evaluation"] > 0
    # SHAC differentiates through the simulator; online PWM through its world model, which it fine-tunes.
    assert (seconds["simulator_backward"] > 0) == (algo == "shac")
    assert (seconds["world_model_update"] > 0) == (algo == "pwm")
    assert rows[-1]["env_steps_per_s"] == pytest.approx(breakdown.env_steps_per_iteration / breakdown.total)
    # Matrix products: the critic fit and the actor's backward multiply; the Warp simulator is not torch.
    gflop = breakdown.gflop
    assert gflop["critic_update"] > 0 and gflop["actor_update"] > 0 and gflop["evaluation"] > 0
    assert gflop["simulator_backward"] == 0
    assert (gflop["world_model_update"] > 0) == (algo == "pwm")
    assert rows[-1]["gflop_per_iteration"] == pytest.approx(sum(row["gflop_per_iteration"] for row in parts))


def test_flop_count_of_the_critic_update_is_the_hand_count():
    """One SHAC critic update at the smoke settings: forward (2 m k n per layer) and backward (twice that,
    less the input gradient of the first layer) of every member on every minibatch sample."""
    breakdown = perf_train.train_breakdown("shac", "ant", iterations=1, preset="smoke")
    settings = resolve_run("shac", "ant", RunInputs(), seed=0, preset="smoke")["settings"]
    algo = settings["algo"]
    widths = [37, *algo["critic_hidden"], 1]  # the ant's 37 observations
    layers = list(zip(widths[:-1], widths[1:], strict=False))
    per_sample = 2 * sum(k * n for k, n in layers) * 3 - 2 * widths[0] * widths[1]
    samples = algo["critic_iterations"] * breakdown.env_steps_per_iteration  # every pass uses every sample
    expected = per_sample * samples * algo["num_critics"] / 1e9
    assert breakdown.gflop["critic_update"] == pytest.approx(expected, rel=1e-9)


def test_section_timer_charges_nested_calls_to_their_own_category():
    timer = perf_train.SectionTimer()
    inner = timer.wrap("simulator_backward", lambda: time.sleep(0.02))
    outer = timer.wrap("actor_update", lambda: (inner(), time.sleep(0.01)))
    outer()
    wall = {name: value[0] for name, value in timer.totals.items()}
    assert 0.015 < wall["simulator_backward"] < 0.2
    assert 0.005 < wall["actor_update"] < wall["simulator_backward"]
    with pytest.raises(ValueError, match="unknown category"):
        timer.wrap("nap", lambda: None)


def test_instrumented_restores_methods_and_attributes():
    class Sim:
        def backward(self):
            return "backward"

    class Env:
        def __init__(self):
            self.sim = Sim()

        def step(self):
            return "step"

    env, critic_update = Env(), (lambda: "critic")
    trainer = type("Trainer", (), {})()
    trainer.actor_step, trainer.critic_update = (lambda: "actor"), critic_update
    timer = perf_train.SectionTimer()
    with perf_train.instrumented(trainer, env, timer):
        assert "step" in vars(env) and env.step() == "step" and trainer.critic_update() == "critic"
    assert "step" not in vars(env) and "backward" not in vars(env.sim)
    assert trainer.critic_update is critic_update
    assert timer.totals["simulator_forward"][0] > 0


def test_perf_train_cli_appends_rows(tmp_path, capsys):
    out = tmp_path / "train.csv"
    argv = ["--train", "--algo", "shac", "--env", "ant", "--preset", "smoke", "--iterations", "1"]
    assert perf.main([*argv, "--out", str(out)]) == 0
    assert perf.main([*argv, "--world-model-size", "tiny", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 2 * (len(perf_train.CATEGORIES) + 1) + 1 + 2  # + a matmul reference per call
    step = table[table["category"] == "world_model_step"].iloc[0]
    assert step["world_model_size"] == "tiny" and step["seconds_per_iteration"] > 0
    assert {"hardware", "git_commit", "cpu_seconds_per_iteration", "gflop_per_cpu_s"} <= set(table.columns)
    reference = table[table["category"] == "matmul_reference"]
    assert len(reference) == 2 and (reference["gflop_per_cpu_s"] > 0).all()
    assert "env-steps/s" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["--train", "--algo", "dreamer"])
    assert exit_info.value.code == 2
