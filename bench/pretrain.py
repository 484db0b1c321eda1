"""``python -m bench.pretrain``: pretrain a PWM world model on an episode dataset (algorithms §3.4).

Writes ``<out>/<env>/pwm_pretrain/seed<k>_<UTC time>/``:

    config.json          resolved settings, dataset (path, episodes and transitions, the subset used),
                         argv, provenance, resumes
    pretrain.csv         tidy loss curve: step, wall_time_s, metric, value (means over log_every steps)
    loss_curve.png       the loss curve, log scale
    summary.json         status, steps, final losses, wall time, non-finite gradient steps
    checkpoints/{latest,final}.pt    ``algos.wm_training.world_model_checkpoint`` (what PWM loads) plus
                         the logging counters and torch RNG state, written atomically

``rew_rms`` is fitted on every reward of the dataset, then the model takes gradient steps on uniformly
sampled sub-trajectories of a random subset of whole episodes that fits PWM's 1e6-step buffer. SIGINT /
SIGTERM stop after the current step with a checkpoint (exit 130 / 143); ``--resume RUN_DIR`` continues to
the bit on CPU, optionally with a larger ``--steps``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

import envs
from algos.dataset import EpisodeDataset, split_heldout
from algos.networks import parameter_count
from algos.pwm_diagnostics import HELDOUT_WINDOWS, heldout_errors, heldout_windows
from algos.wm_training import (
    WorldModelTrainer,
    pretrain,
    select_episodes,
    world_model_checkpoint,
)
from algos.world_model import SIZES, VARIANTS, WorldModel
from bench import cli, lifecycle, plan, plotting, rundir
from bench.inputs import read_dataset
from bench.lifecycle import RunResult
from bench.presets import PRESETS, PRETRAIN_PRESET_HELP, PretrainSettings, pretrain_settings
from bench.settings import ConfigError, jsonable

COMMAND = lifecycle.COMMANDS["pretrain"]


def _read_dataset(data: str | Path, env: str, horizon: int) -> EpisodeDataset:
    dataset = read_dataset(data)
    if dataset.num_episodes == 0:
        raise ConfigError(f"the dataset at {data} holds no episodes")
    if dataset.info["env"] != env:
        raise ConfigError(f"the dataset at {data} was recorded on {dataset.info['env']!r}, not {env!r}")
    if not (dataset.episode_length >= horizon).any():
        raise ConfigError(f"no episode in {data} has the {horizon} transitions a training window needs")
    return dataset


def _subset(dataset: EpisodeDataset, settings: PretrainSettings, seed: int) -> EpisodeDataset:
    """The episodes trained on: a function of the dataset and the seed only (identical on resume)."""
    return select_episodes(dataset, settings.max_rows, np.random.default_rng([seed, 1]))


def measure_pretraining(
    settings: PretrainSettings, dataset: EpisodeDataset, device: str, seed: int = 0, done: int = 0
) -> plan.Stage:
    """The plan's stage of a pretraining run (``done``: steps already done, for a resume): a throwaway
    model of ``settings`` (global RNGs restored afterwards) times a few gradient steps on ``dataset`` (its
    sampling included)."""
    with plan.isolated(settings.torch_threads):
        model = WorldModel(dataset.info["obs_dim"], dataset.info["act_dim"], settings.world_model).to(device)
        trainer = WorldModelTrainer(model, settings.train, seed)
        per_step = plan.seconds_per_call(
            lambda: trainer.train_step(trainer.dataset_batch(dataset)), settings.steps
        )
    return plan.Stage(
        "world-model pretraining",
        "step",
        settings.steps - done,
        per_step,
        parameters={"world_model": parameter_count(model)},
    )


class _Session:
    """One process's share of a pretraining run: model, data, counters, files."""

    def __init__(
        self,
        config: dict[str, Any],
        device: str,
        dataset: EpisodeDataset | None = None,
        clock: plan.StageClock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.settings = PretrainSettings.from_dict(config["settings"])
        if self.settings.torch_threads is not None:
            torch.set_num_threads(self.settings.torch_threads)
        horizon = self.settings.train.horizon
        self.dataset = dataset or _read_dataset(config["data"]["path"], config["env"], horizon)
        if self.dataset.num_transitions != config["data"]["dataset_transitions"]:
            raise ConfigError(f"the dataset at {config['data']['path']} changed since the run started")
        training, self.heldout = split_heldout(self.dataset, self.settings.heldout_fraction, config["seed"])
        self.subset = _subset(training, self.settings, config["seed"])
        self.heldout_windows = (
            heldout_windows(self.heldout, horizon, HELDOUT_WINDOWS, device) if self.heldout else None
        )
        torch.manual_seed(config["seed"])
        self.world_model = WorldModel(
            self.dataset.info["obs_dim"], self.dataset.info["act_dim"], self.settings.world_model
        ).to(device)
        self.run_dir = Path()
        self.state: dict[str, Any] | None = None
        self.pending: dict[str, float] = {}
        self.pending_steps = 0
        self.wall_offset_s = 0.0
        self.session_start = time.perf_counter()
        self.last_row: dict[str, float] = {}

    def data_info(self) -> dict[str, Any]:
        return {
            "path": str(Path(self.config["data"]["path"]).resolve()),
            "dataset_episodes": self.dataset.num_episodes,
            "dataset_transitions": self.dataset.num_transitions,
            "episodes": self.subset.num_episodes,
            "transitions": self.subset.num_transitions,
            "heldout_episodes": [] if self.heldout is None else [int(i) for i in self.heldout.episode_id],
        }

    def wall_time_s(self) -> float:
        return self.wall_offset_s + time.perf_counter() - self.session_start

    def save_checkpoint(self, trainer: WorldModelTrainer, final: bool = False) -> None:
        """``algos.wm_training.world_model_checkpoint`` (what PWM loads) plus logging counters and RNG."""
        state = world_model_checkpoint(trainer, self.data_info())
        state["counters"] = {
            "pending": dict(self.pending),
            "pending_steps": self.pending_steps,
            "wall_time_s": self.wall_time_s(),
            "last_row": self.last_row,
        }
        state["torch_rng"] = torch.get_rng_state()
        lifecycle.save_checkpoint(self.run_dir, state, final)

    def restore(self, state: dict[str, Any]) -> None:
        counters = state["counters"]
        self.pending, self.pending_steps = dict(counters["pending"]), counters["pending_steps"]
        self.wall_offset_s, self.last_row = counters["wall_time_s"], counters["last_row"]
        torch.set_rng_state(state["torch_rng"])
        self.state = state["trainer"]

    def log(self, trainer: WorldModelTrainer, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.pending[name] = self.pending.get(name, 0.0) + value
        self.pending_steps += 1
        if self.pending_steps == self.settings.log_every or trainer.steps == self.settings.steps:
            self.last_row = {name: total / self.pending_steps for name, total in self.pending.items()}
            if self.heldout_windows is not None:
                rho = self.settings.train.rho
                self.last_row.update(
                    heldout_errors(self.world_model, self.heldout_windows, trainer.rew_rms, rho)
                )
            step, wall = trainer.steps, self.wall_time_s()
            rows = [
                {"step": step, "wall_time_s": wall, "metric": name, "value": value}
                for name, value in self.last_row.items()
            ]
            rundir.append_rows(self.run_dir / rundir.PRETRAIN_CSV, rundir.PRETRAIN_COLUMNS, rows)
            self.pending, self.pending_steps = {}, 0

    def train(self, on_step: Callable[[int], None] | None) -> RunResult:
        settings = self.settings
        self.session_start = time.perf_counter()
        start = 0 if self.state is None else self.state["steps"]
        progress = lifecycle.Progress(settings.steps, start, "step", self.clock)
        trainer: WorldModelTrainer | None = None

        def callback(current: WorldModelTrainer, metrics: dict[str, float]) -> None:
            nonlocal trainer
            trainer = current
            self.log(current, metrics)
            progress.advance()
            progress.bar.set_postfix(loss=f"{metrics['wm_loss']:.4f}", refresh=False)
            if current.steps % settings.checkpoint_every == 0 and current.steps < settings.steps:
                self.save_checkpoint(current)
            if on_step is not None:
                on_step(current.steps)
            result.check()

        try:
            with lifecycle.outcome("step") as result:
                trainer = pretrain(
                    self.world_model,
                    self.subset,
                    settings.steps,
                    settings.train,
                    seed=self.config["seed"],
                    state=self.state,
                    callback=callback,
                )
        finally:
            progress.close()
        if trainer is None and self.state is not None:  # no step taken this session
            trainer = WorldModelTrainer(self.world_model, settings.train, self.config["seed"])
            trainer.load_state_dict(self.state)
        # A second Ctrl-C (mid-step) keeps the last periodic checkpoint.
        if trainer is not None and (result.status == "complete" or result.signalled):
            self.save_checkpoint(trainer, final=result.status == "complete")
        self.write_summary(trainer, result.status)
        plot_loss_curve(self.run_dir)
        if result.status == "interrupted":
            lifecycle.interrupted_hint(self.run_dir, COMMAND, "the last checkpoint")
        return RunResult(self.run_dir, result.status, result.exit_code)

    def write_summary(self, trainer: WorldModelTrainer | None, status: str) -> None:
        summary = {
            "status": status,
            "env": self.config["env"],
            "seed": self.config["seed"],
            "steps": trainer.steps if trainer is not None else 0,
            "max_steps": self.settings.steps,
            "final_losses": self.last_row,
            "wall_time_s": self.wall_time_s(),
            "nonfinite_wm_steps": trainer.nonfinite_grad_steps if trainer is not None else 0,
            "parameters": parameter_count(self.world_model),
            "data": self.data_info(),
        }
        rundir.write_json(self.run_dir / rundir.SUMMARY, summary)


def plot_loss_curve(run_dir: str | Path) -> Path | None:
    """Draw ``loss_curve.png`` from ``pretrain.csv`` (None if nothing is logged yet)."""
    path = Path(run_dir) / rundir.PRETRAIN_CSV
    if not path.exists() or path.stat().st_size == 0:
        return None
    table = pd.read_csv(path)
    with plotting.style():
        fig = Figure(figsize=(plotting.ONE_COLUMN_IN, 2.4))
        ax = fig.add_subplot()
        for metric, label in (
            ("wm_loss", "total"),
            ("wm_dynamics_loss", "dynamics"),
            ("wm_reward_loss", "reward"),
            ("wm_termination_loss", "termination"),
        ):
            rows = table[table["metric"] == metric]
            ax.plot(rows["step"], rows["value"].clip(lower=1e-12), label=label, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("Gradient steps")
        ax.set_ylabel("Loss (per step, / H)")
        ax.legend()
        plotting.decorate(ax)
        (saved,) = plotting.save(fig, run_dir, rundir.LOSS_FIGURE, formats=("png",))
    return saved


def print_plan(config: dict[str, Any], stage: plan.Stage, device: str) -> None:
    the_plan = plan.Plan(f"{COMMAND} --env {config['env']}", device, (stage,), config["preset"])
    print(the_plan.format(), flush=True)


def start_pretrain(
    env: str,
    data: str | Path,
    *,
    preset: str = "paper",
    steps: int | None = None,
    size: str | None = None,
    variant: str | None = None,
    reward_bins: int | None = None,
    termination_head: bool = False,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path = "runs",
    argv: list[str] | None = None,
    on_step: Callable[[int], None] | None = None,
    dry_run: bool = False,
    clock: plan.StageClock | None = None,
) -> RunResult:
    """Validate everything (ConfigError before any file is written), print the plan, create the run
    directory, train.

    ``dry_run``: print the plan and return (status "planned", no run directory). ``clock``: a pipeline
    stage (the pipeline printed the plan). ``on_step(step)`` runs after every gradient step (tests use it
    to interrupt).
    """
    lifecycle.check_new_run(seed, out)
    if env not in envs.names():
        raise ConfigError(f"unknown env {env!r}; valid: {', '.join(envs.names())}")
    settings = pretrain_settings(preset, env, steps, size, variant, reward_bins, termination_head)
    dataset = _read_dataset(data, env, settings.train.horizon)
    if settings.world_model.termination_head and dataset.would_terminate is None:
        print(
            f"note: the dataset at {data} records no would_terminate flags (written before they existed); "
            "the world model gets no termination head (offline PWM will not end imagined returns)",
            file=sys.stderr,
        )
        settings = replace(settings, world_model=replace(settings.world_model, termination_head=False))
    config: dict[str, Any] = {
        "algo": rundir.PRETRAIN_ALGO,
        "env": env,
        "seed": seed,
        "preset": preset,
        "device": device,
        "data": {"path": str(Path(data).resolve())},
        "settings": jsonable(settings.to_dict()),
    }
    config["data"]["dataset_transitions"] = dataset.num_transitions
    if clock is None:
        print_plan(config, measure_pretraining(settings, dataset, device, seed), device)
    if dry_run:
        return RunResult(None, "planned", 0)
    session = _Session(config, device, dataset, clock)
    config.update(data=session.data_info(), parameters=parameter_count(session.world_model))
    session.run_dir = lifecycle.create_run(out, config, rundir.PRETRAIN_ALGO, device, argv)
    return session.train(on_step)


def resume_pretrain(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    device: str | None = None,
    argv: list[str] | None = None,
    on_step: Callable[[int], None] | None = None,
    dry_run: bool = False,
    clock: plan.StageClock | None = None,
) -> RunResult:
    """Continue ``run_dir`` from ``checkpoints/latest.pt`` (``steps``: a new, larger total; ``dry_run``:
    print the plan of what is left and return; ``clock``: a pipeline stage).

    Every input (config, summary, checkpoint, loss curve, dataset) is read before any file is rewritten.
    """
    run_dir = Path(run_dir)
    config, summary = lifecycle.open_for_resume(run_dir, COMMAND)
    state = lifecycle.read_checkpoint(run_dir)
    done = state["trainer"]["steps"]
    if steps is not None:
        if steps < done:
            raise ConfigError(f"--steps {steps} is below the {done} steps already done")
        config["settings"]["steps"] = steps
    if summary is not None and summary.get("status") == "complete" and done >= config["settings"]["steps"]:
        print(f"{run_dir} is already complete")
        return RunResult(run_dir, "complete", 0)
    device = device or config["device"]
    curve = rundir.read_rows(run_dir / rundir.PRETRAIN_CSV, "step", done)
    session = _Session(config, device, clock=clock)
    if clock is None:
        stage = measure_pretraining(session.settings, session.dataset, device, config["seed"], done)
        print_plan(config, stage, device)
    if dry_run:
        return RunResult(None, "planned", 0)
    session.run_dir = run_dir
    session.restore(state)
    curve.write()
    (run_dir / rundir.SUMMARY).unlink(missing_ok=True)
    lifecycle.record_resume(run_dir, config, device, argv, from_step=done, steps=config["settings"]["steps"])
    print(f"resuming {run_dir} at step {done}")
    return session.train(on_step)


@dataclass
class PretrainOptions(cli.Options):
    env: str | None = None
    """Env the data was recorded on (required unless --resume)."""
    data: str | None = field(default=None, metadata=cli.option(metavar="DATA_DIR"))
    """Episode dataset directory (required unless --resume)."""
    steps: int | None = None
    """Total gradient steps (default: the preset's)."""
    preset: str | None = None
    """Settings preset (default: paper; see below)."""
    size: str | None = None
    """World-model size (default: the preset's)."""
    variant: str | None = None
    """World-model variant (default simnorm)."""
    reward_bins: int | None = None
    """0: scalar reward (default); >= 2: two-hot bins."""
    termination_head: bool = False
    """Also train a termination head on the dataset's would_terminate flags (our extension beyond the
    reference, used by offline PWM; default off, as in the reference)."""
    seed: int | None = None
    """Seed of initialisation, episode subset and sampling (default 0)."""
    device: str | None = None
    """torch device (default cpu; resume: as recorded)."""
    out: str | None = None
    """Root directory for new runs (default: runs)."""
    resume: str | None = field(default=None, metadata=cli.option(metavar="RUN_DIR"))
    """Continue RUN_DIR (only --steps, --device and --dry-run may be given)."""
    dry_run: bool = False
    """Print the plan (stages, steps, model size, device, estimated time from a short measured warm-up)
    and exit without creating a run directory."""


def build_parser(env_names: list[str]) -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:6s} {PRETRAIN_PRESET_HELP[name]}" for name in PRESETS)
    choices = {"env": env_names, "preset": PRESETS, "size": list(SIZES), "variant": VARIANTS}
    return cli.build_parser(
        PretrainOptions,
        choices,
        prog=f"python -m {COMMAND}",
        description="Pretrain a PWM world model on an episode dataset (from bench.run --save-data or "
        "bench.collect); "
        f"writes <out>/<env>/{rundir.PRETRAIN_ALGO}/seed<k>_<UTC time>/.",
        epilog=f"presets:\n{presets}\n\nexamples:\n"
        "  python -m bench.pretrain --env ant --data runs/ant/shac/seed0_20250101T000000Z/data\n"
        f"  python -m bench.pretrain --resume runs/ant/{rundir.PRETRAIN_ALGO}/seed0_20250101T000000Z "
        "--steps 200000\n\n"
        "exit codes: 0 complete, 1 failed, 2 invalid arguments, 130 Ctrl-C, 143 SIGTERM (both checkpoint "
        "first)",
    )


def _command(args: PretrainOptions, argv: list[str]) -> int:
    if args.resume:
        fixed = (
            "env",
            "data",
            "preset",
            "size",
            "variant",
            "reward_bins",
            "termination_head",
            "seed",
            "out",
        )
        if cli.given(args, fixed):
            raise ConfigError(
                "--resume takes its settings from the run directory; only --steps, --device and --dry-run"
            )
        return resume_pretrain(
            args.resume, steps=args.steps, device=args.device, argv=argv, dry_run=args.dry_run
        ).exit_code
    if args.env is None or args.data is None:
        raise ConfigError("--env and --data are required (or --resume RUN_DIR)")
    return start_pretrain(
        args.env,
        args.data,
        preset=args.preset or "paper",
        steps=args.steps,
        size=args.size,
        variant=args.variant,
        reward_bins=args.reward_bins,
        termination_head=args.termination_head,
        seed=0 if args.seed is None else args.seed,
        device=args.device or "cpu",
        out=args.out or "runs",
        argv=argv,
        dry_run=args.dry_run,
    ).exit_code


def main(argv: list[str] | None = None) -> int:
    return cli.main(PretrainOptions, build_parser(envs.names()), argv, _command)


if __name__ == "__main__":
    sys.exit(main())
