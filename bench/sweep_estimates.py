"""Estimated run times for ``bench.sweep --dry-run``: each task's budget over a measured throughput.

The budget comes from the task's resolved settings (preset plus ``--set``): env-steps for SHAC
(envs x horizon x iterations), imagined steps for offline PWM, gradient steps for pretraining. The
throughputs are the one table below, each measured on one core of the AMD EPYC machine named in its source
and including evaluation; process start-up (seconds) is not counted. Where only the simulator's own speed
is measured, the estimate is a lower bound (the networks come on top) and is printed as ``>=``; tasks with
no measurement are ``unknown`` and left out of the totals, which say so.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import envs.registry
from bench.presets import pretrain_settings
from bench.sweep_plan import Task, task_settings
from bench.sweep_runner import input_path, start_args


@dataclass(frozen=True)
class Rate:
    per_second: float
    """Units of the task's budget per second of wall-clock."""
    source: str
    """Where the number was measured (a file in this repository)."""
    lower_bound: bool = False
    """Only part of the work was measured (the simulator): the task takes at least budget / rate."""


_RUNS = "results/ant_shac_vs_pwm/runs.csv at commit 27ca9ef (last row per run, each run on an idle core)"
_ONLINE = "results/runs/ant/pwm/seed0_20261130T072730Z/eval.csv at commit ec7c249 (last row; other core busy)"
_STAGES = "results/runs/ant_pwm_stages/pwm_pretrain/seed0_20261130T072127Z/summary.json at commit ec7c249"
_PERF = "results/perf/perf_cpu.csv (forward+backward, N = 64, simulator alone)"
_PPO = "results/runs/ant/ppo/*/eval.csv at commit 6517ce1 (last row per run; the other core busy)"
_SAC = "results/runs/ant/sac/seed0_20261130T110726Z/eval.csv (last row; the other core busy)"
_HOPPER = "results/runs/hopper/shac/seed0_20261130T102103Z/eval.csv (last row; the other core busy)"
# (task kind, env) -> rate. SHAC, PWM online and the baselines: env-steps/s; PWM offline: imagined steps/s;
# pretraining: steps/s of the preset's model (cpu: small, paper: the paper size).
RATES: dict[tuple[str, str], Rate] = {
    ("shac:pwm", "ant"): Rate(2_048_000 / 3030, f"{_RUNS}: SHAC, 2.05M env-steps in 3,025-3,034 s"),
    ("pwm:offline", "ant"): Rate(64 * 16 * 500 / 494, f"{_RUNS}: PWM offline, 500 x 64 x 16 in 458-529 s"),
    ("pwm:online", "ant"): Rate(2_048_000 / 4374, f"{_ONLINE}: PWM online, 2.05M env-steps in 4,374 s"),
    ("sac:fork", "ant"): Rate(2_048_000 / 2238, f"{_SAC}: SAC, 2.05M env-steps in 2,238 s"),
    ("shac:pwm", "hopper"): Rate(2_048_000 / 1460, f"{_HOPPER}: SHAC, 2.05M env-steps in 1,460 s"),
    ("ppo:fork", "ant"): Rate(2_048_000 / 311, f"{_PPO}: PPO, 2.05M env-steps in 307-315 s"),
    ("pretrain:cpu", "ant"): Rate(2000 / 338, f"{_STAGES}: 2,000 small-model steps in 338 s"),
    ("pretrain:paper", "ant"): Rate(
        2000 / (18.7 * 60), "results/README.md at commit 27ca9ef: 2,000 paper-size steps in 18.7 min"
    ),
}
# Any SHAC variant steps the simulator forward and backward once per env-step: a lower bound anywhere.
SIMULATOR: dict[str, Rate] = {
    "ant": Rate(6674, _PERF, lower_bound=True),
    "humanoid": Rate(1259, _PERF, lower_bound=True),
    "snu_humanoid": Rate(674, _PERF, lower_bound=True),
}


def budget(task: Task) -> float | None:
    """The task's work in the units of its rate, or None where no rate applies."""
    if task.command == "pretrain":
        return float(pretrain_settings(task.preset, task.env).steps)
    settings = task_settings(task)
    algo = settings["algo"]
    # Env steps per env and iteration: SAC and TD-MPC2 name them steps_per_iteration; BPTT's horizon None
    # is the whole episode.
    steps = algo.get("steps_per_iteration") or algo.get("horizon")
    steps = steps or episode_length(task.env, settings["env"])
    return float(settings["env"]["num_envs"] * steps * algo["max_epochs"])


def episode_length(env: str, env_settings: dict) -> int:
    """The episode length a run of ``env`` with ``env_settings`` uses: its override or the task's default."""
    if env_settings.get("episode_length") is not None:
        return int(env_settings["episode_length"])
    config_class = envs.registry.factory(env).config_class
    return next(f.default for f in fields(config_class) if f.name == "episode_length")


def estimate(task: Task) -> tuple[float, Rate] | None:
    """(seconds, rate used) for ``task``, or None when nothing measured applies."""
    rate = RATES.get((task.kind, task.env))
    if rate is None and task.algo == "shac":
        rate = SIMULATOR.get(task.env)
    work = budget(task) if rate is not None else None
    return None if work is None else (work / rate.per_second, rate)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_plan(plan: list[Task], out: Path, slots: int) -> str:
    """The plan as text: one line per task (estimate, command), then totals and the sources."""
    lines = [f"{len(plan)} tasks ({sum(t.scored for t in plan)} scored runs) into {out}:"]
    finish: dict[str, float] = {}  # earliest finish with unlimited slots: the longest dependency chain
    sources, total, unknown, bounds = set(), 0.0, 0, 0
    for task in plan:
        placeholders = {role: str(input_path(Path(f"<{dep}>"), role)) for role, dep in task.inputs}
        module = "bench.run" if task.command == "run" else "bench.pretrain"
        command = " ".join(["python -m", module, *start_args(out, task, placeholders, "cpu")])
        known = estimate(task)
        seconds = known[0] if known else 0.0
        if known:
            sources.add(known[1].source)
            bounds += known[1].lower_bound
        unknown += known is None
        total += seconds
        finish[task.id] = max((finish[d] for d in task.deps), default=0.0) + seconds
        shown = "unknown" if known is None else (">= " if known[1].lower_bound else "") + _duration(seconds)
        lines.append(f"  {task.id:30s} {shown:>11s}  {command}")
    wall = max(total / max(slots, 1), max(finish.values(), default=0.0))
    notes = [f"{unknown} task(s) unknown, not counted"] if unknown else []
    notes += [f"{bounds} task(s) counted at a lower bound"] if bounds else []
    lines.append(
        f"estimated run time: {_duration(total)} in all, at least {_duration(wall)} of wall-clock on {slots} "
        f"parallel slot(s), one CPU core each, plus process start-up" + "".join(f"; {n}" for n in notes)
    )
    lines += [f"  measured: {source}" for source in sorted(sources)]
    return "\n".join(lines)
