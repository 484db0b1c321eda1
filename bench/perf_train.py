"""Where training time goes: ``python -m bench.perf --train`` (issue 17).

A trainer of the ``cpu`` preset (or another) trains a few iterations after one untimed warm-up iteration;
its pieces are timed by wrapping them from the outside for the duration of the measurement (the
algorithms carry no timing code):

- ``simulator_forward``: ``env.step`` (Warp forward kernels plus the env's torch code for observations,
  rewards and resets, and recording the autograd graph);
- ``simulator_backward``: ``env.sim.backward`` (recomputed substeps and their adjoint kernels), wherever
  autograd calls it (SHAC's actor update, PWM's diagnostics);
- ``actor_update``: ``trainer.actor_step`` (backward through the actor loss, clip, Adam) less the simulator
  backward inside it;
- ``critic_update``: ``trainer.critic_update`` (the critic fit);
- ``world_model_update``: PWM's ``mode.update_world_model`` (online fine-tuning);
- ``evaluation``: the deterministic evaluation the run does every ``run.eval_interval`` of its budget,
  charged per iteration as whole episodes of ``max_episode_steps`` (an upper bound, like the plan);
- ``other``: the rest of the iteration (policy and critic forward in the window, TD(lambda) targets,
  bookkeeping, PWM's model rollout and diagnostics less their simulator time).

Times are exclusive: a wrapped call inside another is charged to its own category only. One more iteration,
apart from the timed ones, counts each category's matrix-product FLOPs (torch's ``FlopCounterMode``);
divided by the CPU seconds they say how close a category runs to the core's matrix-product rate
(:func:`matmul_reference`), i.e. whether it could be faster without computing less.
A PWM trainer starts from an untrained world model of the preset's architecture, given as pretrained, and a
synthetic dataset that seeds its replay (as the pipeline's plan does), so that every iteration learns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from algos.wm_training import PretrainedWorldModel, WorldModelTrainer
from algos.world_model import WorldModel, world_model_config
from bench import plan
from bench.algorithms import RunInputs, build_trainer
from bench.harness import make_env, resolve_run
from bench.presets import PretrainSettings, pretrain_settings, run_config

CATEGORIES = (
    "simulator_forward",
    "simulator_backward",
    "actor_update",
    "critic_update",
    "world_model_update",
    "evaluation",
    "other",
)
SYNTHETIC_EPISODES = 4
EVAL_STEPS = 20
"""Timed evaluation steps (after one untimed step); the per-step time is charged for whole episodes."""


def _clocks() -> np.ndarray:
    """(wall-clock, process CPU) seconds: CPU time is what a shared core's other jobs do not inflate."""
    return np.array([time.perf_counter(), time.process_time()])


