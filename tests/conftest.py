"""Test session setup: the SNU data files come from ../shared/assets/snu unless WARPBENCH_SNU_DIR is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

_SHARED_SNU = Path(__file__).resolve().parents[2] / "shared" / "assets" / "snu"
if "WARPBENCH_SNU_DIR" not in os.environ and _SHARED_SNU.is_dir():
    os.environ["WARPBENCH_SNU_DIR"] = str(_SHARED_SNU)


# One torch thread from the start, not only inside each test: module-scoped fixtures (the pretrained toy
# models) run before function fixtures, and with the machine's thread count their rounding, and so the
# fragile offline toy test, would depend on how many cores the machine has.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny networks run fastest on one torch thread, and tests do not fight over shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
