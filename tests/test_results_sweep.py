"""The committed ant comparison (SHAC and online PWM at the cpu preset) is what one ``bench.sweep`` runs.

results/README.md names the command, ``python -m bench.sweep --algos shac,pwm --envs ant --seeds 0-1
--preset cpu --pwm-data shared --out OUT``. Every task of its plan must resolve to exactly the settings that
the committed run it stands for recorded in its ``config.json``: then rerunning the command on a CPU with one
torch thread reproduces the committed numbers (runs are bit-reproducible for the same settings, thread count
and device). ``--save-data`` is not compared: it only records transitions (the committed SHAC runs recorded
the offline PWM run's data). Settings added or changed in the code after the runs were made must be
listed in ADDED_SINCE with what their value does to the run (one, the held-out split, changes the
pretraining); and the runs predate two changes that alter numbers at the rounding level (faster Mish and
SimNorm, README "Where training time goes"), so a rerun gives the same recipe but not the same bits.
The command has been run end to end since: its own runs (results/runs/ant_sweep, with its manifest) must
match today's settings exactly.
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
    "ant-pwm-seed1": "ant/pwm/seed1_20261130T084046Z",
}
"""Sweep task id -> the committed run directory it regenerates (under results/runs/): the hand-started runs
of the ant report."""
SWEPT = {
    "ant-shac-seed0": "ant_sweep/ant/shac/seed0_20261130T150326Z",
    "ant-shac-seed1": "ant_sweep/ant/shac/seed1_20261130T154757Z",
    "ant-pwm_data-seed0": "ant_sweep_stages/ant/shac/seed0_20261130T153340Z",
    "ant-pwm_pretrain-seed0": "ant_sweep_stages/ant/pwm_pretrain/seed0_20261130T154920Z",
    "ant-pwm-seed0": "ant_sweep/ant/pwm/seed0_20261130T155336Z",
    "ant-pwm-seed1": "ant_sweep/ant/pwm/seed1_20261130T161817Z",
}
"""Sweep task id -> the run the command itself made when it was run end to end (results/runs/ant_sweep)."""


ADDED_SINCE = {
    (
        "algo",
        "termination",
    ): "imagined terminations, only with a model that has a head (the committed has none)",
    ("algo", "batch_size"): "offline only: start states per iteration (was None; online uses the env batch)",
    ("algo", "guard_gap"): "offline only: the stopping rule, off",
    ("algo", "model_training", "termination_coef"): "weight of a termination loss; the model has no head",
    ("algo", "world_model", "termination_head"): "False: a model without the head, as committed",
    ("train", "termination_coef"): "weight of a termination loss; the model has no head",
    ("world_model", "termination_head"): "False: no head, as committed",
    ("algo", "target_critic_alpha"): "None: no target critic, as committed",
    ("algo", "model_training", "value_coef"): "0: no value-equivalence term, as committed",
    ("train", "value_coef"): "0: no value-equivalence term (pretraining has no critic)",
    ("heldout_fraction",): "CHANGES the recipe: 5% of the episodes are now held out of pretraining for the "
    "diagnostics' prediction errors (results/README.md says so)",
}
"""Settings added or changed after the committed runs were made: (path) -> what its value does to them."""
ADDED_AFTER_THE_SWEEP = {
    ("algo", "target_critic_alpha"): "None: no target critic, as the sweep ran",
    ("algo", "model_training", "value_coef"): "0: no value-equivalence term, as the sweep ran",
    ("train", "value_coef"): "0: no value-equivalence term, as the sweep ran",
}
"""Settings added after the sweep's own runs were made (each passes only switched off)."""
SWITCHED_OFF = {"termination_head": False, "target_critic_alpha": None, "value_coef": 0.0}
"""New settings that pass only with this value (the behaviour of the runs made before they existed)."""


