"""Loading what ``bench.landscape`` analyses: a SHAC policy (actor, critic, observation normaliser) and a
world model, through the public checkpoint formats. The one place to adapt when those formats change.

Accepted policy sources: a ``bench.run`` run directory (``checkpoints/final.pt``, else ``latest.pt``), a
harness checkpoint file, or a slim file written by :func:`export_policy`. World models: a ``bench.pretrain``
checkpoint (``algos.wm_training.load_world_model_checkpoint``), e.g. a slim one from
:func:`export_world_model`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from algos.atomic import atomic_write_bytes
from algos.landscape.objectives import Policy, WorldModelObjective
from algos.networks import CriticEnsemble, StochasticActor
from algos.normalizers import RunningMeanStd
from algos.shac import SHACConfig
from algos.wm_training import load_world_model_checkpoint, world_model_checkpoint
from algos.world_model import WorldModel
from bench.presets import published_config

AT_CHOICES = ("final", "init")
POLICY_FORMAT = "warpbench-landscape-policy"
CHECKPOINT_NAMES = ("final.pt", "latest.pt")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load(path: Path) -> Any:
    return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)


def _resolve_checkpoint(source: str | Path) -> tuple[Path, str | None]:
    """(checkpoint file, env name from the run's config.json if there is one)."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"policy checkpoint {path} does not exist")
    run_dir = path if path.is_dir() else path.parent.parent
    env = None
    if (run_dir / "config.json").exists():
        config = json.loads((run_dir / "config.json").read_text())
        if config.get("algo") not in (None, "shac"):
            raise ValueError(
                f"{run_dir} is a {config['algo']} run; a SHAC run is needed (its actor reads observations)"
            )
        env = config.get("env")
    if path.is_dir():
        found = [
            path / "checkpoints" / name for name in CHECKPOINT_NAMES if (path / "checkpoints" / name).exists()
        ]
        if not found:
            raise FileNotFoundError(f"{path} has no checkpoints/{' or checkpoints/'.join(CHECKPOINT_NAMES)}")
        path = found[0]
    return path, env


def _policy_state(checkpoint: Path) -> dict[str, Any]:
    """The SHAC trainer state (config, actor, critic, obs_rms) of a harness or slim checkpoint."""
    state = _load(checkpoint)
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint} is not a warpbench checkpoint")
    if state.get("format") == POLICY_FORMAT:
        return state
    trainer = state.get("trainer")
    if not isinstance(trainer, dict) or "actor" not in trainer:
        raise ValueError(f"{checkpoint} is not a bench.run checkpoint (no trainer actor)")
    if "world_model" in trainer or "obs_rms" not in trainer:
        raise ValueError(
            f"{checkpoint} is not a SHAC checkpoint (a PWM actor reads latents, not observations)"
        )
    return {key: trainer[key] for key in ("config", "actor", "critic", "obs_rms")}


@dataclass
class PolicyInputs:
    policy: Policy
    env: str | None
    """The env the checkpoint was trained on (None when unknown)."""
    info: dict[str, Any]
    """Provenance for config.json: path, sha256, which θ, actor settings."""


