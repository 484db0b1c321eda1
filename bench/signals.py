"""Graceful stops for long loops: SIGINT/SIGTERM become a request to stop at the next safe point."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Stop(Exception):
    """Raised by a loop at a safe point after a stop request; ``signum`` gives the exit code 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_requests(unit: str = "iteration") -> Iterator[dict[str, int]]:
    """Within the block, SIGINT/SIGTERM set ``request["signum"]``; the loop checks it after each ``unit``.

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread nothing is installed.
    """
    request: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, _frame: Any) -> None:
        if "signum" in request and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request["signum"] = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name}: stopping after this {unit} (Ctrl-C again to abort now)", file=sys.stderr, flush=True
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
