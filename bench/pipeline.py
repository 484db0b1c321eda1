"""The whole PWM pipeline behind ``bench.run --algo pwm`` when no world model is given.

Three stages, each an ordinary run directory under one pipeline root, so an interrupted pipeline resumes
where it stopped when the same command is run again (complete stages are skipped, an incomplete one is
resumed from its last checkpoint):

1. ``data/``: SHAC with ``--save-data`` and early termination off (how the reference recorded its data),
   or an existing dataset given with ``--data``;
2. ``pretrain/``: world-model pretraining on that data (``bench.pretrain``);
3. ``policy/``: PWM policy learning from the pretrained model (``bench.run --algo pwm``).

Layout: ``<out>/<env>/pwm/pipeline_seed<k>_<preset>_<mode>/{data,pretrain,policy}/...``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from algos.wm_training import PretrainedWorldModel, WorldModelTrainer
from algos.world_model import WorldModel
from bench import plan, rundir
from bench.algorithms import RunInputs
from bench.harness import make_env, measure_training, resolve_run, resume_run, start_run
from bench.inputs import read_dataset
from bench.lifecycle import RunResult
from bench.presets import pretrain_settings, pwm_data_overrides, resolve_settings
from bench.pretrain import measure_pretraining, resume_pretrain, start_pretrain

STAGES = ("data", "pretrain", "policy")
SYNTHETIC_EPISODES = 8
"""Episodes of the random stand-in dataset the plan times stages 2 and 3 on before the data exists."""


def _existing_run(stage_root: Path) -> Path | None:
    runs = rundir.find_runs(stage_root) if stage_root.exists() else []
    return runs[-1] if runs else None


def _complete(stage_root: Path) -> bool:
    existing = _existing_run(stage_root)
    summary = rundir.read_summary(existing) if existing is not None else None
    return summary is not None and summary.get("status") == "complete"


def _stage(name: str, number: int, stage_root: Path, start: Callable, resume: Callable) -> RunResult:
    """Skip a complete stage, resume an incomplete one, or start it."""
    existing = _existing_run(stage_root)
    if existing is not None:
        if _complete(stage_root):
            print(f"[pipeline {number}/3] {name}: complete in {existing}, skipped")
            return RunResult(existing, "complete", 0)
        print(f"[pipeline {number}/3] {name}: resuming {existing}")
        return resume(existing)
    print(f"[pipeline {number}/3] {name}")
    return start(stage_root)


def pipeline_root(out: str | Path, env: str, seed: int, preset: str, mode: str) -> Path:
    return Path(out) / env / "pwm" / f"pipeline_seed{seed}_{preset}_{mode}"


def plan_pipeline(
    env: str,
    *,
    seed: int,
    preset: str,
    mode: str,
    overrides: list[str],
    device: str,
    out: str | Path,
    data: str | Path | None = None,
) -> plan.Plan:
    """The pipeline's plan: each stage still to run, timed by a short warm-up of its own work on this
    device. Before the data and the world model exist, stages 2 and 3 are timed on a random dataset of the
    env's shapes and a fresh model of the pretraining architecture (step times do not depend on values)."""
    root = pipeline_root(out, env, seed, preset, mode)
    done = {name: _complete(root / name) for name in STAGES}
    data_overrides = pwm_data_overrides(preset)
    data_config = resolve_run(
        "shac", env, RunInputs(), seed=seed, preset=preset, overrides=data_overrides, device=device
    )
    stages = []
    if data is not None:
        stages.append(plan.Stage(f"data: {data} (given)", "iteration", 0, 0.0, skipped=True))
    elif done["data"]:
        stages.append(plan.Stage("data collection with SHAC", "iteration", 0, 0.0, skipped=True))
    else:
        stages.append(measure_training(data_config, device, RunInputs(), "data collection with SHAC"))
    settings = pretrain_settings(preset, env)
    if data is not None:
        dataset = read_dataset(data)
    else:
        probe = make_env(data_config, 1, seed, device)
        dataset = plan.synthetic_dataset(
            probe.obs_dim, probe.act_dim, SYNTHETIC_EPISODES, probe.max_episode_steps, seed
        )
    if done["pretrain"]:
        stages.append(plan.Stage("world-model pretraining", "step", 0, 0.0, skipped=True))
    else:
        stages.append(measure_pretraining(settings, dataset, device, seed))
    if done["policy"]:
        stages.append(plan.Stage("policy learning", "iteration", 0, 0.0, skipped=True))
    else:
        with plan.isolated(settings.torch_threads):
            model = WorldModel(dataset.info["obs_dim"], dataset.info["act_dim"], settings.world_model)
            fresh = PretrainedWorldModel.from_trainer(WorldModelTrainer(model.to(device), settings.train))
        inputs = RunInputs(world_model=fresh, dataset=dataset)
        policy_config = resolve_run(
            "pwm", env, inputs, seed=seed, preset=preset, variant=mode, overrides=overrides, device=device
        )
        stages.append(measure_training(policy_config, device, inputs, f"policy learning ({mode})"))
    command = f"bench.run --algo pwm --env {env} (pipeline, {mode})"
    return plan.Plan(command, device, tuple(stages), preset)


def run_pipeline(
    env: str,
    *,
    seed: int,
    preset: str,
    mode: str,
    overrides: list[str],
    device: str,
    out: str | Path,
    data: str | Path | None = None,
    argv: list[str] | None = None,
    dry_run: bool = False,
) -> RunResult:
    """Print the plan, then run (or continue) the three stages; returns the last stage's result (or the
    first failure). ``dry_run``: print the plan and return (status "planned", nothing written)."""
    resolve_settings("pwm", env, preset, mode, overrides)  # a bad --set stops now, not after two stages
    the_plan = plan_pipeline(
        env, seed=seed, preset=preset, mode=mode, overrides=overrides, device=device, out=out, data=data
    )
    print(the_plan.format(), flush=True)
    if dry_run:
        return RunResult(None, "planned", 0)
    clocks = [plan.StageClock(the_plan, number) for number in (1, 2, 3)]
    root = pipeline_root(out, env, seed, preset, mode)
    if data is None:
        result = _stage(
            "collecting data with SHAC (early termination off)",
            1,
            root / "data",
            lambda where: start_run(
                "shac",
                env,
                seed=seed,
                preset=preset,
                overrides=pwm_data_overrides(preset),
                device=device,
                out=where,
                save_data=True,
                argv=argv,
                clock=clocks[0],
            ),
            lambda run: resume_run(run, device=device, argv=argv, clock=clocks[0]),
        )
        if result.exit_code != 0:
            return result
        data = (result.run_dir / rundir.DATA).resolve()
    else:
        print(f"[pipeline 1/3] data: using {data}")
    pretrained = _stage(
        "pretraining the world model",
        2,
        root / "pretrain",
        lambda where: start_pretrain(
            env, data, preset=preset, seed=seed, device=device, out=where, argv=argv, clock=clocks[1]
        ),
        lambda run: resume_pretrain(run, device=device, argv=argv, clock=clocks[1]),
    )
    if pretrained.exit_code != 0:
        return pretrained
    return _stage(
        "learning the policy through the world model",
        3,
        root / "policy",
        lambda where: start_run(
            "pwm",
            env,
            seed=seed,
            preset=preset,
            variant=mode,
            overrides=overrides,
            device=device,
            out=where,
            world_model=rundir.checkpoint(pretrained.run_dir, rundir.FINAL),
            data=data,
            argv=argv,
            clock=clocks[2],
        ),
        lambda run: resume_run(run, device=device, argv=argv, clock=clocks[2]),
    )