class SectionTimer:
    """Exclusive (wall-clock, CPU) seconds per category of nested wrapped calls (one thread); another
    ``clock`` (an array-valued counter, e.g. FLOPs so far) is charged the same way."""

    def __init__(self, clock: Callable[[], np.ndarray] = _clocks) -> None:
        self.clock = clock
        self._shape = np.shape(clock())
        self.reset()

    def wrap(self, category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if category not in self.totals:
            raise ValueError(f"unknown category {category!r}; valid: {', '.join(CATEGORIES)}")

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._children.append(self._zero())
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self.clock() - start
                self.totals[category] = self.totals[category] + elapsed - self._children.pop()
                self._children[-1] += elapsed

        return timed

    def _zero(self) -> np.ndarray:
        return np.zeros(self._shape)

    def reset(self) -> None:
        self.totals = {name: self._zero() for name in CATEGORIES}
        self._children = [self._zero()]  # the clock's advance in wrapped calls nested in each open call


@contextmanager
def instrumented(trainer: Any, env: Any, timer: SectionTimer) -> Iterator[None]:
    """Shadow the timed callables by instance attributes that wrap them; restored on exit."""
    targets = [
        (env, "step", "simulator_forward"),
        (env.sim, "backward", "simulator_backward"),
        (trainer, "actor_step", "actor_update"),
        (trainer, "critic_update", "critic_update"),
    ]
    mode = getattr(trainer, "mode", None)
    if mode is not None and hasattr(mode, "update_world_model"):
        targets.append((mode, "update_world_model", "world_model_update"))
    saved = []
    for obj, name, category in targets:
        if hasattr(obj, name):
            saved.append((obj, name, obj.__dict__.get(name)))
            setattr(obj, name, timer.wrap(category, getattr(obj, name)))
    try:
        yield
    finally:
        for obj, name, original in reversed(saved):
            if original is None:
                delattr(obj, name)  # it was a method of the class: drop the shadow
            else:
                setattr(obj, name, original)


def _rate(gflop: float, cpu_seconds: float) -> float:
    """GFLOP per CPU second; nan for a category that took no time."""
    return gflop / cpu_seconds if cpu_seconds > 0 else float("nan")


@dataclass(frozen=True)
class TrainBreakdown:
    algo: str
    env: str
    preset: str
    num_envs: int
    horizon: int
    iterations: int
    """Timed iterations (after one untimed warm-up iteration)."""
    env_steps_per_iteration: int
    seconds: dict[str, float]
    """Wall-clock seconds per iteration of each category in :data:`CATEGORIES` (evaluation amortised)."""
    cpu_seconds: dict[str, float]
    """The same in process CPU time (on a core shared with other jobs, wall-clock is inflated)."""
    gflop: dict[str, float]
    """Matrix-product GFLOP per iteration of each category, forward and backward (torch's
    ``FlopCounterMode`` over one more iteration: matmuls and convolutions; the simulator's Warp kernels
    are not torch ops and count 0)."""
    torch_threads: int | None

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_seconds.values())

    @property
    def gflop_total(self) -> float:
        return sum(self.gflop.values())

    @property
    def env_steps_per_s(self) -> float:
        """Training throughput including the amortised evaluation (wall-clock)."""
        return self.env_steps_per_iteration / self.total

    @property
    def env_steps_per_cpu_s(self) -> float:
        """The same per CPU second."""
        return self.env_steps_per_iteration / self.cpu_total

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows: one per category and a ``total`` row (share 1)."""
        base = {
            "algo": self.algo,
            "env": self.env,
            "preset": self.preset,
            "num_envs": self.num_envs,
            "horizon": self.horizon,
            "iterations": self.iterations,
            "torch_threads": self.torch_threads,
        }
        rows = [
            {
                **base,
                "category": name,
                "seconds_per_iteration": self.seconds[name],
                "share": self.seconds[name] / self.total,
                "cpu_seconds_per_iteration": self.cpu_seconds[name],
                "cpu_share": self.cpu_seconds[name] / self.cpu_total,
                "gflop_per_iteration": self.gflop[name],
                "gflop_per_cpu_s": _rate(self.gflop[name], self.cpu_seconds[name]),
            }
            for name in CATEGORIES
        ]
        rows.append(
            {
                **base,
                "category": "total",
                "seconds_per_iteration": self.total,
                "share": 1.0,
                "cpu_seconds_per_iteration": self.cpu_total,
                "cpu_share": 1.0,
                "gflop_per_iteration": self.gflop_total,
                "gflop_per_cpu_s": _rate(self.gflop_total, self.cpu_total),
                "env_steps_per_s": self.env_steps_per_s,
                "env_steps_per_cpu_s": self.env_steps_per_cpu_s,
            }
        )
        return rows


def _inputs(algo: str, env_name: str, preset: str, seed: int, device: str) -> RunInputs:
    """PWM: an untrained world model of the preset's pretraining architecture and a synthetic dataset."""
    if algo != "pwm":
        return RunInputs()
    settings = pretrain_settings(preset, env_name)
    probe = make_env({"env": env_name, "settings": {"env": {}}}, 1, seed, device)
    dataset = plan.synthetic_dataset(
        probe.obs_dim, probe.act_dim, SYNTHETIC_EPISODES, probe.max_episode_steps, seed
    )
    model = WorldModel(probe.obs_dim, probe.act_dim, settings.world_model).to(device)
    return RunInputs(PretrainedWorldModel.from_trainer(WorldModelTrainer(model, settings.train)), dataset)


