"""Warp initialisation with the kernel cache in a project-controlled directory.

The cache lives in ``$WARPBENCH_CACHE_DIR/warp`` (default ``~/.cache/warpbench/warp``), so a test run,
a benchmark and a training run share compiled kernels and each kernel is compiled once per machine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import warp as wp

_initialised = False


def cache_dir() -> Path:
    """The warpbench cache root: ``$WARPBENCH_CACHE_DIR`` or ``~/.cache/warpbench``."""
    root = os.environ.get("WARPBENCH_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "warpbench"


def init_warp() -> None:
    """Point Warp's kernel cache at ``cache_dir()/warp`` and initialise Warp (idempotent)."""
    global _initialised
    if not _initialised:
        wp.config.kernel_cache_dir = str(cache_dir() / "warp")
        wp.config.log_level = logging.WARNING  # no init banner or per-module load lines
        wp.init()
        _initialised = True
