"""``python -m bench.collect``: record episodes of a random or a saved policy into an episode dataset.

The output directory is an ``algos.dataset`` dataset (what ``bench.run --save-data`` writes and
``bench.pretrain`` reads) plus ``collect.json`` (policy, seeds, env steps taken). The first K episodes to
finish are kept (short, e.g. early-terminated, episodes finish first); the env steps of unfinished episodes
are counted in ``collect.json`` but not stored.

Policies: ``--random`` draws actions uniformly in [-1, 1]; ``--policy`` loads a ``bench.run`` checkpoint
(a run directory: its ``checkpoints/final.pt``, else ``latest.pt``; or a checkpoint file inside one) and acts
with the trainer's ``act`` (stochastic unless ``--deterministic``). ``action_raw`` is stored as
atanh(action), clamped to |action| <= 1 - 1e-6.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import envs
from algos.dataset import INDEX, DatasetWriter, EpisodeRecorder
from bench import cli, plan, rundir
from bench.algorithms import build_trainer
from bench.inputs import load_inputs
from bench.presets import env_overrides
from bench.settings import ConfigError, apply_overrides

CHUNK_EPISODES = 64
Policy = Callable[[torch.Tensor], torch.Tensor]


def random_policy(act_dim: int, seed: int, device: str) -> Policy:
    """Uniform actions in [-1, 1] from a generator seeded with ``seed``."""
    generator = torch.Generator(device=device).manual_seed(seed)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return torch.rand(obs.shape[0], act_dim, generator=generator, device=device) * 2.0 - 1.0

    return policy


def checkpoint_policy(path: str | Path, deterministic: bool, device: str) -> tuple[Policy, dict[str, Any]]:
    """(the trainer's ``act``, the run's config.json) for a ``bench.run`` run directory or checkpoint file."""
    path = Path(path)
    if path.is_dir():
        final = rundir.checkpoint(path, rundir.FINAL)
        path = final if final.exists() else rundir.checkpoint(path)
    if not path.is_file():
        raise ConfigError(f"no policy checkpoint at {path}")
    run_dir = path.parent.parent
    if not (run_dir / rundir.CONFIG).exists():
        raise ConfigError(f"{path} is not inside a bench.run run directory (no {run_dir / rundir.CONFIG})")
    config = rundir.read_json(run_dir / rundir.CONFIG)
    settings = config["settings"]
    # The trainer's state includes its training env's state, so build it on an env of the recorded shape.
    train_env = envs.make(
        config["env"], num_envs=settings["env"]["num_envs"], device=device, **env_overrides(settings)
    )
    inputs = load_inputs(config.get("inputs", {}))
    trainer = build_trainer(config["algo"], train_env, settings["algo"], config["seed"], inputs)
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)
    trainer.load_state_dict(state["trainer"])
    return (lambda obs: trainer.act(obs, deterministic=deterministic)), config


@torch.no_grad()
def collect(env: Any, policy: Policy, episodes: int, writer: DatasetWriter, progress: bool = False) -> int:
    """Run ``policy`` on ``env`` until ``episodes`` episodes have finished; write them; return env steps."""
    recorder = EpisodeRecorder(env.num_envs)
    obs = env.reset()
    kept = steps = 0
    pending = []
    bar = tqdm(total=episodes, unit="ep", disable=not progress, leave=False)
    while kept < episodes:
        action = policy(obs).clamp(-1.0, 1.0)
        action_raw = torch.atanh(action.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        next_obs, reward, terminated, truncated, info = env.step(action)
        final_obs, would_terminate = info["obs_before_reset"], info.get("would_terminate")
        recorder.add_step(
            obs, action, action_raw, reward, final_obs, terminated, truncated, 0, would_terminate
        )
        steps += env.num_envs
        finished = recorder.pop_finished()[: episodes - kept - len(pending)]
        pending += finished
        bar.update(len(finished))
        if len(pending) >= CHUNK_EPISODES or kept + len(pending) == episodes:
            writer.write_chunk(pending)
            kept += len(pending)
            pending = []
        obs = next_obs
    bar.close()
    return steps


def measure_collection(env: Any, policy: Policy, episodes: int) -> plan.Stage:
    """The plan's stage of a collection: a few batched steps of ``policy`` on ``env`` (both throwaway
    copies: the recording's env and policy streams are untouched), timed. Each env finishes at least one
    episode per ``max_episode_steps`` steps, so the step count is an upper bound."""
    obs = env.reset()
    with torch.no_grad(), plan.isolated(None):
        per_step = plan.seconds_per_call(
            lambda: env.step(policy(obs).clamp(-1.0, 1.0)), env.max_episode_steps
        )
    steps = math.ceil(episodes / env.num_envs) * env.max_episode_steps
    return plan.Stage("collection (at most)", "batch step", steps, per_step, env_steps=steps * env.num_envs)


@dataclass
class CollectOptions(cli.Options):
    env: str = field(default="", metadata=cli.option(required=True))
    """Registered env name."""
    episodes: int = field(default=0, metadata=cli.option(required=True))
    """Episodes to record (K >= 1)."""
    policy: str | None = field(default=None, metadata=cli.option(metavar="CHECKPOINT"))
    """A bench.run run directory or checkpoint file (this or --random)."""
    random: bool = False
    """Uniform random actions in [-1, 1] (this or --policy)."""
    out: str = field(default="", metadata=cli.option(metavar="DATA_DIR", required=True))
    """New dataset directory."""
    num_envs: int = 16
    """Parallel envs."""
    seed: int = 0
    """Env and random-policy seed."""
    device: str = "cpu"
    """torch/warp device."""
    deterministic: bool = False
    """Act with tanh(mu) (with --policy)."""
    overrides: list[str] = field(default_factory=list, metadata=cli.option(flag="--set", metavar="KEY=VALUE"))
    """Env override passed to envs.make, repeatable: env.NAME=VALUE (or NAME=VALUE), VALUE parsed and
    checked by the env's settings table (the grammar of bench.run --set); e.g. --set
    env.early_termination=false."""
    dry_run: bool = False
    """Print the plan (env steps at most, device, estimated time from a few measured steps) and exit
    without writing the dataset."""


def build_parser(env_names: list[str]) -> argparse.ArgumentParser:
    return cli.build_parser(
        CollectOptions,
        {"env": env_names},
        prog="python -m bench.collect",
        description="Record episodes of a random or saved policy into an episode dataset directory.",
        epilog="example: python -m bench.collect --env ant --episodes 64 --random --out data/ant_random\n"
        "exit codes: 0 done, 1 failed, 2 invalid arguments",
    )


def _command(args: CollectOptions, argv: list[str]) -> int:
    if (args.policy is None) == (not args.random):
        raise ConfigError("give exactly one of --policy CHECKPOINT and --random")
    out = Path(args.out)
    if args.episodes < 1 or args.num_envs < 1:
        raise ConfigError("--episodes and --num-envs must be >= 1")
    if (out / INDEX).exists():
        raise ConfigError(f"{out} already holds a dataset; choose a new --out")
    overrides = apply_overrides({"env": {}}, args.overrides, args.env)["env"]
    try:
        env = envs.make(args.env, num_envs=args.num_envs, device=args.device, seed=args.seed, **overrides)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"cannot make env {args.env!r}: {error}") from error
    if args.random:
        policy = random_policy(env.act_dim, args.seed, args.device)
    else:
        policy, run_config = checkpoint_policy(args.policy, args.deterministic, args.device)
        if run_config["env"] != args.env:
            raise ConfigError(f"the policy was trained on {run_config['env']!r}, not {args.env!r}")
    # The plan's warm-up runs on copies: another env and a policy of its own (its own noise stream).
    copy = envs.make(args.env, num_envs=args.num_envs, device=args.device, seed=args.seed + 1, **overrides)
    if args.random:
        warmup_policy = random_policy(env.act_dim, args.seed + 1, args.device)
    else:
        warmup_policy, _ = checkpoint_policy(args.policy, args.deterministic, args.device)
    stage = measure_collection(copy, warmup_policy, args.episodes)
    print(plan.Plan(f"bench.collect --env {args.env}", args.device, (stage,)).format(), flush=True)
    if args.dry_run:
        return 0
    info = {
        "source": "bench.collect",
        "policy": "random" if args.random else str(Path(args.policy).resolve()),
        "deterministic": args.deterministic,
        "seed": args.seed,
        "num_envs": args.num_envs,
        "env_overrides": overrides,
        "argv": argv,
    }
    writer = DatasetWriter(out, env=args.env, obs_dim=env.obs_dim, act_dim=env.act_dim, metadata=info)
    steps = collect(env, policy, args.episodes, writer, progress=sys.stdout.isatty())
    index = writer.index
    rundir.write_json(
        out / rundir.COLLECT_INFO,
        {
            **info,
            "episodes": index["num_episodes"],
            "transitions": index["num_transitions"],
            "env_steps": steps,
        },
    )
    print(
        f"{out}: {index['num_episodes']} episodes, {index['num_transitions']} transitions ({steps} env steps)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(CollectOptions, build_parser(envs.names()), argv, _command)


if __name__ == "__main__":
    sys.exit(main())
