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

from bench import rundir
from bench.harness import resume_run, start_run
from bench.lifecycle import RunResult
from bench.presets import resolve_settings
from bench.pretrain import resume_pretrain, start_pretrain


def _existing_run(stage_root: Path) -> Path | None:
    runs = rundir.find_runs(stage_root) if stage_root.exists() else []
    return runs[-1] if runs else None


def _stage(name: str, number: int, stage_root: Path, start: Callable, resume: Callable) -> RunResult:
    """Skip a complete stage, resume an incomplete one, or start it."""
    existing = _existing_run(stage_root)
    if existing is not None:
        summary = rundir.read_summary(existing)
        if summary is not None and summary.get("status") == "complete":
            print(f"[pipeline {number}/3] {name}: complete in {existing}, skipped")
            return RunResult(existing, "complete", 0)
        print(f"[pipeline {number}/3] {name}: resuming {existing}")
        return resume(existing)
    print(f"[pipeline {number}/3] {name}")
    return start(stage_root)


def pipeline_root(out: str | Path, env: str, seed: int, preset: str, mode: str) -> Path:
    return Path(out) / env / "pwm" / f"pipeline_seed{seed}_{preset}_{mode}"


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
) -> RunResult:
    """Run (or continue) the three stages; returns the last stage's result (or the first failure)."""
    resolve_settings("pwm", env, preset, mode, overrides)  # a bad --set stops now, not after two stages
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
                overrides=["env.early_termination=false"],
                device=device,
                out=where,
                save_data=True,
                argv=argv,
            ),
            lambda run: resume_run(run, device=device, argv=argv),
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
            env, data, preset=preset, seed=seed, device=device, out=where, argv=argv
        ),
        lambda run: resume_pretrain(run, device=device, argv=argv),
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
        ),
        lambda run: resume_run(run, device=device, argv=argv),
    )
