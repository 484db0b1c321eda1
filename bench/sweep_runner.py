"""Run a sweep's plan on a backend: skip complete tasks, resume interrupted ones, retry failures.

Layout of a sweep directory ``<out>/``::

    sweep.json                 the manifest: plan, status per task, attempts (host, start, end, exit code)
    runs/<task id>/<env>/<algo>/seed<k>_<time>/     scored runs (SHAC cells, PWM policies): bench.report
    stages/<task id>/<env>/<algo>/seed<k>_<time>/   PWM data and pretraining runs
    logs/<task id>.log         each attempt's console output
    abandoned/<task id>/...    runs that died before their first checkpoint (kept, never reused)
    report/                    bench.report on runs/

Each task's directory holds at most one run directory: the task's state is that run's ``summary.json``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import rundir
from bench.sweep_backends import Attempt, Backend, Job
from bench.sweep_plan import Task

MANIFEST = "sweep.json"
INTERRUPT_CODES = (130, 143)


def task_root(out: Path, task: Task) -> Path:
    return out / ("runs" if task.scored else "stages") / task.id


def task_run(out: Path, task: Task) -> Path | None:
    """The task's run directory, if it has one."""
    root = task_root(out, task)
    runs = rundir.find_runs(root) if root.exists() else []
    if len(runs) > 1:
        raise RuntimeError(f"{root} holds {len(runs)} runs; a task directory must hold one")
    return runs[0] if runs else None


def is_complete(run: Path | None) -> bool:
    summary = rundir.read_summary(run) if run is not None else None
    return summary is not None and summary.get("status") == "complete"


def input_path(run: Path, role: str) -> Path:
    """What a task reads from an input task's run: its ``data/`` or its final checkpoint."""
    return run / rundir.DATA if role == "data" else run / rundir.CHECKPOINTS / rundir.FINAL


def start_args(out: Path, task: Task, inputs: dict[str, str], device: str) -> list[str]:
    """Arguments of ``bench.run`` / ``bench.pretrain`` for a new run of ``task``; ``inputs``: role -> path."""
    args = ["--env", task.env, "--seed", str(task.seed), "--preset", task.preset, "--device", device]
    args += ["--out", str(task_root(out, task))]
    if task.command == "run":
        args += ["--algo", str(task.algo)]
        args += ["--variant", task.variant] if task.variant else []
        args += ["--save-data"] if task.save_data else []
        for assignment in task.overrides:
            args += ["--set", assignment]
    for role, path in inputs.items():
        args += [f"--{role.replace('_', '-')}", path]
    return args


def task_job(out: Path, task: Task, tasks: dict[str, Task], device: str, env: dict[str, str]) -> Job:
    """The command that brings ``task`` forward: ``--resume`` its run if it has a checkpoint, else a new run.

    A run without a checkpoint (it died while starting) is moved to ``abandoned/`` first.
    """
    module = "bench.run" if task.command == "run" else "bench.pretrain"
    log = str(out / "logs" / f"{task.id}.log")
    run = task_run(out, task)
    if run is not None and (run / rundir.CHECKPOINTS / rundir.LATEST).exists():
        return Job(task.id, module, ("--resume", str(run), "--device", device), log, env)
    if run is not None:
        target = out / "abandoned" / task.id / run.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(run, target)
    inputs = {}
    for role, dep in task.inputs:
        dep_run = task_run(out, tasks[dep])
        if not is_complete(dep_run):
            raise RuntimeError(f"{task.id} reads {dep}, which is not complete")
        inputs[role] = str(input_path(dep_run, role).resolve())
    return Job(task.id, module, tuple(start_args(out, task, inputs, device)), log, env)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """``sweep.json``: every task's spec, status and attempts; rewritten atomically after each change."""

    def __init__(self, out: Path, plan: list[Task], argv: list[str], backend: str) -> None:
        self.path = out / MANIFEST
        old = rundir.read_json(self.path) if self.path.exists() else {"tasks": {}, "invocations": []}
        for task in plan:
            recorded = old["tasks"].get(task.id, {}).get("task")
            if recorded is not None and recorded != task.to_dict():
                raise ValueError(
                    f"task {task.id} differs from the one recorded in {self.path} "
                    f"(recorded {recorded}, now {task.to_dict()}); use another --out"
                )
        self.data = old
        self.data["invocations"].append(
            {"argv": argv, "backend": backend, "host": socket.gethostname(), "start": _now()}
        )
        for task in plan:
            entry = self.data["tasks"].setdefault(task.id, {"task": task.to_dict(), "attempts": []})
            entry.update(status="pending", run_dir=None, exit_code=None)
        self.save()

    def update(self, task_id: str, **values: Any) -> None:
        self.data["tasks"][task_id].update(values)
        self.save()

    def add_attempt(self, task_id: str, job: Job, attempt: Attempt) -> None:
        entry = self.data["tasks"][task_id]
        entry["attempts"].append({"argv": ["python", "-m", job.module, *job.args], **asdict(attempt)})
        self.update(task_id, exit_code=attempt.exit_code)

    def save(self) -> None:
        self.data["updated"] = _now()
        rundir.write_json(self.path, self.data)