def load_policy(
    source: str | Path | None,
    at: str,
    env_name: str,
    obs_dim: int,
    act_dim: int,
    seed: int,
    device: str = "cpu",
) -> PolicyInputs:
    """The policy θ (``at``: the checkpoint's actor, or a fresh one initialised with ``seed``) and the
    objective's fixed parts from ``source`` (critic and observation normaliser; ``source`` None: a fresh
    actor of the published SHAC architecture for ``env_name``, raw observations, no critic)."""
    if at not in AT_CHOICES:
        raise ValueError(f"at must be one of {', '.join(AT_CHOICES)}, got {at!r}")
    if source is None and at != "init":
        raise ValueError("a policy checkpoint is needed unless at = 'init'")
    env = None
    info: dict[str, Any] = {"at": at, "init_seed": seed if at == "init" else None}
    if source is None:
        config = published_config("shac", "pwm", env_name)[0]
        state = None
    else:
        checkpoint, env = _resolve_checkpoint(source)
        if env is not None and env != env_name:
            raise ValueError(f"policy {source} was trained on {env}, not {env_name}")
        state = _policy_state(checkpoint)
        config = SHACConfig.from_dict(state["config"])
        info.update(path=str(checkpoint), sha256=sha256(checkpoint))
        env = env or state.get("env")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        actor = StochasticActor(obs_dim, act_dim, config.actor_hidden, config.activation, config.logstd_init)
    obs_rms = critic = None
    if state is not None:
        first = state["actor"]["mean_net.0.weight"]
        if tuple(first.shape[1:]) != (obs_dim,) or state["actor"]["logstd"].shape[0] != act_dim:
            raise ValueError(
                f"policy {source} has obs/act dims {first.shape[1]}/{state['actor']['logstd'].shape[0]}, "
                f"{env_name} has {obs_dim}/{act_dim}"
            )
        if at == "final":
            actor.load_state_dict(state["actor"])
        critic = CriticEnsemble(obs_dim, config.critic_hidden, config.activation, config.num_critics)
        critic.load_state_dict(state["critic"])
        if state["obs_rms"] is not None:
            obs_rms = RunningMeanStd((obs_dim,))
            obs_rms.load_state_dict(state["obs_rms"])
    for module in (actor, critic, obs_rms):
        if module is not None:
            module.to(device).requires_grad_(False)
    info["actor_config"] = {k: config.to_dict()[k] for k in ("actor_hidden", "activation", "critic_hidden")}
    info["critic"] = critic is not None
    return PolicyInputs(Policy(actor.mean_net, obs_rms, critic, config.gamma), env, info)


@dataclass
class WorldModelInputs:
    model: WorldModel
    reward_mean: float
    reward_std: float
    info: dict[str, Any]


def load_world_model(
    path: str | Path, env_name: str, obs_dim: int, act_dim: int, device: str = "cpu"
) -> WorldModelInputs:
    """A ``bench.pretrain`` world model, frozen, checked against the env's observation/action sizes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"world-model checkpoint {path} does not exist")
    trainer, data = load_world_model_checkpoint(path, device)
    model = trainer.world_model.requires_grad_(False).eval()
    if (model.obs_dim, model.act_dim) != (obs_dim, act_dim):
        raise ValueError(
            f"world model {path} is for obs/act dims {model.obs_dim}/{model.act_dim}, "
            f"{env_name} has {obs_dim}/{act_dim}"
        )
    if model.config.num_tasks:
        raise ValueError(f"world model {path} is multi-task; a single-task model is needed")
    mean, std = (0.0, 1.0)
    if trainer.rew_rms is not None:
        mean, std = WorldModelObjective.reward_scale(trainer.rew_rms)
    info = {
        "path": str(path),
        "sha256": sha256(path),
        "config": model.config.to_dict(),
        "train_steps": trainer.steps,
        "data": data,
    }
    return WorldModelInputs(model, mean, std, info)


def export_policy(source: str | Path, out: str | Path) -> Path:
    """Write the actor, critic, observation normaliser and SHAC config of a run's checkpoint to ``out``
    (no optimiser, RNG or env state): the small input a published analysis commits."""
    checkpoint, env = _resolve_checkpoint(source)
    state = _policy_state(checkpoint)
    slim = {"format": POLICY_FORMAT, "env": env, "source_sha256": sha256(checkpoint), **state}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    os.chmod(out, 0o644)  # a committed input, not a private temporary file
    return Path(out)


def export_world_model(path: str | Path, out: str | Path) -> Path:
    """Rewrite a world-model checkpoint without its optimiser moments (a fresh Adam state): same model,
    reward normaliser and data record, about a third of the size."""
    trainer, data = load_world_model_checkpoint(path)
    trainer.optimizer = torch.optim.Adam(trainer.world_model.parameters(), lr=trainer.config.lr)
    buffer = io.BytesIO()
    torch.save(world_model_checkpoint(trainer, {**data, "source_sha256": sha256(path)}), buffer)
    atomic_write_bytes(out, buffer.getvalue())
    os.chmod(out, 0o644)  # a committed input, not a private temporary file
    return Path(out)
