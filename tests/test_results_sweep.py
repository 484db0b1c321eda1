"""The committed ant comparison (SHAC and online PWM at the cpu preset) is what one ``bench.sweep`` runs.

results/README.md names the command, ``python -m bench.sweep --algos shac,pwm --envs ant --seeds 0-1
--preset cpu --pwm-data shared --out OUT``. Every task of its plan must resolve to exactly the settings that
the committed run it stands for recorded in its ``config.json``: then rerunning the command on a CPU with one
torch thread reproduces the committed numbers (runs are bit-reproducible for the same settings, thread count
and device). ``--save-data`` is not compared: it only records transitions (the committed SHAC runs recorded
the offline PWM run's data).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import envs
from bench.presets import pretrain_settings
from bench.sweep_plan import SweepSpec, build_plan, task_settings

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"
SWEEP = SweepSpec(algos=["shac", "pwm"], envs=["ant"], seeds=[0, 1], preset="cpu", pwm_data="shared")
COMMITTED = {
    "ant-shac-seed0": "ant/shac/seed0_20261130T042321Z",
    "ant-shac-seed1": "ant/shac/seed1_20261130T042321Z",
    "ant-pwm_data-seed0": "ant_pwm_stages/shac/seed0_20261130T071245Z",
    "ant-pwm_pretrain-seed0": "ant_pwm_stages/pwm_pretrain/seed0_20261130T072127Z",
    "ant-pwm-seed0": "ant/pwm/seed0_20261130T072730Z",
}
"""Sweep task id -> the committed run directory it regenerates (under results/runs/)."""


def _plan() -> dict:
    return {task.id: task for task in build_plan(SWEEP, envs.names())}


def test_every_task_of_the_sweep_has_a_committed_run():
    missing = sorted(set(_plan()) - set(COMMITTED) - {"ant-pwm-seed1"})
    assert missing == [], f"sweep tasks without a committed run: {missing}"
    assert all((RUNS / run / "config.json").is_file() for run in COMMITTED.values())


@pytest.mark.parametrize("task_id", sorted(COMMITTED))
def test_the_sweep_task_resolves_to_the_committed_settings(task_id):
    task = _plan()[task_id]
    config = json.loads((RUNS / COMMITTED[task_id] / "config.json").read_text())
    if task.command == "run":
        wanted = task_settings(task)
        assert (config["algo"], config["seed"]) == (task.algo, task.seed)
    else:
        wanted = pretrain_settings(task.preset, task.env).to_dict()
        assert config["seed"] == task.seed
    assert config["settings"] == json.loads(json.dumps(wanted)), f"{task_id}: settings differ"


def test_a_changed_setting_is_caught():
    """The comparison above is not vacuous: the committed data run is not a full-length SHAC run."""
    config = json.loads((RUNS / COMMITTED["ant-pwm_data-seed0"] / "config.json").read_text())
    assert config["settings"] != json.loads(json.dumps(task_settings(_plan()["ant-shac-seed0"])))
