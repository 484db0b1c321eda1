"""Episode datasets recorded from training rollouts (SHAC ``--save-data``), read back by PWM.

Format ``warpbench-episodes`` version 1, a directory (``RUN_DIR/data/``) holding::

    dataset.json        index: format, version, env, obs_dim, act_dim, num_episodes, num_transitions,
                        metadata (e.g. the env settings), chunks [{file, episodes, transitions,
                        first_episode_id}]. Only chunks listed here belong to the dataset.
    chunk_000000.npz    whole episodes, appended once per training iteration in which any finished

Inside a chunk, episodes are concatenated row-wise. An episode of T transitions has T + 1 rows; row j holds
the observation s_j and, for j >= 1, the transition s_{j-1} -> s_j that led to it (PWM buffer convention):

    obs          float32 [R, obs_dim]   s_j (row T is the observation before any auto-reset)
    action       float32 [R, act_dim]   squashed action applied to the env (NaN in row 0)
    action_raw   float32 [R, act_dim]   pre-tanh sample of the actor (NaN in row 0)
    reward       float32 [R]            env reward (NaN in row 0)
    epoch        int64   [R]            training iteration that produced the row
    would_terminate  bool [R]           the env's termination condition at s_j (False in row 0), recorded
                                        even when early termination was off and the episode went on;
                                        optional: datasets written before it existed lack it (None)
    episode_id, episode_length (T), episode_terminated, episode_truncated: one entry per episode [E]

Files are written atomically (temporary file + ``os.replace``), the index after its chunk, so a crash never
leaves a listed chunk half-written.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algos.atomic import atomic_write_bytes

FORMAT = "warpbench-episodes"
VERSION = 1
INDEX = "dataset.json"
ROW_FIELDS = ("obs", "action", "action_raw", "reward", "epoch")


@dataclass
class Episode:
    """One finished episode in the row layout of the module docstring."""

    obs: np.ndarray
    action: np.ndarray
    action_raw: np.ndarray
    reward: np.ndarray
    epoch: np.ndarray
    terminated: bool
    truncated: bool
    would_terminate: np.ndarray | None = None
    """[T + 1] bool (see the module docstring); None when the env did not report it."""

    @property
    def length(self) -> int:
        return self.obs.shape[0] - 1


class EpisodeRecorder:
    """Collects per-env rows of a batched rollout and emits whole episodes when an env finishes."""

    def __init__(self, num_envs: int) -> None:
        self._partial: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(num_envs)]
        self._finished: list[Episode] = []

    @torch.no_grad()
    def add_step(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        action_raw: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        epoch: int,
        would_terminate: torch.Tensor | None = None,
    ) -> None:
        """Record one env step: ``obs`` before it, ``next_obs`` = ``info["obs_before_reset"]`` after it,
        ``would_terminate`` = ``info.get("would_terminate")`` (None: the env does not report it)."""

        def host(x: torch.Tensor) -> np.ndarray:
            return x.detach().to("cpu", torch.float32).numpy()

        obs_np, next_np, act_np, raw_np, rew_np = map(host, (obs, next_obs, action, action_raw, reward))
        term_np = terminated.cpu().numpy()
        trunc_np = truncated.cpu().numpy()
        would_np = would_terminate.cpu().numpy() if would_terminate is not None else None
        no_action = np.full(act_np.shape[1], np.nan, dtype=np.float32)
        for i, rows in enumerate(self._partial):
            if not rows:
                rows.append((obs_np[i], no_action, no_action, np.float32(np.nan), epoch, False))
            would = bool(would_np[i]) if would_np is not None else None
            rows.append((next_np[i], act_np[i], raw_np[i], rew_np[i], epoch, would))
            if term_np[i] or trunc_np[i]:
                self._finished.append(_assemble(rows, bool(term_np[i]), bool(trunc_np[i])))
                self._partial[i] = []

    def pop_finished(self) -> list[Episode]:
        """The episodes finished since the last call."""
        finished, self._finished = self._finished, []
        return finished

    def state_dict(self) -> dict[str, Any]:
        """Unfinished episodes and finished ones not yet popped."""
        return {
            "partial": [[tuple(row) for row in rows] for rows in self._partial],
            "finished": self._finished,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._partial = [list(rows) for rows in state["partial"]]
        self._finished = list(state["finished"])


def _assemble(rows: list[tuple[np.ndarray, ...]], terminated: bool, truncated: bool) -> Episode:
    obs, action, action_raw, reward, epoch, would = zip(*rows, strict=True)
    known = all(flag is not None for flag in would[1:])
    return Episode(
        obs=np.stack(obs),
        action=np.stack(action),
        action_raw=np.stack(action_raw),
        reward=np.asarray(reward, dtype=np.float32),
        epoch=np.asarray(epoch, dtype=np.int64),
        terminated=terminated,
        truncated=truncated,
        would_terminate=np.asarray(would, dtype=bool) if known else None,
    )


class DatasetWriter:
    """Appends chunks of episodes to a dataset directory; reopening an existing directory continues it."""

    def __init__(
        self,
        directory: str | Path,
        env: str,
        obs_dim: int,
        act_dim: int,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        index_path = self.directory / INDEX
        if index_path.exists():
            self.index = json.loads(index_path.read_text())
        else:
            self.index = {
                "format": FORMAT,
                "version": VERSION,
                "env": env,
                "obs_dim": obs_dim,
                "act_dim": act_dim,
                "num_episodes": 0,
                "num_transitions": 0,
                "metadata": metadata or {},
                "chunks": [],
            }
            self._write_index()

    def write_chunk(self, episodes: list[Episode]) -> None:
        """Write ``episodes`` as the next chunk (nothing if the list is empty), then update the index."""
        if not episodes:
            return
        first_id = self.index["num_episodes"]
        arrays = {name: np.concatenate([getattr(ep, name) for ep in episodes]) for name in ROW_FIELDS}
        if all(ep.would_terminate is not None for ep in episodes):
            arrays["would_terminate"] = np.concatenate([ep.would_terminate for ep in episodes])
        arrays["episode_id"] = np.arange(first_id, first_id + len(episodes), dtype=np.int64)
        arrays["episode_length"] = np.array([ep.length for ep in episodes], dtype=np.int64)
        arrays["episode_terminated"] = np.array([ep.terminated for ep in episodes], dtype=bool)
        arrays["episode_truncated"] = np.array([ep.truncated for ep in episodes], dtype=bool)
        name = f"chunk_{len(self.index['chunks']):06d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.directory / name, buffer.getvalue())
        transitions = int(arrays["episode_length"].sum())
        self.index["chunks"].append(
            {
                "file": name,
                "episodes": len(episodes),
                "transitions": transitions,
                "first_episode_id": first_id,
            }
        )
        self.index["num_episodes"] += len(episodes)
        self.index["num_transitions"] += transitions
        self._write_index()

    def state_dict(self) -> dict[str, Any]:
        return {"num_chunks": len(self.index["chunks"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Forget chunks written after the checkpoint that produced ``state`` (resume)."""
        keep = state["num_chunks"]
        for chunk in self.index["chunks"][keep:]:
            (self.directory / chunk["file"]).unlink(missing_ok=True)
        self.index["chunks"] = self.index["chunks"][:keep]
        self.index["num_episodes"] = sum(c["episodes"] for c in self.index["chunks"])
        self.index["num_transitions"] = sum(c["transitions"] for c in self.index["chunks"])
        self._write_index()

    def _write_index(self) -> None:
        atomic_write_bytes(self.directory / INDEX, (json.dumps(self.index, indent=2) + "\n").encode())


