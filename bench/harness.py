"""The training harness behind ``python -m bench.run``: runs that are reproducible, resumable and honest.

A run trains one algorithm on one env for the budget of its settings and writes a run directory
(``bench.rundir``; evaluation spec §8). Library entry points, called by the CLI and by tests:

- :func:`start_run`: resolve settings, build envs and trainer, create the run directory, train.
- :func:`resume_run`: continue a run directory from ``checkpoints/latest.pt``.

Protocol (evaluation spec §1): deterministic evaluation of the current policy on a separate env batch with
its own seed stream, at the start, every ``run.eval_interval`` of the env-step budget and at the end; K envs,
each run until its first episode ends. Training time excludes evaluation time.

Robustness: a checkpoint (trainer, eval env, global RNGs, dataset writer) is written at every evaluation
point and is exactly an iteration boundary, so resuming reproduces an uninterrupted run bit for bit on CPU.
SIGINT/SIGTERM stop at the next iteration boundary, checkpoint, and exit 130/143 (a second Ctrl-C aborts
at once, keeping the last checkpoint). A trainer's FloatingPointError (persistent nan/inf gradients) ends the
run with status "failed", keeping the last good checkpoint. These lifecycle pieces are shared with
``bench.pretrain`` (``bench.lifecycle``); settings come from ``bench.presets``, trainers from the registry
``bench.algorithms``, their input files through ``bench.inputs``.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from algos.dataset import DatasetWriter, EpisodeRecorder
from algos.wm_training import world_model_checkpoint
from bench import lifecycle, plan, rundir
from bench.algorithms import ALGORITHMS, RunInputs, Trainer, build_trainer
from bench.inputs import load_inputs
from bench.lifecycle import RunResult
from bench.presets import default_variant, env_overrides, resolve_settings, run_config
from bench.settings import ConfigError

COMMAND = lifecycle.COMMANDS["run"]
CHECKPOINT_VERSION = 1
ENV_STREAM, EVAL_STREAM, TRAINER_STREAM = 0, 1, 2
WARMUP_STREAM, VIDEO_STREAM = 3, 4
"""Seed streams of the plan's throwaway warm-up and of ``--video`` recordings: apart from the run's."""
STREAMS = {"train_env": ENV_STREAM, "eval_env": EVAL_STREAM, "trainer": TRAINER_STREAM}
BEST_LABEL = "best-over-training: max over evaluation points of return_mean (optimistic, not the score)"


def stream_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for one random stream of a run (training env, eval env, trainer)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    env_steps: int
    """Env steps the evaluation consumed (all K envs, until the last first episode ended)."""


@torch.no_grad()
def evaluate(env: Any, policy: Callable[[torch.Tensor], torch.Tensor]) -> EvalResult:
    """Reset ``env`` and run ``policy`` until every env has finished its first episode (undiscounted)."""
    obs = env.reset()
    returns = torch.zeros(env.num_envs, dtype=torch.float64, device=env.device)
    lengths = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    terminated_first = torch.zeros_like(finished)
    steps = 0
    while steps < env.max_episode_steps and not bool(finished.all()):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        steps += 1
        active = ~finished
        returns += torch.where(active, reward.double(), 0.0)
        lengths += active.long()
        terminated_first |= active & terminated
        finished |= terminated | truncated
    return EvalResult(
        returns=returns.cpu().numpy(),
        lengths=lengths.cpu().numpy(),
        terminated=terminated_first.cpu().numpy(),
        env_steps=steps * env.num_envs,
    )


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: drop int(0.25 n) values at each end of the sorted sample, average the rest."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(0.25 * len(ordered))
    return float(ordered[cut : len(ordered) - cut].mean())


def make_env(config: dict[str, Any], num_envs: int, seed: int, device: str) -> Any:
    try:
        return envs.make(
            config["env"], num_envs=num_envs, device=device, seed=seed, **env_overrides(config["settings"])
        )
    except (ValueError, TypeError) as error:
        raise ConfigError(f"cannot make env {config['env']!r}: {error}") from error


class _Session:
    """One process's share of a run: envs, trainer, counters and the files it appends to."""

    def __init__(
        self, config: dict[str, Any], device: str, inputs: RunInputs, clock: plan.StageClock | None = None
    ) -> None:
        self.config = config
        self.device = device
        self.clock = clock
        self.video = bool(config.get("video", False))
        settings = config["settings"]
        seed = config["seed"]
        self.run = run_config(settings)
        if self.run.torch_threads is not None:
            torch.set_num_threads(self.run.torch_threads)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.env = make_env(config, settings["env"]["num_envs"], stream_seed(seed, ENV_STREAM), device)
        self.eval_env = make_env(config, self.run.eval_episodes, stream_seed(seed, EVAL_STREAM), device)
        self.trainer: Trainer = build_trainer(
            config["algo"], self.env, settings["algo"], stream_seed(seed, TRAINER_STREAM), inputs
        )
        self.recorder = EpisodeRecorder(self.env.num_envs) if config["save_data"] else None
        self.trainer.recorder = self.recorder
        self.writer: DatasetWriter | None = None
        self.run_dir = Path()

        self.budget_env_steps = self.trainer.max_iterations * self.trainer.env_steps_per_iteration
        # Evaluation points every eval_interval of the iterations (= of the env-step budget when each
        # iteration consumes the same env steps; offline PWM consumes none).
        self.eval_every = max(1, round(self.run.eval_interval * self.trainer.max_iterations))
        self.train_time_s = 0.0
        self.eval_time_s = 0.0
        self.eval_env_steps = 0
        self.wall_offset_s = 0.0
        self.session_start = time.perf_counter()
        self.session_start_iteration = 0
        self.checkpoint_iteration: int | None = None
        self.best: dict[str, float] | None = None
        self.last_eval: dict[str, float] | None = None

    def env_info(self) -> dict[str, Any]:
        return {
            "obs_dim": self.env.obs_dim,
            "act_dim": self.env.act_dim,
            "max_episode_steps": self.env.max_episode_steps,
            "num_envs": self.env.num_envs,
            "eval_num_envs": self.eval_env.num_envs,
        }

    def open(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        if self.recorder is not None:
            self.writer = DatasetWriter(
                run_dir / rundir.DATA,
                env=self.config["env"],
                obs_dim=self.env.obs_dim,
                act_dim=self.env.act_dim,
                metadata={key: self.config[key] for key in ("algo", "variant", "seed", "settings")},
            )

    @property
    def data_env_steps(self) -> int:
        """Env steps that generated the trainer's offline data (PWM), reported apart from training."""
        return int(getattr(self.trainer, "data_env_steps", 0))

    @property
    def env_steps(self) -> int:
        return self.trainer.iteration * self.trainer.env_steps_per_iteration

    def wall_time_s(self) -> float:
        return self.wall_offset_s + time.perf_counter() - self.session_start

    # -- checkpoints ------------------------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "iteration": self.trainer.iteration,
            "env_steps": self.env_steps,
            "trainer": self.trainer.state_dict(),
            "eval_env": self.eval_env.state_dict(),
            "recorder": self.recorder.state_dict() if self.recorder is not None else None,
            "dataset": self.writer.state_dict() if self.writer is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "counters": {
                "train_time_s": self.train_time_s,
                "eval_time_s": self.eval_time_s,
                "eval_env_steps": self.eval_env_steps,
                "wall_time_s": self.wall_time_s(),
                "best": self.best,
                "last_eval": self.last_eval,
            },
        }

    def save_checkpoint(self, final: bool = False) -> None:
        """``latest.pt`` (and ``final.pt``) with everything :meth:`restore` needs; for a trainer that
        exports its world model, ``world_model.pt`` too (trained on this run's env steps)."""
        lifecycle.save_checkpoint(self.run_dir, self.checkpoint_state(), final)
        export = getattr(self.trainer, "export_world_model", None)
        if export is not None:
            data = {"path": str(self.run_dir.resolve()), "dataset_transitions": self.env_steps}
            buffer = io.BytesIO()
            torch.save(world_model_checkpoint(export(), data), buffer)
            rundir.atomic_write_bytes(rundir.checkpoint(self.run_dir, rundir.WORLD_MODEL), buffer.getvalue())
        self.checkpoint_iteration = self.trainer.iteration

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"checkpoint version {state.get('version')} is not {CHECKPOINT_VERSION}")
        self.trainer.load_state_dict(state["trainer"])
        self.eval_env.load_state_dict(state["eval_env"])
        if self.recorder is not None:
            self.recorder.load_state_dict(state["recorder"])
        if self.writer is not None:
            self.writer.load_state_dict(state["dataset"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        counters = state["counters"]
        self.train_time_s = counters["train_time_s"]
        self.eval_time_s = counters["eval_time_s"]
        self.eval_env_steps = counters["eval_env_steps"]
        self.wall_offset_s = counters["wall_time_s"]
        self.best = counters["best"]
        self.last_eval = counters["last_eval"]
        self.session_start = time.perf_counter()
        self.session_start_iteration = self.trainer.iteration
        self.checkpoint_iteration = self.trainer.iteration

    # -- logging ----------------------------------------------------------------------------------------

    def log_iteration(self, metrics: dict[str, float], seconds: float) -> None:
        metrics = {**metrics, "fps": self.trainer.env_steps_per_iteration / max(seconds, 1e-9)}
        step, env_steps, wall = self.trainer.iteration, self.env_steps, self.wall_time_s()
        rows = [
            {"step": step, "env_steps": env_steps, "wall_time_s": wall, "metric": name, "value": value}
            for name, value in metrics.items()
        ]
        rundir.append_rows(self.run_dir / rundir.TRAIN, rundir.TRAIN_COLUMNS, rows)

    def evaluate(self) -> str:
        """Evaluate, append eval.csv / eval_episodes.csv, return the console line."""
        start = time.perf_counter()
        result = evaluate(self.eval_env, lambda obs: self.trainer.act(obs, deterministic=True))
        self.eval_time_s += time.perf_counter() - start
        self.eval_env_steps += result.env_steps
        env_steps = self.env_steps
        returns = result.returns
        row = {
            "env_steps": env_steps,
            "data_env_steps": self.data_env_steps,
            "wall_time_s": self.wall_time_s(),
            "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
            "eval_episodes": len(returns),
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std(ddof=1)) if len(returns) > 1 else 0.0,
            "return_iqm": iqm(returns),
            "length_mean": float(result.lengths.mean()),
            "iteration": self.trainer.iteration,
        }
        rundir.append_rows(self.run_dir / rundir.EVAL, rundir.EVAL_COLUMNS, [row])
        episodes = [
            {
                "env_steps": env_steps,
                "episode": i,
                "return": float(r),
                "length": int(n),
                "terminated": bool(t),
            }
            for i, (r, n, t) in enumerate(zip(returns, result.lengths, result.terminated, strict=True))
        ]
        rundir.append_rows(self.run_dir / rundir.EVAL_EPISODES, rundir.EPISODE_COLUMNS, episodes)
        if self.video:
            self.record_video(env_steps)
        self.last_eval = {k: row[k] for k in ("env_steps", "return_mean", "return_std", "return_iqm")}
        if self.best is None or row["return_mean"] > self.best["return_mean"]:
            self.best = {"env_steps": env_steps, "return_mean": row["return_mean"]}
        return self.progress_line(row)

    def record_video(self, env_steps: int) -> None:
        """One deterministic episode into ``RUN_DIR/videos/`` (``--video``): its own env, on its own seed
        stream (the same start at every evaluation point), so the run's random streams are untouched."""
        from bench.video import evaluation_video  # the renderer and encoder load only for --video runs

        evaluation_video(
            self.run_dir,
            self.config,
            lambda obs: self.trainer.act(obs, deterministic=True),
            env_steps,
            seed=stream_seed(self.config["seed"], VIDEO_STREAM),
            device=self.device,
        )

    def progress_line(self, row: dict[str, Any]) -> str:
        done = self.trainer.iteration - self.session_start_iteration
        remaining = self.trainer.max_iterations - self.trainer.iteration
        elapsed = time.perf_counter() - self.session_start
        eta = elapsed / done * remaining if done else (0.0 if remaining == 0 else math.inf)
        rate = self.env_steps / self.train_time_s if self.train_time_s > 0 else 0.0
        iteration_rate = self.trainer.iteration / self.train_time_s if self.train_time_s > 0 else 0.0
        return (
            f"[{self.config['algo']} {self.config['env']} seed {self.config['seed']}] "
            f"iteration {self.trainer.iteration:,}/{self.trainer.max_iterations:,} "
            f"({100 * self.trainer.iteration / self.trainer.max_iterations:.0f}%) | "
            f"env-steps {self.env_steps:,} | "
            f"return {row['return_mean']:.1f} ± {row['return_std']:.1f} (IQM {row['return_iqm']:.1f}) | "
            f"{rate:,.0f} steps/s, {iteration_rate:.2f} it/s | "
            f"elapsed {plan.format_duration(self.wall_time_s())} | "
            f"ETA {plan.format_duration(eta)}"
        )

    def write_summary(self, status: str, error: str | None) -> None:
        complete = status == "complete"
        summary = {
            "status": status,
            "error": error,
            "algo": self.config["algo"],
            "env": self.config["env"],
            "seed": self.config["seed"],
            "iterations": self.trainer.iteration,
            "max_iterations": self.trainer.max_iterations,
            "checkpoint_iteration": self.checkpoint_iteration,
            "final_return": self.last_eval["return_mean"] if complete and self.last_eval else None,
            "final_return_iqm": self.last_eval["return_iqm"] if complete and self.last_eval else None,
            "last_eval": self.last_eval,
            "best_return": {**self.best, "label": BEST_LABEL} if self.best else None,
            "env_steps": {
                "training": self.env_steps,
                "data": self.data_env_steps,
                "evaluation": self.eval_env_steps,
                "budget": self.budget_env_steps,
            },
            "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
            "wall_time_s": self.wall_time_s(),
            "throughput_env_steps_per_s": self.env_steps / self.train_time_s if self.train_time_s else None,
            "nonfinite": self.trainer.nonfinite_totals(),
            "dataset": None
            if self.writer is None
            else {k: self.writer.index[k] for k in ("num_episodes", "num_transitions")},
        }
        rundir.write_json(self.run_dir / rundir.SUMMARY, summary)

    # -- the loop ---------------------------------------------------------------------------------------

    def train(self, on_iteration: Callable[[int], None] | None, fresh: bool) -> RunResult:
        at_boundary = not fresh
        progress = lifecycle.Progress(self.trainer.max_iterations, self.trainer.iteration, "it", self.clock)
        try:
            with lifecycle.outcome("iteration") as result:
                if fresh:
                    progress.line(self.evaluate())
                    self.save_checkpoint()
                    at_boundary = True
                while self.trainer.iteration < self.trainer.max_iterations:
                    result.check()
                    at_boundary = False
                    start = time.perf_counter()
                    metrics = self.trainer.train_iteration()
                    if self.writer is not None and self.recorder is not None:
                        self.writer.write_chunk(self.recorder.pop_finished())
                    seconds = time.perf_counter() - start
                    self.train_time_s += seconds
                    self.log_iteration(metrics, seconds)
                    last = self.trainer.iteration == self.trainer.max_iterations
                    if last or self.trainer.iteration % self.eval_every == 0:
                        progress.line(self.evaluate())
                        self.save_checkpoint(final=last)
                    at_boundary = True
                    progress.advance()
                    if on_iteration is not None:
                        on_iteration(self.trainer.iteration)
        except BaseException as failure:
            self.write_summary("failed", f"{type(failure).__name__}: {failure}")
            raise
        finally:
            progress.close()
        stopped_cleanly = result.signalled or at_boundary
        if (
            result.status == "interrupted"
            and stopped_cleanly
            and self.checkpoint_iteration != self.trainer.iteration
        ):
            self.save_checkpoint()
        self.write_summary(result.status, result.error)
        if result.status == "interrupted":
            position = None if self.checkpoint_iteration is None else f"iteration {self.checkpoint_iteration}"
            lifecycle.interrupted_hint(self.run_dir, COMMAND, position)
        return RunResult(self.run_dir, result.status, result.exit_code)


def resolve_run(
    algo: str,
    env: str,
    inputs: RunInputs,
    *,
    seed: int = 0,
    preset: str = "paper",
    variant: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    device: str = "cpu",
    save_data: bool = False,
    video: bool = False,
    paths: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A run's ``config.json`` content before it starts (ConfigError for invalid settings).

    A pretrained model in ``inputs`` brings its architecture (``settings.algo.world_model`` records it) and
    its reward normalisation (``settings.algo.model_training.rew_rms``);
    ``paths`` are the files the inputs were read from.
    """
    variant = variant or default_variant(algo)
    settings = resolve_settings(algo, env, preset, variant, overrides)
    if inputs.world_model is not None:
        if any(o.startswith("algo.world_model.") or o.startswith("algo.world_model=") for o in overrides):
            raise ConfigError("algo.world_model comes from the --world-model checkpoint; it cannot be set")
        settings["algo"]["world_model"] = inputs.world_model.config.to_dict()
        # ... and its reward normalisation (a TD-MPC2 model regresses raw rewards: rew_rms off).
        training = settings["algo"].get("model_training")
        normalized = inputs.world_model.trainer_state["rew_rms"] is not None
        if training is not None and training["rew_rms"] != normalized:
            if any(o.startswith("algo.model_training.rew_rms=") for o in overrides):
                raise ConfigError(
                    f"the --world-model checkpoint was trained with rew_rms={str(normalized).lower()}; "
                    "algo.model_training.rew_rms cannot differ"
                )
            training["rew_rms"] = normalized
    return {
        "algo": algo,
        "env": env,
        "seed": seed,
        "preset": preset,
        "variant": variant,
        "device": device,
        "save_data": save_data,
        "video": video,
        "settings": settings,
        "inputs": dict(paths or {}),
        "seeds": {name: stream_seed(seed, s) for name, s in STREAMS.items()},
    }


def measure_training(
    config: dict[str, Any], device: str, inputs: RunInputs, name: str = "", done: int = 0
) -> plan.Stage:
    """The plan's stage of a run (``done``: iterations already done, for a resume): a throwaway env, eval
    env and trainer of ``config`` (on the warm-up seed stream, global RNGs restored afterwards) time a few
    training iterations and evaluation steps."""
    settings, run = config["settings"], run_config(config["settings"])
    seed = stream_seed(config["seed"], WARMUP_STREAM)
    with plan.isolated(run.torch_threads):
        env = make_env(config, settings["env"]["num_envs"], seed, device)
        trainer = build_trainer(config["algo"], env, settings["algo"], seed, inputs)
        per_iteration = plan.seconds_per_call(trainer.train_iteration, trainer.max_iterations)
        eval_env = make_env(config, run.eval_episodes, seed, device)
        obs = eval_env.reset()
        per_eval_step = plan.seconds_per_call(
            lambda: eval_env.step(trainer.act(obs, deterministic=True)), eval_env.max_episode_steps
        )
    every = max(1, round(run.eval_interval * trainer.max_iterations))
    evaluations = plan.evaluation_points(trainer.max_iterations, every, done)
    left = trainer.max_iterations - done
    return plan.Stage(
        name or f"{config['algo']} ({config['variant']}) training",
        "iteration",
        left,
        per_iteration,
        env_steps=left * trainer.env_steps_per_iteration,
        parameters=plan.module_parameters(trainer),
        overhead_s=evaluations * eval_env.max_episode_steps * per_eval_step,
        overhead=f"{evaluations} evaluations of at most {eval_env.max_episode_steps} steps",
    )


def print_plan(config: dict[str, Any], stage: plan.Stage, device: str) -> None:
    command = f"{COMMAND} --algo {config['algo']} --env {config['env']}"
    print(plan.Plan(command, device, (stage,), config["preset"]).format(), flush=True)


def start_run(
    algo: str,
    env: str,
    *,
    seed: int = 0,
    preset: str = "paper",
    variant: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    device: str = "cpu",
    out: str | Path = "runs",
    save_data: bool = False,
    video: bool = False,
    world_model: str | Path | None = None,
    data: str | Path | None = None,
    argv: list[str] | None = None,
    on_iteration: Callable[[int], None] | None = None,
    dry_run: bool = False,
    clock: plan.StageClock | None = None,
) -> RunResult:
    """Resolve settings, load inputs, build everything (ConfigError before any file is written), print
    the plan, train.

    ``world_model`` (a ``bench.pretrain`` checkpoint) and ``data`` (an episode dataset) are PWM's inputs;
    their paths are recorded in ``config.json["inputs"]`` and the objects passed to the algorithm.
    ``video``: record one evaluation episode at each evaluation point into ``RUN_DIR/videos/``.
    ``dry_run``: print the plan and return (status "planned", no run directory). ``clock``: the run is a
    stage of a pipeline that printed the plan; its progress lines show the pipeline's overall ETA.
    ``on_iteration(iteration)`` is called at every iteration boundary (tests use it to interrupt).
    """
    lifecycle.check_new_run(seed, out)
    paths = {
        name: str(Path(path).resolve())
        for name, path in (("world_model", world_model), ("data", data))
        if path is not None
    }
    inputs = load_inputs(paths)
    config = resolve_run(
        algo,
        env,
        inputs,
        seed=seed,
        preset=preset,
        variant=variant,
        overrides=overrides,
        device=device,
        save_data=save_data,
        video=video,
        paths=paths,
    )
    if clock is None:
        stage = measure_training(config, device, inputs)
        print_plan(config, stage, device)
    if dry_run:
        return RunResult(None, "planned", 0)
    session = _Session(config, device, inputs, clock)
    config.update(budget_env_steps=session.budget_env_steps, env_info=session.env_info())
    session.open(lifecycle.create_run(out, config, algo, device, argv))
    return session.train(on_iteration, fresh=True)


def resume_run(
    run_dir: str | Path,
    *,
    device: str | None = None,
    argv: list[str] | None = None,
    on_iteration: Callable[[int], None] | None = None,
    video: bool = False,
    dry_run: bool = False,
    clock: plan.StageClock | None = None,
) -> RunResult:
    """Continue ``run_dir`` from ``checkpoints/latest.pt``; rows logged after that checkpoint are dropped.

    ``video`` turns on ``--video`` recordings from here on (a run started with them keeps them);
    ``dry_run`` prints the plan of what is left and returns; ``clock``: as for :func:`start_run`.

    Every input (config, summary, checkpoint, CSVs, datasets) is read before any file is rewritten.
    """
    run_dir = Path(run_dir)
    config, summary = lifecycle.open_for_resume(run_dir, COMMAND)
    if summary is not None and summary.get("status") == "complete":
        print(f"{run_dir} is already complete")
        return RunResult(run_dir, "complete", 0)
    if config["algo"] not in ALGORITHMS:
        raise ConfigError(f"unknown algo {config['algo']!r} in {run_dir}; valid: {', '.join(ALGORITHMS)}")
    state = lifecycle.read_checkpoint(run_dir)
    device = device or config["device"]
    tables = [
        rundir.read_rows(run_dir / name, column, limit)
        for name, column, limit in (
            (rundir.TRAIN, "step", state.get("iteration")),
            (rundir.EVAL, "env_steps", state.get("env_steps")),
            (rundir.EVAL_EPISODES, "env_steps", state.get("env_steps")),
        )
    ]
    config["video"] = bool(config.get("video", False) or video)
    inputs = load_inputs(config.get("inputs", {}))
    if clock is None:
        print_plan(config, measure_training(config, device, inputs, done=state["iteration"]), device)
    if dry_run:
        return RunResult(None, "planned", 0)
    session = _Session(config, device, inputs, clock)
    session.open(run_dir)
    session.restore(state)
    for table in tables:
        table.write()
    (run_dir / rundir.SUMMARY).unlink(missing_ok=True)
    lifecycle.record_resume(run_dir, config, device, argv, from_iteration=state["iteration"])
    print(f"resuming {run_dir} at iteration {state['iteration']}")
    return session.train(on_iteration, fresh=False)
