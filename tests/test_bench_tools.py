"""bench.perf and bench.publish through their CLIs (behaviour, not speed)."""

from __future__ import annotations

import mujoco
import pandas as pd
import pytest

import envs
from bench import perf, publish, rundir


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