@dataclass
class EpisodeDataset:
    """All episodes of a dataset as flat row arrays plus episode boundaries."""

    obs: np.ndarray
    action: np.ndarray
    action_raw: np.ndarray
    reward: np.ndarray
    epoch: np.ndarray
    episode_id: np.ndarray
    episode_start: np.ndarray
    """Row index of each episode's first observation."""
    episode_length: np.ndarray
    """Transitions per episode (the episode spans episode_length + 1 rows)."""
    episode_terminated: np.ndarray
    episode_truncated: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    """The parsed ``dataset.json``."""
    path: str | None = None
    """The resolved directory it was loaded from (None: built in memory); identifies the data source."""
    would_terminate: np.ndarray | None = None
    """[R] bool: the env's termination condition per row; None if any chunk lacks it (older datasets)."""

    @property
    def num_episodes(self) -> int:
        return int(self.episode_length.shape[0])

    @property
    def num_transitions(self) -> int:
        return int(self.episode_length.sum())

    def episodes(self, keep: np.ndarray) -> EpisodeDataset:
        """The dataset of the episodes at positions ``keep`` (sorted: the dataset's order is kept)."""
        keep = np.sort(np.asarray(keep, dtype=np.int64))
        lengths, starts = self.episode_length[keep], self.episode_start[keep]
        rows = np.concatenate(
            [np.zeros(0, np.int64)] + [np.arange(s, s + n + 1) for s, n in zip(starts, lengths, strict=True)]
        )
        return EpisodeDataset(
            obs=self.obs[rows],
            action=self.action[rows],
            action_raw=self.action_raw[rows],
            reward=self.reward[rows],
            epoch=self.epoch[rows],
            episode_id=self.episode_id[keep],
            episode_start=np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64),
            episode_length=lengths,
            episode_terminated=self.episode_terminated[keep],
            episode_truncated=self.episode_truncated[keep],
            info=self.info,
            path=self.path,
            would_terminate=self.would_terminate[rows] if self.would_terminate is not None else None,
        )