def _differences(committed: dict, wanted: dict, path: tuple = (), allowed: dict = ADDED_SINCE) -> list[str]:
    """Paths where ``wanted`` differs from ``committed``; keys only in ``wanted`` pass if in ``allowed``."""
    out = []
    for key in sorted(set(committed) | set(wanted)):
        where = (*path, key)
        if key not in wanted:
            out.append(f"{where}: committed only")
        elif key not in committed:
            switched_on = where[-1] in SWITCHED_OFF and wanted[key] != SWITCHED_OFF[where[-1]]
            if where not in allowed or switched_on:
                out.append(f"{where}: new setting {wanted[key]!r}")
        elif isinstance(committed[key], dict) and isinstance(wanted[key], dict):
            out += _differences(committed[key], wanted[key], where, allowed)
        elif committed[key] != wanted[key] and where not in allowed:
            out.append(f"{where}: committed {committed[key]!r}, sweep {wanted[key]!r}")
    return out


def _plan() -> dict:
    return {task.id: task for task in build_plan(SWEEP, envs.names())}


@pytest.mark.parametrize("runs", [COMMITTED, SWEPT], ids=["by-hand", "by-the-sweep"])
def test_every_task_of_the_sweep_has_a_committed_run(runs):
    missing = sorted(set(_plan()) - set(runs))
    assert missing == [], f"sweep tasks without a committed run: {missing}"
    assert all((RUNS / run / "config.json").is_file() for run in runs.values())


def test_the_published_sweep_manifest_is_the_command_and_complete():
    manifest = json.loads((RUNS / "ant_sweep" / "sweep.json").read_text())
    argv = manifest["invocations"][0]["argv"]
    assert argv[argv.index("--algos") + 1 : argv.index("--out")] == [
        "shac,pwm",
        "--envs",
        "ant",
        "--seeds",
        "0-1",
        "--preset",
        "cpu",
        "--pwm-data",
        "shared",
    ]
    assert {task: entry["status"] for task, entry in manifest["tasks"].items()} == dict.fromkeys(
        SWEPT, "complete"
    )
    for task, entry in manifest["tasks"].items():
        assert Path(entry["run_dir"]).name == Path(SWEPT[task]).name


@pytest.mark.parametrize(
    ("runs", "allowed"),
    # The sweep's own runs were made by the code of today's settings: nothing may differ, and a key added
    # since only switched off.
    [(COMMITTED, ADDED_SINCE), (SWEPT, ADDED_AFTER_THE_SWEEP)],
    ids=["by-hand", "by-the-sweep"],
)
@pytest.mark.parametrize("task_id", sorted(COMMITTED))
def test_the_sweep_task_resolves_to_the_committed_settings(task_id, runs, allowed):
    task = _plan()[task_id]
    config = json.loads((RUNS / runs[task_id] / "config.json").read_text())
    if task.command == "run":
        wanted = task_settings(task)
        assert (config["algo"], config["seed"]) == (task.algo, task.seed)
    else:
        wanted = pretrain_settings(task.preset, task.env).to_dict()
        assert config["seed"] == task.seed
    assert _differences(config["settings"], json.loads(json.dumps(wanted)), allowed=allowed) == []


def test_a_changed_setting_is_caught():
    """The comparison above is not vacuous: the committed data run is not a full-length SHAC run."""
    config = json.loads((RUNS / COMMITTED["ant-pwm_data-seed0"] / "config.json").read_text())
    wanted = json.loads(json.dumps(task_settings(_plan()["ant-shac-seed0"])))
    assert _differences(config["settings"], wanted) == [
        "('algo', 'max_epochs'): committed 150, sweep 1000",
        "('env', 'early_termination'): committed False, sweep None",
    ]
    head = pretrain_settings("cpu", "ant", termination_head=True).to_dict()
    config = json.loads((RUNS / COMMITTED["ant-pwm_pretrain-seed0"] / "config.json").read_text())
    assert _differences(config["settings"], json.loads(json.dumps(head))) == [
        "('world_model', 'termination_head'): new setting True"
    ]
    pwm = json.loads(json.dumps(task_settings(_plan()["ant-pwm-seed0"])))
    pwm["algo"]["target_critic_alpha"] = 0.995
    config = json.loads((RUNS / SWEPT["ant-pwm-seed0"] / "config.json").read_text())
    assert _differences(config["settings"], pwm, allowed=ADDED_AFTER_THE_SWEEP) == [
        "('algo', 'target_critic_alpha'): new setting 0.995"
    ]
