"""Estimated run times for ``bench.sweep --dry-run``: the one table of measured times per task kind.

Only measured numbers are here, each with its source; a task without a measurement is shown as unknown and
left out of the totals (which then say so). Times are wall-clock seconds of one run on one core of the
machine in the source, including evaluation and process start-up; ``--set`` overrides that change the budget
are not accounted for.
"""

from __future__ import annotations

from pathlib import Path

from bench.sweep_plan import Task
from bench.sweep_runner import input_path, start_args

# (kind, env, preset) -> (seconds, source). kind: "algo:variant" of bench.run, or "pretrain".
MEASURED: dict[tuple[str, str, str], tuple[float, str]] = {
    ("shac:pwm", "ant", "cpu"): (
        49 * 60,
        "results/README.md: 47 min training + 2 min evaluation, AMD EPYC core",
    ),
    ("pretrain", "ant", "cpu"): (18.7 * 60, "results/README.md: 18.7 min pretraining, AMD EPYC core"),
    ("pwm:offline", "ant", "cpu"): (
        (7.4 + 1.4) * 60,
        "results/README.md: 7.4 min policy learning + up to 1.4 min evaluation, AMD EPYC core",
    ),
}


def estimate(task: Task) -> tuple[float, str] | None:
    """(seconds, source) of a measured run like ``task``, or None."""
    return MEASURED.get((task.kind, task.env, task.preset))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_plan(plan: list[Task], out: Path, slots: int) -> str:
    """The plan as text: one line per task (command, inputs, estimate), then totals."""
    lines = [f"{len(plan)} tasks ({sum(t.scored for t in plan)} scored runs) into {out}:"]
    finish: dict[str, float] = {}  # earliest finish of each task on unlimited slots: the dependency chain
    sources: set[str] = set()
    for task in plan:
        placeholders = {role: str(input_path(Path(f"<{dep}>"), role)) for role, dep in task.inputs}
        module = "bench.run" if task.command == "run" else "bench.pretrain"
        command = " ".join(["python -m", module, *start_args(out, task, placeholders, "cpu")])
        known = estimate(task)
        if known is not None:
            sources.add(known[1])
        finish[task.id] = max((finish[d] for d in task.deps), default=0.0) + (known[0] if known else 0.0)
        lines.append(f"  {task.id:32s} {_minutes(known[0]) if known else 'unknown':>9s}  {command}")
    known_times = [estimate(t)[0] for t in plan if estimate(t) is not None]
    total = sum(known_times)
    unknown = len(plan) - len(known_times)
    chain = max(finish.values(), default=0.0)
    lines.append(
        f"estimated: {_minutes(total)} of run time in all; on {slots} parallel slot(s) at least "
        f"{_minutes(max(total / slots, chain))} wall-clock"
        + (f"; {unknown} task(s) without a measured time are not counted" if unknown else "")
    )
    lines += [f"  source: {source}" for source in sorted(sources)]
    return "\n".join(lines)