def split_heldout(
    dataset: EpisodeDataset, fraction: float, seed: int
) -> tuple[EpisodeDataset, EpisodeDataset | None]:
    """(training episodes, held-out episodes): a random ``fraction`` of whole episodes, a function of the
    dataset and ``seed`` only, held out for the world model's prediction-error diagnostics. At least one
    episode stays in training; ``fraction`` 0 or a one-episode dataset: (dataset, None)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout fraction must be in [0, 1), got {fraction}")
    count = min(int(round(fraction * dataset.num_episodes)), dataset.num_episodes - 1)
    if count <= 0:
        return dataset, None
    order = np.random.default_rng([seed, 2]).permutation(dataset.num_episodes)
    return dataset.episodes(order[count:]), dataset.episodes(order[:count])


def heldout_by_ids(dataset: EpisodeDataset, ids: list[int]) -> EpisodeDataset | None:
    """The episodes of ``dataset`` whose ids are ``ids`` (a world model's recorded held-out split; None if
    ``ids`` is empty or none of them is present)."""
    keep = np.flatnonzero(np.isin(dataset.episode_id, np.asarray(ids, dtype=np.int64)))
    return dataset.episodes(keep) if len(keep) else None


def load_dataset(directory: str | Path) -> EpisodeDataset:
    """Read every chunk listed in ``dataset.json`` into one :class:`EpisodeDataset`."""
    directory = Path(directory)
    info = json.loads((directory / INDEX).read_text())
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise ValueError(f"{directory} is not a {FORMAT} v{VERSION} dataset")
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in info["chunks"]:
        with np.load(directory / chunk["file"]) as data:
            for name in data.files:
                parts.setdefault(name, []).append(data[name])
    if not parts:
        obs_dim, act_dim = info["obs_dim"], info["act_dim"]
        parts = {
            "obs": [np.zeros((0, obs_dim), np.float32)],
            "action": [np.zeros((0, act_dim), np.float32)],
            "action_raw": [np.zeros((0, act_dim), np.float32)],
            "reward": [np.zeros(0, np.float32)],
            "epoch": [np.zeros(0, np.int64)],
            "episode_id": [np.zeros(0, np.int64)],
            "episode_length": [np.zeros(0, np.int64)],
            "episode_terminated": [np.zeros(0, bool)],
            "episode_truncated": [np.zeros(0, bool)],
            "would_terminate": [np.zeros(0, bool)],
        }
    if len(parts.get("would_terminate", ())) != len(parts["obs"]):  # recorded before the column existed
        parts.pop("would_terminate", None)
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    rows = arrays["episode_length"] + 1
    start = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    return EpisodeDataset(episode_start=start, info=info, path=str(directory.resolve()), **arrays)


def sample_subtrajectories(
    dataset: EpisodeDataset, batch_size: int, horizon: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Uniformly sample ``batch_size`` windows of ``horizon + 1`` observations inside single episodes.

    Returns obs [B, H+1, obs_dim] (s_0..s_H), action / action_raw [B, H, act_dim] and reward [B, H] of the
    transitions s_t -> s_{t+1}, terminated [B, H] (True on the transition that ended a terminated
    episode) and, if the dataset records it, would_terminate [B, H] (the termination condition at s_{t+1}).
    Windows never cross an episode boundary.
    """
    starts_per_episode = np.maximum(dataset.episode_length - horizon + 1, 0)
    total = int(starts_per_episode.sum())
    if total == 0:
        raise ValueError(f"no episode has at least {horizon} transitions")
    cumulative = np.cumsum(starts_per_episode)
    draw = rng.integers(0, total, size=batch_size)
    episode = np.searchsorted(cumulative, draw, side="right")
    offset = draw - (cumulative[episode] - starts_per_episode[episode])
    first_row = dataset.episode_start[episode] + offset
    rows = first_row[:, None] + np.arange(horizon + 1)[None, :]
    transition_rows = rows[:, 1:]
    last_row = dataset.episode_start[episode] + dataset.episode_length[episode]
    terminated = (transition_rows == last_row[:, None]) & dataset.episode_terminated[episode][:, None]
    batch = {
        "obs": dataset.obs[rows],
        "action": dataset.action[transition_rows],
        "action_raw": dataset.action_raw[transition_rows],
        "reward": dataset.reward[transition_rows],
        "terminated": terminated,
    }
    if dataset.would_terminate is not None:
        batch["would_terminate"] = dataset.would_terminate[transition_rows]
    return batch
