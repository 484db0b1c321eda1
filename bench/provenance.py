"""Where and with what a run ran: package versions, hardware, git state (for ``config.json``)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "warp-lang", "newton", "mujoco", "numpy", "scipy")
SOURCE_DIR = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    """Python and key package versions ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _command_output(command: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def device_info(device: str) -> dict[str, Any]:
    """CPU model, cores and torch threads; plus GPU model, driver and CUDA version for a CUDA device."""
    info: dict[str, Any] = {
        "device": device,
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu_model"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
        driver = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        info["gpu_driver"] = driver.splitlines()[0] if driver else "unknown"
    return info


def git_state(source_dir: Path = SOURCE_DIR) -> dict[str, Any]:
    """Commit SHA and dirty flag of the checkout holding the code. A copy without ``.git`` (an exported
    tree on a remote worker or in a container) takes the commit from ``$WARPBENCH_GIT_COMMIT``, set by
    whoever copied it, with ``dirty`` unknown; else both are "unknown"."""
    commit = _command_output(["git", "rev-parse", "HEAD"], cwd=source_dir)
    if not commit:
        return {"commit": os.environ.get("WARPBENCH_GIT_COMMIT") or "unknown", "dirty": "unknown"}
    status = _command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source_dir)
    return {"commit": commit, "dirty": "unknown" if status is None else bool(status)}


def provenance(device: str) -> dict[str, Any]:
    """Everything above, plus the interpreter path."""
    return {
        "versions": package_versions(),
        "device": device_info(device),
        "git": git_state(),
        "python_executable": sys.executable,
    }
