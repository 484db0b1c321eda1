"""The run lifecycle every long command shares (``bench.run``, ``bench.pretrain``): create a run directory,
checkpoint, stop on a signal, record the outcome, resume, and the command-line dispatch around them.

- :func:`create_run`: a new run directory with its ``config.json`` (argv, start time, provenance).
- :func:`open_for_resume` / :func:`read_checkpoint` / :func:`record_resume`: the resume prologue; every
  input is read and validated before any file of the run is rewritten.
- :func:`save_checkpoint`: atomic, keeping the previous ``latest.pt`` as ``previous.pt`` (the fallback for
  a corrupt or truncated one).
- :func:`outcome`: SIGINT/SIGTERM become a stop at the next safe point; the block's exit says complete,
  interrupted (exit 130/143) or failed (exit 1).
- :func:`Progress`: the progress bar (on a terminal) and the console lines (in a pipeline, also the
  pipeline's overall progress line, ``bench.plan.StageClock``).

The command-line side (options from dataclasses, one-line errors) is ``bench.cli``.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench import plan, rundir
from bench.provenance import provenance
from bench.settings import ConfigError
from bench.signals import Stop, stop_requests

EXIT_FAILED = 1
COMMANDS = {"run": "bench.run", "pretrain": "bench.pretrain"}
RUN_KINDS = {"bench.run": "run directory", "bench.pretrain": "pretraining run directory"}


@dataclass
class RunResult:
    run_dir: Path | None
    """None for a dry run."""
    status: str
    """complete, interrupted, failed, or planned (a dry run)."""
    exit_code: int
    """0 complete, 130 SIGINT / KeyboardInterrupt, 143 SIGTERM, 1 failed."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def recorded_argv(argv: list[str] | None) -> list[str]:
    return list(sys.argv if argv is None else argv)


def command_of(config: dict[str, Any]) -> str:
    """The module that writes (and resumes) a run directory with this ``config.json``."""
    return COMMANDS["pretrain"] if config.get("algo") == rundir.PRETRAIN_ALGO else COMMANDS["run"]


def check_new_run(seed: int, out: str | Path) -> None:
    """ConfigError, before anything is built or written, for a seed outside [0, 2**32) or an ``out`` that
    is a file or cannot be created."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be in [0, 2**32), got {seed}")
    path = Path(out).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot create directories in {existing} (permission denied)")


def create_run(
    out: str | Path, config: dict[str, Any], kind: str, device: str, argv: list[str] | None
) -> Path:
    """Create ``out/<env>/<kind>/seed<k>_<time>/`` and write ``config`` there, completed with argv, start
    time, provenance and an empty resume list."""
    config.update(argv=recorded_argv(argv), started_utc=utc_now(), provenance=provenance(device), resumes=[])
    run_dir = rundir.new_run_dir(out, config["env"], kind, config["seed"])
    rundir.write_json(run_dir / rundir.CONFIG, config)
    print(f"run directory: {run_dir}")
    return run_dir


def _read_json_file(path: Path) -> Any:
    try:
        return rundir.read_json(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is unreadable or not JSON ({error}); the run cannot be resumed") from error


def open_for_resume(run_dir: str | Path, command: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(config.json, summary.json or None) of a run directory ``command`` (``bench.run`` or
    ``bench.pretrain``) resumes; ConfigError naming the right command for another kind of directory."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a {RUN_KINDS[command]} (no {rundir.CONFIG})")
    config = _read_json_file(run_dir / rundir.CONFIG)
    if not isinstance(config, dict) or "algo" not in config or "settings" not in config:
        raise ConfigError(f"{run_dir / rundir.CONFIG} is not a warpbench run config")
    owner = command_of(config)
    if owner != command:
        raise ConfigError(
            f"{run_dir} is a {owner} run directory; resume it with python -m {owner} --resume {run_dir}"
        )
    summary_path = run_dir / rundir.SUMMARY
    summary = _read_json_file(summary_path) if summary_path.exists() else None
    if summary is not None and not isinstance(summary, dict):
        raise ConfigError(f"{summary_path} is not a run summary")
    return config, summary


def _load(path: Path) -> dict[str, Any]:
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        raise ValueError("not a checkpoint dict")
    return state


def read_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """``checkpoints/latest.pt``, or ``previous.pt`` with a warning when latest.pt is missing or corrupt."""
    latest, previous = rundir.checkpoint(run_dir), rundir.checkpoint(run_dir, rundir.PREVIOUS)
    if not latest.exists() and not previous.exists():
        raise ConfigError(f"{run_dir} has no checkpoint to resume from ({latest})")
    try:
        return _load(latest)
    except Exception as error:  # a truncated or garbage file fails in many ways inside torch.load
        if not previous.exists():
            raise ConfigError(
                f"{latest} is unreadable ({error}) and there is no {rundir.PREVIOUS}"
            ) from error
        print(f"warning: {latest} is unreadable ({error}); resuming from {previous}", file=sys.stderr)
    try:
        return _load(previous)
    except Exception as error:
        raise ConfigError(f"{latest} and {previous} are both unreadable ({error})") from error


def record_resume(
    run_dir: Path, config: dict[str, Any], device: str, argv: list[str] | None, **position: Any
) -> None:
    """Append this session to ``config["resumes"]`` (``position``: where it goes on); rewrite config.json."""
    config.setdefault("resumes", []).append(
        {
            "argv": recorded_argv(argv),
            **position,
            "device": device,
            "utc": utc_now(),
            "provenance": provenance(device),
        }
    )
    rundir.write_json(run_dir / rundir.CONFIG, config)


def save_checkpoint(run_dir: Path, state: dict[str, Any], final: bool = False) -> None:
    """Write ``state`` as ``latest.pt`` (and ``final.pt``), atomically; the last latest.pt becomes
    ``previous.pt``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    latest = rundir.checkpoint(run_dir)
    if latest.exists():
        os.replace(latest, rundir.checkpoint(run_dir, rundir.PREVIOUS))
    rundir.atomic_write_bytes(latest, buffer.getvalue())
    if final:
        rundir.atomic_write_bytes(rundir.checkpoint(run_dir, rundir.FINAL), buffer.getvalue())


