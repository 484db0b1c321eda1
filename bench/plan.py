"""The plan a long command prints before it starts: its stages, their size, and a measured estimate.

Each command measures its own work (``bench.harness.measure_training``, ``bench.pretrain.
measure_pretraining``, ``bench.collect.measure_collection``): a throwaway copy of what the run builds (own
seeds, global RNG states saved and restored by :func:`isolated`) does a few real units of work on this
device, timed by :func:`seconds_per_call`. The first call is not timed (Warp kernel loading, graph capture,
allocator warm-up). This module holds the arithmetic and the formatting.

:class:`StageClock` turns a plan into the pipeline's progress line: stage k of n and the overall ETA, from
the current stage's measured rate and the estimates of the stages after it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from algos.dataset import EpisodeDataset

DAY_S = 86_400.0
WARMUP_CALLS = 1
"""Untimed calls before the timed ones (compilation, graph capture, first allocations)."""
TIMED_CALLS = 2


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (days as ``Nd h:mm:ss``); ``?`` for an unknown (non-finite) duration."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}:{minutes:02d}:{secs:02d}" if days else f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Stage:
    """One stage of a plan: ``count`` units of work at a measured cost per unit, plus an overhead."""

    name: str
    """What the stage does, e.g. "shac training"."""
    unit: str
    """The unit of work: iteration, step (gradient step), batch step (one step of every env)."""
    count: int
    """Units of work the stage does."""
    seconds_per_unit: float
    """Measured on this device in the warm-up (NaN: the warm-up failed, the time is unknown)."""
    env_steps: int = 0
    """Env steps the stage consumes (training data; evaluation is not counted)."""
    parameters: dict[str, int] = field(default_factory=dict)
    """Trainable parameters by network (actor, critic, world_model, ...)."""
    overhead_s: float = 0.0
    """Measured time besides the units (evaluation), an upper bound."""
    overhead: str = ""
    """What the overhead is, for the printed plan."""
    skipped: bool = False
    """Already complete (a pipeline run again): no time left."""

    def __post_init__(self) -> None:
        if self.count < 0 or self.seconds_per_unit < 0.0 or self.overhead_s < 0.0:
            raise ValueError(f"stage {self.name!r}: count and times must be >= 0")

    @property
    def seconds(self) -> float:
        """Estimated wall-clock of the stage (0 when skipped)."""
        return 0.0 if self.skipped else self.count * self.seconds_per_unit + self.overhead_s


def stage_lines(number: int, total: int, stage: Stage) -> list[str]:
    head = f"  {number}/{total} {stage.name}"
    if stage.skipped:
        return [f"{head}: complete, skipped"]
    lines = [
        f"{head}: {stage.count:,} {stage.unit}s x {stage.seconds_per_unit:.3g} s"
        + (f" + {stage.overhead} {format_duration(stage.overhead_s)}" if stage.overhead else "")
        + f" = {format_duration(stage.seconds)}"
    ]
    if stage.env_steps:
        lines.append(f"      env steps {stage.env_steps:,}")
    if stage.parameters:
        parts = ", ".join(f"{name} {count:,}" for name, count in stage.parameters.items())
        lines.append(f"      parameters {sum(stage.parameters.values()):,} ({parts})")
    return lines


@dataclass(frozen=True)
class Plan:
    command: str
    """The command, e.g. "bench.run --algo shac --env ant --preset paper"."""
    device: str
    """The device the estimate was measured on."""
    stages: tuple[Stage, ...]
    preset: str | None = None
    """The budget preset (for the warning's suggestion)."""

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def warning(self) -> str | None:
        """A warning when the estimate exceeds a day, naming a smaller alternative."""
        if not self.seconds > DAY_S:  # within a day, or unknown
            return None
        if self.preset not in ("cpu", "smoke"):
            advice = "--preset cpu is the one-CPU-core budget"
        else:
            advice = "a GPU (--device cuda) is faster"
        total = format_duration(self.seconds)
        return f"warning: the estimate is {total}, over a day on {self.device}; {advice}"

    def format(self) -> str:
        lines = [f"plan: {self.command} on {self.device} (estimate from a measured warm-up on this device)"]
        for number, stage in enumerate(self.stages, 1):
            lines += stage_lines(number, len(self.stages), stage)
        lines.append(f"  estimated total {format_duration(self.seconds)}")
        warning = self.warning()
        return "\n".join([*lines, warning] if warning else lines)


def seconds_per_call(step: Callable[[], Any], available: int) -> float:
    """Seconds per call of ``step``: :data:`WARMUP_CALLS` untimed calls, then up to :data:`TIMED_CALLS`
    timed ones, never more calls than ``available`` (>= 1; a trainer must not pass its budget). NaN when
    ``step`` raises (persistent nan/inf gradients, non-finite actions, ...): the run itself meets the same
    failure and reports it in its run directory, so the warm-up must not end the command first."""
    if available < 1:
        raise ValueError(f"need at least one call to measure, got {available}")
    warmup = min(WARMUP_CALLS, available - 1)
    calls = min(TIMED_CALLS, available - warmup)
    try:
        for _ in range(warmup):
            step()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        if torch.cuda.is_initialized():  # kernels launched asynchronously count too
            torch.cuda.synchronize()
    except Exception:
        return math.nan
    return (time.perf_counter() - start) / calls


def evaluation_points(iterations: int, every: int, done: int = 0) -> int:
    """Evaluations of a run still to come after iteration ``done``: at the start (``done`` 0 only: the
    start of a fresh run), every ``every`` iterations, and at the end."""
    if not 0 <= done <= iterations:
        raise ValueError(f"done must be in [0, {iterations}], got {done}")
    if done == iterations:
        return 0
    return (done == 0) + iterations // every - done // every + (iterations % every != 0)


def module_parameters(obj: Any) -> dict[str, int]:
    """Trainable parameters of each ``torch.nn.Module`` attribute of ``obj`` (its networks), by name."""
    counts = {
        name: sum(p.numel() for p in value.parameters())
        for name, value in vars(obj).items()
        if isinstance(value, torch.nn.Module)
    }
    return {name: count for name, count in counts.items() if count}


@contextmanager
def isolated(threads: int | None) -> Iterator[None]:
    """Run a warm-up without touching the run: the global torch/numpy/Python RNG states and the torch
    thread count are restored afterwards; ``threads`` (the run's) is used inside."""
    saved = (torch.get_num_threads(), torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.set_rng_state(saved[1])
        np.random.set_state(saved[2])
        random.setstate(saved[3])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class StageClock:
    """Stage ``number`` of a plan as it runs: the pipeline's progress line with the overall ETA."""

    def __init__(self, plan: Plan, number: int) -> None:
        if not 1 <= number <= len(plan.stages):
            raise ValueError(f"stage {number} is not in a plan of {len(plan.stages)} stages")
        self.plan, self.number = plan, number
        self.stage = plan.stages[number - 1]
        self.later_s = sum(stage.seconds for stage in plan.stages[number:])
        self.printed_tenths = -1

    def eta(self, remaining: int, done: int, elapsed_s: float) -> float:
        """Seconds left in the whole plan: this stage's ``remaining`` units at this session's rate (``done``
        units in ``elapsed_s``; before the first, the measured cost per unit), plus the estimates of the
        stages after it."""
        per_unit = elapsed_s / done if done > 0 else self.stage.seconds_per_unit
        return remaining * per_unit + self.later_s

    def line(self, position: int, total: int, done: int, elapsed_s: float) -> str:
        """The progress line at unit ``position`` of ``total`` (``done`` of them in ``elapsed_s`` here)."""
        percent = 100 * position / total if total else 100.0
        eta = self.eta(total - position, done, elapsed_s)
        return (
            f"[pipeline stage {self.number}/{len(self.plan.stages)}: {self.stage.name} {percent:.0f}%] "
            f"overall ETA {format_duration(eta)}"
        )

    def due(self, position: int, total: int) -> bool:
        """True once per tenth of the stage (so a long stage prints about ten lines)."""
        tenths = 10 * position // total if total else 10
        if tenths > self.printed_tenths:
            self.printed_tenths = tenths
            return True
        return False


def synthetic_dataset(
    obs_dim: int, act_dim: int, episodes: int, length: int, seed: int = 0
) -> EpisodeDataset:
    """Random episodes of the right shapes: a stand-in for a dataset not recorded yet, to time world-model
    steps on (the time of a step does not depend on the numbers)."""
    rng = np.random.default_rng(seed)
    rows = episodes * (length + 1)
    lengths = np.full(episodes, length, dtype=np.int64)
    return EpisodeDataset(
        obs=rng.standard_normal((rows, obs_dim), dtype=np.float32),
        action=rng.uniform(-1.0, 1.0, (rows, act_dim)).astype(np.float32),
        action_raw=rng.standard_normal((rows, act_dim), dtype=np.float32),
        reward=rng.standard_normal(rows, dtype=np.float32),
        epoch=np.zeros(rows, dtype=np.int64),
        episode_id=np.repeat(np.arange(episodes), length + 1),
        episode_start=np.arange(episodes, dtype=np.int64) * (length + 1),
        episode_length=lengths,
        episode_terminated=np.zeros(episodes, dtype=bool),
        episode_truncated=np.ones(episodes, dtype=bool),
        info={"obs_dim": obs_dim, "act_dim": act_dim, "env": "synthetic"},
    )


def linear_cost(h1: int, t1: float, h2: int, t2: float) -> tuple[float, float]:
    """Seconds per call ``a + b·H`` of an H-step rollout, from calls timed at horizons ``h1 < h2``: the fixed
    part ``a`` (env setup, state copy) and ``b`` per step. When timing noise makes the longer call no slower,
    every second is charged per step (``a`` 0), so long horizons are not underestimated. NaN when either
    time is unknown."""
    if not 0 < h1 < h2:
        raise ValueError(f"need 0 < h1 < h2, got {h1}, {h2}")
    if not (math.isfinite(t1) and math.isfinite(t2)):
        return math.nan, math.nan
    if t2 <= t1:
        return 0.0, max(t1 / h1, t2 / h2)
    per_step = (t2 - t1) / (h2 - h1)
    return max(t1 - per_step * h1, 0.0), per_step


def rollout_stage(
    name: str, jobs: list[tuple[int, int]], chunk: int, batch: int, cost: tuple[float, float]
) -> Stage:
    """A stage of batched rollouts: ``jobs`` of (points, horizon H), evaluated ``chunk`` points per call,
    each point over ``batch`` start states; ``cost`` is :func:`linear_cost`'s (a, b). A short last chunk is
    charged as a full one (an upper bound)."""
    if chunk < 1 or batch < 1:
        raise ValueError(f"chunk and batch must be >= 1, got {chunk}, {batch}")
    calls = sum(-(-points // chunk) for points, _ in jobs)
    return Stage(
        name,
        "chunk step",
        sum(-(-points // chunk) * horizon for points, horizon in jobs),
        cost[1],
        env_steps=sum(points * batch * horizon for points, horizon in jobs),
        overhead_s=calls * cost[0],
        overhead=f"{calls} calls' setup",
    )
