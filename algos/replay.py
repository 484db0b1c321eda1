"""Replay buffers: whole real episodes for PWM's online world-model fine-tuning (algorithms §3.2, §3.7;
:class:`EpisodeReplay`) and single transitions for SAC (:class:`TransitionReplay`).

Episodes use the row layout of ``algos.dataset``: an episode of T transitions is T + 1 consecutive rows,
row j holding s_j and (for j >= 1) the action and reward of the transition s_{j-1} -> s_j. Rows live in a
preallocated ring of ``capacity`` rows on the training device; an episode that does not fit before the end
of the ring starts again at row 0, and the oldest episodes in the way are evicted (first in, first out).
An :class:`EpisodeReplay` made with ``termination_flags=True`` also keeps each row's ``would_terminate`` flag
(the env's termination condition at s_j) for a world model's termination head.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch


class EpisodeReplay:
    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device,
        termination_flags: bool = False,
    ) -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.action = torch.zeros(capacity, act_dim, device=self.device)
        self.reward = torch.zeros(capacity, device=self.device)
        self.would_terminate = (
            torch.zeros(capacity, dtype=torch.bool, device=self.device) if termination_flags else None
        )
        """Per-row termination condition (``termination_flags``); None: not kept."""
        self.episodes: deque[tuple[int, int]] = deque()
        """(first row, transitions) per stored episode, oldest first."""
        self.cursor = 0
        self.used = 0
        """Rows ever written (the high-water mark of the ring)."""
        self._table: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_transitions(self) -> int:
        return sum(length for _, length in self.episodes)

    def add(
        self,
        obs: np.ndarray | torch.Tensor,
        action: np.ndarray | torch.Tensor,
        reward: np.ndarray | torch.Tensor,
        would_terminate: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Store one episode given as rows: obs [T+1, d], action [T+1, a], reward [T+1] and, in a replay
        that keeps termination flags (and only there), would_terminate [T+1]."""
        rows = obs.shape[0]
        if rows > self.capacity:
            raise ValueError(f"an episode of {rows} rows does not fit a replay of {self.capacity} rows")
        if (would_terminate is None) != (self.would_terminate is None):
            raise ValueError(
                "this replay keeps would_terminate flags: every episode needs them"
                if self.would_terminate is not None
                else "this replay keeps no would_terminate flags (made without termination_flags)"
            )
        if self.cursor + rows > self.capacity:
            # Wrap: episodes left beyond the cursor from the previous pass are the oldest; drop them.
            while self.episodes and self.episodes[0][0] >= self.cursor:
                self.episodes.popleft()
            self.cursor = 0
        end = self.cursor + rows
        while self.episodes and self.cursor <= self.episodes[0][0] < end:
            self.episodes.popleft()
        for storage, values in self._fields(obs, action, reward, would_terminate):
            storage[self.cursor : end] = torch.as_tensor(values, device=self.device, dtype=storage.dtype)
        self.episodes.append((self.cursor, rows - 1))
        self.cursor = end
        self.used = max(self.used, end)
        self._table = None

    def _fields(self, *values: Any) -> list[tuple[torch.Tensor, Any]]:
        """(storage, value) for obs, action, reward and, when kept, would_terminate."""
        storages = (self.obs, self.action, self.reward, self.would_terminate)
        pairs = zip(storages, values, strict=True)
        return [(storage, value) for storage, value in pairs if storage is not None]

    def can_sample(self, horizon: int) -> bool:
        """True if some stored episode has at least ``horizon`` transitions."""
        return any(length >= horizon for _, length in self.episodes)

    def sample(self, batch_size: int, horizon: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Uniform windows of ``horizon`` + 1 rows inside single episodes, batch-first:
        obs [B, H+1, d], action [B, H, a], reward [B, H] (action/reward t: transition s_t -> s_{t+1}) and,
        when kept, would_terminate [B, H] (the termination condition at s_{t+1})."""
        if self._table is None:
            table = torch.tensor(list(self.episodes), dtype=torch.long).reshape(-1, 2).to(self.device)
            self._table = (table[:, 0], table[:, 1])
        starts, lengths = self._table
        valid = (lengths - horizon + 1).clamp(min=0)
        cumulative = valid.cumsum(0)
        total = int(cumulative[-1]) if len(cumulative) else 0
        if total == 0:
            raise ValueError(f"no stored episode has at least {horizon} transitions")
        draw = torch.randint(total, (batch_size,), generator=generator, device=generator.device)
        draw = draw.to(self.device)
        episode = torch.searchsorted(cumulative, draw, right=True)
        first = starts[episode] + draw - (cumulative[episode] - valid[episode])
        rows = first[:, None] + torch.arange(horizon + 1, device=self.device)
        steps = rows[:, 1:]
        batch = {"obs": self.obs[rows], "action": self.action[steps], "reward": self.reward[steps]}
        if self.would_terminate is not None:
            batch["would_terminate"] = self.would_terminate[steps]
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The written part of the ring and its bookkeeping (enough to continue bit-exactly)."""
        return {
            "capacity": self.capacity,
            "cursor": self.cursor,
            "used": self.used,
            "episodes": list(self.episodes),
            "obs": self.obs[: self.used].clone(),
            "action": self.action[: self.used].clone(),
            "reward": self.reward[: self.used].clone(),
            **(
                {"would_terminate": self.would_terminate[: self.used].clone()}
                if self.would_terminate is not None
                else {}
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} differs from {self.capacity}")
        if ("would_terminate" in state) != (self.would_terminate is not None):
            raise ValueError("the saved replay and this one differ in keeping would_terminate flags")
        self.cursor, self.used = state["cursor"], state["used"]
        self.episodes = deque(tuple(e) for e in state["episodes"])
        saved = (state["obs"], state["action"], state["reward"], state.get("would_terminate"))
        for storage, values in self._fields(*saved):
            storage[: self.used] = values.to(self.device)
        self._table = None


class TransitionReplay:
    """A ring of the last ``capacity`` single transitions (s, a, r, s', terminated) for off-policy learners
    (SAC), preallocated on the training device; ``s'`` is the state the step reached (before any reset)."""

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.action = torch.zeros(capacity, act_dim, device=self.device)
        self.reward = torch.zeros(capacity, device=self.device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.cursor = 0
        self.size = 0

    def add(self, **batch: torch.Tensor) -> None:
        """Store a batch of transitions given as the :attr:`FIELDS` keywords, each with a leading batch axis
        (a batch larger than the ring keeps its last ``capacity`` rows)."""
        count = batch["reward"].shape[0]
        if count > self.capacity:  # only the last capacity rows would survive: write just those
            batch = {name: value[count - self.capacity :] for name, value in batch.items()}
            self.cursor = (self.cursor + count - self.capacity) % self.capacity
            count = self.capacity
        rows = (self.cursor + torch.arange(count, device=self.device)) % self.capacity
        for name in self.FIELDS:
            getattr(self, name)[rows] = batch[name].detach().to(self.device, getattr(self, name).dtype)
        self.cursor = (self.cursor + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` stored transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay")
        index = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        index = index.to(self.device)
        return {name: getattr(self, name)[index] for name in self.FIELDS}

    def state_dict(self) -> dict[str, Any]:
        """The filled rows and the cursor (enough to continue bit-exactly)."""
        return {
            "capacity": self.capacity,
            "cursor": self.cursor,
            "size": self.size,
            **{name: getattr(self, name)[: self.size].clone() for name in self.FIELDS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} differs from {self.capacity}")
        self.cursor, self.size = state["cursor"], state["size"]
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name].to(self.device)