@dataclass
class Outcome:
    status: str = "complete"
    exit_code: int = 0
    error: str | None = None
    stop: dict[str, int] | None = None
    """Set inside the block: ``"signum"`` appears once a stop was requested (see :meth:`check`)."""
    signalled: bool = False
    """Stopped at a safe point (a checkpoint can be written) rather than by a second Ctrl-C."""

    def check(self) -> None:
        """Raise Stop at a safe point if a stop was requested."""
        if self.stop is not None and "signum" in self.stop:
            raise Stop(self.stop["signum"])


@contextmanager
def outcome(unit: str) -> Iterator[Outcome]:
    """Run a training loop; Stop, KeyboardInterrupt and FloatingPointError (persistent nan/inf gradients)
    end the block and are recorded in the yielded :class:`Outcome`; anything else propagates."""
    result = Outcome()
    try:
        with stop_requests(unit) as stop:
            result.stop = stop
            yield result
    except Stop as stopped:
        result.status, result.exit_code, result.signalled = "interrupted", 128 + stopped.signum, True
    except KeyboardInterrupt:
        result.status, result.exit_code = "interrupted", 128 + signal.SIGINT
    except FloatingPointError as failure:
        result.status, result.exit_code, result.error = "failed", EXIT_FAILED, str(failure)
        print(f"run failed: {failure}; last good checkpoint kept", file=sys.stderr, flush=True)


class Progress:
    """A progress bar on a terminal, plus console lines that do not break it; with a ``clock`` (a pipeline
    stage) a line with the pipeline's overall progress and ETA every tenth of the stage."""

    def __init__(self, total: int, initial: int, unit: str, clock: plan.StageClock | None = None) -> None:
        self.bar = tqdm(total=total, initial=initial, unit=unit, disable=not sys.stdout.isatty(), leave=False)
        self.total, self.initial, self.position = total, initial, initial
        self.clock = clock
        self.start = time.perf_counter()

    def advance(self) -> None:
        """One unit done."""
        self.bar.update(1)
        self.position += 1
        if self.clock is not None and self.clock.due(self.position, self.total):
            done, elapsed = self.position - self.initial, time.perf_counter() - self.start
            self.line(self.clock.line(self.position, self.total, done, elapsed))

    def line(self, text: str) -> None:
        (self.bar.write if not self.bar.disable else print)(text)
        sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()


def interrupted_hint(run_dir: Path, command: str, position: str | None) -> None:
    """The console line after an interrupt: where ``--resume`` continues (None: nothing checkpointed)."""
    if position is None:
        print("interrupted; no checkpoint was written")
    else:
        print(f"interrupted; continue from {position} with python -m {command} --resume {run_dir}")
