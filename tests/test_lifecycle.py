"""The shared run lifecycle and command line: resume safety, one --set grammar, options from dataclasses,
one-line errors, per-term reward logging."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch

import envs
from algos.shac import SHAC
from bench import cli, collect, pretrain, rundir
from bench.harness import resume_run, start_run
from bench.presets import PRESETS, VARIANTS, pretrain_settings, published_config, resolve_settings
from bench.run import RunOptions
from bench.run import main as run_main
from bench.settings import ConfigError, apply_overrides
from tests.helpers import assert_same_run, interrupt_at
from tests.toy_envs import make_toy_env, register_toy_env

TOY = register_toy_env()
SETTINGS = ["algo.max_epochs=6", "run.eval_interval=0.25"]


def interrupted_run(out: Path) -> Path:
    return start_run(
        "shac", TOY, preset="smoke", overrides=SETTINGS, out=out, on_iteration=interrupt_at(3)
    ).run_dir


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path: Path, capsys) -> None:
    straight = start_run("shac", TOY, preset="smoke", overrides=SETTINGS, out=tmp_path / "a").run_dir
    run_dir = interrupted_run(tmp_path / "b")
    latest = rundir.checkpoint(run_dir)
    assert rundir.checkpoint(run_dir, rundir.PREVIOUS).exists()
    mode = stat.S_IMODE((run_dir / rundir.TRAIN).stat().st_mode)
    latest.write_bytes(latest.read_bytes()[:100])  # truncated
    assert run_main(["--resume", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "previous.pt" in captured.err and "at iteration 2" in captured.out  # latest.pt held iteration 3
    # Continuing from the previous checkpoint still reproduces the uninterrupted run.
    assert_same_run(straight, run_dir)
    text = (run_dir / rundir.TRAIN).read_bytes()
    assert b"\r" not in text and stat.S_IMODE((run_dir / rundir.TRAIN).stat().st_mode) == mode


def test_resume_validates_every_input_before_rewriting_any(tmp_path: Path, capsys) -> None:
    run_dir = interrupted_run(tmp_path)
    train = (run_dir / rundir.TRAIN).read_bytes()
    (run_dir / rundir.EVAL).write_text('env_steps,return_mean\n0,"unclosed\n')
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--resume", str(run_dir)])
    assert exit_info.value.code == 2 and "eval.csv" in capsys.readouterr().err
    assert (run_dir / rundir.TRAIN).read_bytes() == train  # untouched
    (run_dir / rundir.SUMMARY).write_text("")
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--resume", str(run_dir)])
    assert exit_info.value.code == 2 and "summary.json is unreadable" in capsys.readouterr().err
    (run_dir / rundir.CONFIG).write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--resume", str(run_dir)])
    assert exit_info.value.code == 2 and "config.json is unreadable" in capsys.readouterr().err


def test_each_command_names_the_one_that_resumes_a_directory(tmp_path: Path, capsys) -> None:
    pretrain_dir = tmp_path / "ant" / rundir.PRETRAIN_ALGO / "seed0_x"
    pretrain_dir.mkdir(parents=True)
    rundir.write_json(pretrain_dir / rundir.CONFIG, {"algo": rundir.PRETRAIN_ALGO, "settings": {}})
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--resume", str(pretrain_dir)])
    assert exit_info.value.code == 2
    assert f"python -m bench.pretrain --resume {pretrain_dir}" in capsys.readouterr().err
    run_dir = interrupted_run(tmp_path / "runs")
    with pytest.raises(SystemExit):
        pretrain.main(["--resume", str(run_dir)])
    assert f"python -m bench.run --resume {run_dir}" in capsys.readouterr().err


def test_one_set_grammar_for_every_command() -> None:
    settings = resolve_settings("pwm", "ant", "smoke")
    changed = apply_overrides(
        settings,
        ["env.early_termination=False", "algo.world_model.latent_dim=64", "algo.model_training.lr=1e-3"],
        "ant",
    )
    assert changed["env"]["early_termination"] is False  # the word, any case: a bool, not a truthy string
    assert (
        changed["algo"]["world_model"]["latent_dim"] == 64 and changed["algo"]["model_training"]["lr"] == 1e-3
    )
    with pytest.raises(ConfigError, match="algo.world_model.latent_dim"):
        apply_overrides(settings, ["algo.world_model.latent=64"], "ant")
    with pytest.raises(ConfigError, match="expects a value like"):
        apply_overrides(settings, ["algo.world_model.latent_dim=big"], "ant")
    # bench.collect's settings have one section, which may be left out.
    assert apply_overrides({"env": {}}, ["episode_length=5", "env.early_termination=false"], "ant") == {
        "env": {"episode_length": 5, "early_termination": False}
    }


def test_env_settings_are_typed_by_the_envs_own_table() -> None:
    """``--set env.<key>`` goes through ``envs.parse_override``: the table ``envs.make`` checks against."""
    changed = resolve_settings("shac", "ant", "smoke", overrides=["env.contact_ke=2e4", "env.substeps=null"])
    assert changed["env"]["contact_ke"] == 2e4 and changed["env"]["substeps"] is None
    for bad, message in [
        ("env.contact_ke=-1", "contact_ke must be a number >= 0"),
        ("env.early_termination=no", "early_termination must be a bool"),
        ("env.episode_length=2.5", "episode_length must be an int"),
        ("env.nonsense=1", "valid keys: num_envs, seed, device, episode_length, early_termination"),
        ("env.seed=3", "set by --seed"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_settings("shac", "ant", "smoke", overrides=[bad])


def test_set_env_early_termination_false_runs_with_it_off(tmp_path: Path, monkeypatch) -> None:
    """The string "False" used to be truthy: the env of a real run must have early termination off."""
    made = []

    def make(*args, **kwargs):
        env = real_make(*args, **kwargs)
        made.append(env.cfg.early_termination)
        return env

    real_make = envs.make
    monkeypatch.setattr(envs, "make", make)
    argv = ["--algo", "shac", "--env", "ant", "--preset", "smoke", "--out", str(tmp_path)]
    assert run_main([*argv, "--set", "env.early_termination=False"]) == 0
    (run_dir,) = rundir.find_runs(tmp_path)
    assert rundir.read_json(run_dir / rundir.CONFIG)["settings"]["env"]["early_termination"] is False
    assert made and made == [False] * len(made)  # training and evaluation envs


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (run_main, ["--algo", "shac", "--env", "ant", "--out", "{out}"]),
        (run_main, ["--algo", "pwm", "--env", "ant", "--preset", "smoke", "--out", "{out}"]),  # the pipeline
        (collect.main, ["--env", "ant", "--episodes", "1", "--random", "--out", "{out}/data"]),
    ],
    ids=["run", "pwm-pipeline", "collect"],
)
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("env.contact_ke=-1", "--set env.contact_ke=-1: contact_ke must be a number >= 0 or null, got -1"),
        ("env.nonsense=1", "--set env.nonsense=1: unknown override 'nonsense' for env 'ant'; valid keys: "),
    ],
)
def test_bad_env_setting_exits_2_with_one_line(
    command, argv, setting, message, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        command([*(a.format(out=tmp_path) for a in argv), "--set", setting])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0] and err.endswith(errors[0] + "\n")
    assert "Traceback" not in err and not any(tmp_path.iterdir())  # rejected before anything is written


def test_collect_takes_the_same_set_grammar(tmp_path: Path) -> None:
    argv = ["--env", TOY, "--episodes", "3", "--random", "--num-envs", "2", "--out", str(tmp_path / "d")]
    assert collect.main([*argv, "--set", "env.episode_length=5"]) == 0
    info = rundir.read_json(tmp_path / "d" / rundir.COLLECT_INFO)
    assert info["env_overrides"] == {"episode_length": 5} and info["transitions"] == 15


@pytest.mark.parametrize("options", [RunOptions, pretrain.PretrainOptions, collect.CollectOptions])
def test_every_option_is_documented_by_its_field_docstring(options: type, capsys) -> None:
    docs = cli.field_docs(options)
    assert {f.name for f in dataclasses.fields(options)} == set(docs) and all(docs.values())
    parser = cli.build_parser(options, prog="x")
    help_text = " ".join(parser.format_help().split())
    for name, doc in docs.items():
        assert doc.split(". ")[0].rstrip(".") in help_text, name


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch) -> None:
    def body(options: cli.Options, argv: list[str]) -> int:
        raise RuntimeError("the disk is full")

    parser = cli.build_parser(cli.Options, prog="python -m bench.x")
    assert cli.main(cli.Options, parser, [], body) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: the disk is full" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(cli.Options, parser, ["--debug"], body)
    monkeypatch.setenv("WARPBENCH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(cli.Options, parser, [], body)


def test_reward_terms_are_logged_per_iteration(tmp_path: Path) -> None:
    config, _ = published_config("shac", "pwm", TOY)
    config = dataclasses.replace(
        config, horizon=4, actor_hidden=(8,), critic_hidden=(8,), critic_iterations=1
    )
    shac = SHAC(make_toy_env(num_envs=3, seed=0), config, seed=0)
    metrics = shac.train_iteration()
    terms = [metrics[f"reward/{name}"] for name in ("forward", "action", "lateral")]
    assert sum(terms) == pytest.approx(metrics["reward_mean"], rel=1e-5)
    assert metrics["reward/action"] < 0 and metrics["reward/lateral"] <= 0

    result = start_run("shac", TOY, preset="smoke", out=tmp_path)
    train = pd.read_csv(result.run_dir / rundir.TRAIN)
    forward = train[train["metric"] == "reward/forward"]
    assert forward["step"].tolist() == [1, 2, 3, 4] and forward["value"].notna().all()


def test_resume_of_a_complete_run_does_nothing(tmp_path: Path) -> None:
    result = start_run("shac", TOY, preset="smoke", out=tmp_path)
    before = (result.run_dir / rundir.TRAIN).read_bytes()
    assert resume_run(result.run_dir).status == "complete"
    assert (result.run_dir / rundir.TRAIN).read_bytes() == before
    assert torch.load(rundir.checkpoint(result.run_dir, rundir.FINAL), weights_only=False)["iteration"] == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--seed", "-1"], "--seed must be in"), (["--seed", str(2**32)], "--seed must be in")],
)
def test_bad_seed_or_out_is_a_usage_error(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--algo", "shac", "--env", TOY, "--preset", "smoke", "--out", str(tmp_path), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(SystemExit) as exit_info:
            run_main(["--algo", "shac", "--env", TOY, "--preset", "smoke", "--out", str(out)])
        assert exit_info.value.code == 2 and "is a file" in capsys.readouterr().err


def test_pretrain_on_a_damaged_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert (
        collect.main(["--env", TOY, "--episodes", "4", "--random", "--num-envs", "2", "--out", str(data)])
        == 0
    )
    chunk = next(data.glob("chunk_*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:200])  # truncated
    argv = ["--env", TOY, "--data", str(data), "--preset", "smoke", "--out", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(argv)
    assert exit_info.value.code == 2 and "cannot read the episode dataset" in capsys.readouterr().err
    (data / "dataset.json").write_text("garbage")
    with pytest.raises(SystemExit):
        pretrain.main(argv)
    assert "cannot read the episode dataset" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_every_preset_fixes_the_thread_count() -> None:
    for algo, variants in VARIANTS.items():
        for variant in variants:
            for preset in PRESETS:
                threads = resolve_settings(algo, "ant", preset, variant)["run"]["torch_threads"]
                assert threads == 1, (algo, variant, preset)
    assert all(pretrain_settings(preset, "ant").torch_threads == 1 for preset in PRESETS)