def train_breakdown(
    algo: str,
    env_name: str,
    iterations: int = 10,
    preset: str = "cpu",
    seed: int = 0,
    device: str = "cpu",
    overrides: tuple[str, ...] = (),
) -> TrainBreakdown:
    """Time ``iterations`` training iterations of ``algo`` on ``env_name`` at ``preset`` settings (after one
    untimed warm-up iteration) and one evaluation's steps; returns the per-iteration breakdown.
    Global RNG states and the torch thread count are restored afterwards."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    inputs = _inputs(algo, env_name, preset, seed, device)
    config = resolve_run(algo, env_name, inputs, seed=seed, preset=preset, overrides=overrides, device=device)
    settings, run = config["settings"], run_config(config["settings"])
    timer = SectionTimer()
    with plan.isolated(run.torch_threads):
        env = make_env(config, settings["env"]["num_envs"], config["seeds"]["train_env"], device)
        trainer = build_trainer(algo, env, settings["algo"], config["seeds"]["trainer"], inputs)
        if trainer.max_iterations < iterations + 2:
            raise ValueError(
                f"the run has {trainer.max_iterations} iterations; asked for {iterations} + 2 "
                "(a warm-up and a counted one)"
            )
        with instrumented(trainer, env, timer):
            trainer.train_iteration()  # warm-up: kernel loading, first allocations, backward plan
            timer.reset()
            start = _clocks()
            for _ in range(iterations):
                trainer.train_iteration()
            elapsed = _clocks() - start
        # Counting slows every op it sees, so one more iteration apart from the timed ones is counted.
        counter = FlopCounterMode(display=False)
        flops = SectionTimer(lambda: np.array([counter.get_total_flops()], dtype=float))
        with counter, instrumented(trainer, env, flops):
            trainer.train_iteration()
            iteration_flops = float(counter.get_total_flops())
        eval_env = make_env(config, run.eval_episodes, config["seeds"]["eval_env"], device)
        obs = eval_env.reset()
        obs = eval_env.step(trainer.act(obs, deterministic=True))[0]
        start = _clocks()
        for _ in range(EVAL_STEPS):
            obs = eval_env.step(trainer.act(obs, deterministic=True))[0]
        per_eval_step = (_clocks() - start) / EVAL_STEPS
        with FlopCounterMode(display=False) as eval_counter:
            eval_env.step(trainer.act(obs, deterministic=True))
        eval_step_flops = float(eval_counter.get_total_flops())
    per_iteration = {name: value / iterations for name, value in timer.totals.items()}
    per_iteration["other"] = elapsed / iterations - sum(per_iteration.values())
    gflop = {name: float(value[0]) / 1e9 for name, value in flops.totals.items()}
    gflop["other"] = iteration_flops / 1e9 - sum(gflop.values())
    every = max(1, round(run.eval_interval * trainer.max_iterations))
    evaluations = plan.evaluation_points(trainer.max_iterations, every)
    eval_steps_per_iteration = eval_env.max_episode_steps * evaluations / trainer.max_iterations
    per_iteration["evaluation"] = per_eval_step * eval_steps_per_iteration
    gflop["evaluation"] = eval_step_flops / 1e9 * eval_steps_per_iteration
    algo_settings = settings["algo"]
    return TrainBreakdown(
        algo=algo,
        env=env_name,
        preset=preset,
        num_envs=env.num_envs,
        horizon=algo_settings["horizon"],
        iterations=iterations,
        env_steps_per_iteration=trainer.env_steps_per_iteration,
        seconds={name: float(value[0]) for name, value in per_iteration.items()},
        cpu_seconds={name: float(value[1]) for name, value in per_iteration.items()},
        gflop=gflop,
        torch_threads=run.torch_threads,
    )


def world_model_step(
    env_name: str, size: str = "single", steps: int = 3, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """Seconds per world-model training step (``WorldModelTrainer.train_step``, batch sampling excluded) of
    the ``size`` model at the paper's training settings (256 sub-trajectories of 16 steps) on synthetic
    data of the env's sizes, after one untimed step, on one thread; a tidy row."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    settings = pretrain_settings("paper", env_name)
    settings = PretrainSettings(settings.steps, world_model_config(size), settings.train)
    probe = make_env({"env": env_name, "settings": {"env": {}}}, 1, seed, device)
    train = settings.train
    dataset = plan.synthetic_dataset(
        probe.obs_dim, probe.act_dim, SYNTHETIC_EPISODES, train.horizon + 1, seed
    )
    with plan.isolated(settings.torch_threads):
        model = WorldModel(probe.obs_dim, probe.act_dim, settings.world_model).to(device)
        trainer = WorldModelTrainer(model, train, seed)
        batch = trainer.dataset_batch(dataset)
        trainer.train_step(batch)
        start = _clocks()
        for _ in range(steps):
            trainer.train_step(batch)
        per_step = (_clocks() - start) / steps
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(batch)
    gflop = counter.get_total_flops() / 1e9
    return {
        "algo": "pwm",
        "env": env_name,
        "category": "world_model_step",
        "world_model_size": size,
        "batch_size": train.batch_size,
        "horizon": train.horizon,
        "iterations": steps,
        "torch_threads": settings.torch_threads,
        "seconds_per_iteration": float(per_step[0]),
        "cpu_seconds_per_iteration": float(per_step[1]),
        "gflop_per_iteration": gflop,
        "gflop_per_cpu_s": _rate(gflop, float(per_step[1])),
    }


def matmul_reference(shape: tuple[int, int, int] = (512, 400, 200), seconds: float = 1.0) -> dict[str, Any]:
    """The float32 rate of one thread multiplying [m, k] by [k, n] on the CPU for about ``seconds`` (default:
    a critic minibatch through the first hidden layer): the ceiling that the categories' GFLOP per CPU
    second are read against; a tidy row."""
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    with plan.isolated(1):
        a @ b
        products, start = 0, _clocks()
        while (_clocks() - start)[1] < seconds:
            for _ in range(10):
                a @ b
            products += 10
        elapsed = _clocks() - start
    gflop = 2.0 * m * k * n * products / 1e9
    return {
        "category": "matmul_reference",
        "matmul_shape": f"{m}x{k}x{n}",
        "iterations": products,
        "torch_threads": 1,
        "seconds_per_iteration": float(elapsed[0]) / products,
        "cpu_seconds_per_iteration": float(elapsed[1]) / products,
        "gflop_per_iteration": 2.0 * m * k * n / 1e9,
        "gflop_per_cpu_s": gflop / float(elapsed[1]),
    }