class _StopFlag:
    """Ctrl-C / SIGTERM on the driver: stop submitting and tell the backend to interrupt its runs."""

    def __init__(self, interrupt: Callable[[], None]) -> None:
        self.signum: int | None = None
        self._interrupt = interrupt

    def __call__(self, signum: int, _frame: Any) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        message = f"\n{name}: interrupting the running tasks (they checkpoint); rerun the sweep to continue"
        print(message, file=sys.stderr, flush=True)
        self._interrupt()  # a second Ctrl-C reaches the runs too: they stop without a checkpoint


def run_sweep(
    plan: list[Task],
    out: str | Path,
    backend: Backend,
    *,
    retries: int = 1,
    device: str = "cpu",
    env: dict[str, str] | None = None,
    argv: list[str] | None = None,
    backend_name: str = "local",
) -> int:
    """Bring every task of ``plan`` to completion on ``backend``; returns 0, 1 (a task failed) or 130/143.

    A task starts once the tasks it reads are complete; a failed attempt is retried ``retries`` times
    (resuming from the run's checkpoint when it has one); a task whose input failed is ``blocked``.
    """
    out = Path(out).resolve()
    tasks = {task.id: task for task in plan}
    manifest = Manifest(out, plan, argv or [], backend_name)
    status = {task.id: "pending" for task in plan}
    failures = dict.fromkeys(tasks, 0)
    running: dict[Future, tuple[Task, Job]] = {}
    stop = _StopFlag(backend.interrupt)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    count = len(plan)

    def say(task: Task, text: str) -> None:
        done = sum(s == "complete" for s in status.values())
        print(f"[sweep {done}/{count}] {task.id}: {text}", flush=True)

    def settle(task: Task, new: str, run: Path | None) -> None:
        status[task.id] = new
        manifest.update(task.id, status=new, run_dir=None if run is None else str(run))

    try:
        while True:
            if stop.signum is None:
                for task in plan:
                    if status[task.id] != "pending":
                        continue
                    dep_states = {status[dep] for dep in task.deps}
                    if dep_states & {"failed", "blocked"}:
                        settle(task, "blocked", None)
                        say(task, "blocked: an input task failed")
                    elif dep_states <= {"complete"}:
                        run = task_run(out, task)
                        if is_complete(run):
                            settle(task, "complete", run)
                            say(task, f"complete in {run}, skipped")
                            continue
                        job = task_job(out, task, tasks, device, env or {})
                        running[backend.submit(job)] = (task, job)
                        settle(task, "submitted", run)
                        verb = "resume" if job.args[0] == "--resume" else "run"
                        say(task, f"queued to {verb} (starts when a slot is free), log {job.log}")
            if not running:
                break
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                task, job = running.pop(future)
                run = task_run(out, task)
                if future.cancelled() or (stop.signum is not None and future.exception() is not None):
                    settle(task, "pending", run)  # cancelled by the stop before it started
                    continue
                if future.exception() is not None:  # the backend lost it (e.g. a Ray node died)
                    outcome = f"lost by the backend ({future.exception()!r})"
                else:
                    attempt = future.result()
                    manifest.add_attempt(task.id, job, attempt)
                    outcome = f"exit code {attempt.exit_code}"
                    if attempt.exit_code == 0 and is_complete(run):
                        settle(task, "complete", run)
                        say(task, f"complete in {attempt.seconds:.1f} s on {attempt.host}")
                        continue
                    if stop.signum is not None and attempt.exit_code in INTERRUPT_CODES:
                        settle(task, "interrupted", run)
                        say(task, "interrupted (checkpointed)")
                        continue
                if failures[task.id] < retries and stop.signum is None:
                    failures[task.id] += 1
                    settle(task, "pending", run)
                    say(task, f"{outcome}; retry {failures[task.id]} of {retries}")
                else:
                    settle(task, "failed", run)
                    say(task, f"failed: {outcome}; see {job.log}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = {s: sum(v == s for v in status.values()) for s in sorted(set(status.values()))}
    print(f"[sweep] {', '.join(f'{n} {s}' for s, n in counts.items())}; manifest {manifest.path}", flush=True)
    if stop.signum is not None:
        return 128 + stop.signum
    return 0 if counts.get("complete", 0) == count else 1
