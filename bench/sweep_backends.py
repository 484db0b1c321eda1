"""Where a sweep's commands run: a local process pool, or Ray tasks on a cluster.

Both backends run the same :func:`run_job` (one ``python -m bench.<module> ...`` subprocess, output appended
to a log file) and hand back a ``concurrent.futures.Future`` of its :class:`Attempt`, so the scheduler in
``bench.sweep_runner`` does not care which one it drives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from queue import Queue
from typing import Protocol

BACKENDS = ("local", "ray")
# The directory holding the ``bench`` package: subprocesses and Ray workers import this copy of the code.
CODE_ROOT = str(Path(__file__).resolve().parents[1])


class BackendError(RuntimeError):
    """A backend cannot be used (e.g. Ray missing or the cluster unreachable)."""


@dataclass(frozen=True)
class Job:
    """One command to run: ``python -m <module> <args>`` with its output appended to ``log``."""

    task_id: str
    module: str
    args: tuple[str, ...]
    log: str
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the subprocess."""


@dataclass(frozen=True)
class Attempt:
    """How one run of a job went."""

    host: str
    start: str
    end: str
    seconds: float
    exit_code: int
    cpus: tuple[int, ...] | None
    """Cores the process was pinned to (local backend), else None."""


class Backend(Protocol):
    """What ``bench.sweep_runner.run_sweep`` drives."""

    def describe(self) -> str: ...

    def submit(self, job: Job) -> Future: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_job(job: Job, cpus: tuple[int, ...] | None = None, on_start=None) -> Attempt:
    """Run ``job`` to its end; a KeyboardInterrupt here (Ray's cancel) is passed on to it as SIGINT."""
    argv = [sys.executable, "-m", job.module, *job.args]
    start, clock = _utc(), time.perf_counter()
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a") as log:
        log.write(f"\n# {start} on {socket.gethostname()}: {' '.join(argv)}\n")
        log.flush()
        # A child inherits the signal mask: Ray workers block SIGINT, and a blocked SIGINT would never
        # reach the run, so it is unblocked while the child is started.
        mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            # Own session: a Ctrl-C at the terminal reaches only the driver, which forwards one SIGINT.
            process = subprocess.Popen(
                argv,
                cwd=CODE_ROOT,
                env={**os.environ, **job.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if cpus is not None:
            # Pinned before the child has imported torch or Warp, so every thread it starts inherits it.
            with contextlib.suppress(ProcessLookupError):  # it may already have exited (a bad argument)
                os.sched_setaffinity(process.pid, cpus)
        if on_start is not None:
            on_start(process)
        try:
            # Short waits: Ray's cancel raises KeyboardInterrupt between them, never inside a blocking wait.
            while (exit_code := process.poll()) is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            exit_code = process.wait()
    seconds = time.perf_counter() - clock
    return Attempt(socket.gethostname(), start, _utc(), round(seconds, 3), exit_code, cpus)


class LocalBackend:
    """A pool of worker threads, each running one pinned subprocess at a time on its own set of cores."""

    def __init__(self, cpus_per_run: int = 1, workers: int | None = None) -> None:
        cores = sorted(os.sched_getaffinity(0))
        if cpus_per_run < 1 or cpus_per_run > len(cores):
            raise BackendError(
                f"--cpus-per-run must be in 1..{len(cores)} (the usable cores), got {cpus_per_run}"
            )
        slots = len(cores) // cpus_per_run
        self.workers = min(slots, workers) if workers else slots
        self._free: Queue[tuple[int, ...]] = Queue()
        for i in range(self.workers):
            self._free.put(tuple(cores[i * cpus_per_run : (i + 1) * cpus_per_run]))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sweep")
        self._running: set[subprocess.Popen] = set()
        self._futures: list[Future] = []
        self._lock = threading.Lock()
        self._stopping = False

    def describe(self) -> str:
        return f"local: {self.workers} processes at a time, pinned"

    def submit(self, job: Job) -> Future:
        with self._lock:
            self._stopping = False  # a sweep submits nothing after a stop: this is a new one
        self._futures = [f for f in self._futures if not f.done()]
        future = self._pool.submit(self._run, job)
        self._futures.append(future)
        return future

    def _run(self, job: Job) -> Attempt:
        cpus = self._free.get()
        try:
            return run_job(job, cpus, on_start=self._started)
        finally:
            with self._lock:
                self._running = {p for p in self._running if p.poll() is None}
            self._free.put(cpus)

    def _started(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.add(process)
            if self._stopping:  # the stop came while this process was starting
                process.send_signal(signal.SIGINT)

    def interrupt(self) -> None:
        """Cancel queued jobs; forward SIGINT to every running process (they checkpoint and exit 130)."""
        for future in self._futures:
            future.cancel()
        with self._lock:
            self._stopping = True
            for process in self._running:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Each job a Ray task with ``num_cpus``/``num_gpus`` on the cluster at ``address``.

    ``address=None`` starts a private local Ray instance (``num_cpus``: its size); ``"auto"`` or
    ``HOST:PORT`` joins a running cluster. Workers import the driver's copy of the code (``PYTHONPATH``), so
    on a multi-node cluster the checkout must sit at the same path on every node, like the sweep's ``--out``.
    """

    def __init__(
        self,
        address: str | None,
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        num_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise BackendError(
                "the ray backend needs Ray: pip install -e .[ray] (or pip install 'ray>=2.9')"
            ) from None
        self._ray = ray
        runtime_env = {
            "env_vars": {
                "PYTHONPATH": os.pathsep.join(filter(None, [CODE_ROOT, os.environ.get("PYTHONPATH")]))
            }
        }
        options = {} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started in the background by a shell: Ray's workers would inherit the ignored SIGINT, and
            # ray.cancel (how a stop reaches a running task) works through it.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise BackendError(f"could not connect to Ray at {address}: {error}") from None
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(run_job)
        self._refs: list = []

    def describe(self) -> str:
        resources = self._ray.cluster_resources()
        nodes = len([n for n in self._ray.nodes() if n.get("Alive")])
        return f"ray: {nodes} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"

    def submit(self, job: Job) -> Future:
        ref = self._remote.remote(job)
        self._refs.append(ref)
        return ref.future()

    def interrupt(self) -> None:
        """Cancel every task: queued ones never start, running ones get SIGINT through run_job."""
        for ref in self._refs:
            self._ray.cancel(ref)

    def close(self) -> None:
        self._ray.shutdown()
