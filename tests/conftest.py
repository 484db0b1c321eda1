"""Test session setup: the SNU data files come from ../shared/assets/snu unless WARPBENCH_SNU_DIR is set."""

from __future__ import annotations

import os
from pathlib import Path

_SHARED_SNU = Path(__file__).resolve().parents[2] / "shared" / "assets" / "snu"
if "WARPBENCH_SNU_DIR" not in os.environ and _SHARED_SNU.is_dir():
    os.environ["WARPBENCH_SNU_DIR"] = str(_SHARED_SNU)
