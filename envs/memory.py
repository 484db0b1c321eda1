"""Up-front memory estimate of a batch of envs, so that an impossible ``num_envs`` fails before allocating."""

from __future__ import annotations

import os

import torch

_FLOAT = 8  # the engine computes in float64


def _substep_floats(num_links: int, nq: int, nv: int) -> int:
    # Per env, one substep's intermediates: per link a transform (7), five spatial vectors (30), a
    # vec3 (3) and a 3x3 (9); per dof a spatial vector (6) and tau, qdd, qd; the state q.
    return 49 * num_links + 9 * nv + nq


def _mass_floats(num_links: int, nv: int) -> int:
    # Per env, one mass-matrix refresh: H and its factor L, and per link a mass, a vec3 and a 3x3.
    return 2 * nv * nv + 13 * num_links


def estimate_bytes(model, num_envs: int) -> tuple[int, int]:
    """(bytes to make and step ``num_envs`` envs without gradients, extra bytes once a backward runs).

    Counts the engine's per-env buffers (three substep sets and one mass-matrix set forward; every
    substep and refresh twice, value and gradient, for the taped backward) plus the env's own state.
    """
    nl, nq, nv = model.num_links, model.nq, model.nv
    refreshes = -(-model.params.substeps // model.params.mass_matrix_interval)
    substep, mass = _substep_floats(nl, nq, nv), _mass_floats(nl, nv)
    muscles = max(model.muscle_count, 1)
    env_state = 4 * (nq + nv) + 2 * (nv + muscles)  # q, qd, observations, actions, forces (torch side)
    forward = 3 * substep + mass + nv + muscles + env_state
    backward = 2 * ((model.params.substeps + 1) * substep + refreshes * mass + nv + muscles)
    return forward * _FLOAT * num_envs, backward * _FLOAT * num_envs


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free memory, or the host's MemAvailable (Linux; else free pages)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(model, num_envs: int, device: torch.device) -> None:
    """Raise ValueError with the estimate and the available memory when ``num_envs`` envs cannot fit."""
    forward, backward = estimate_bytes(model, num_envs)
    available = available_bytes(device)
    if forward > available:
        gib = 2**30
        per_env = forward / num_envs
        raise ValueError(
            f"num_envs={num_envs} needs an estimated {forward / gib:.1f} GiB on {device} "
            f"({backward / gib:.1f} GiB more for gradients), but only {available / gib:.1f} GiB is "
            f"available; at most about {int(available // per_env)} envs fit"
        )
