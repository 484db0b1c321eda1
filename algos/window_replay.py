"""Replay of a vectorised env's steps, sampled as windows of H consecutive transitions of one env
(TD-MPC2's sub-trajectory batches, algorithms §5; buffer 1M transitions).

Every vectorised step appends one row per env: s_t, a_t, r_t, s_{t+1} (the observation before any
auto-reset), terminated and done. Unlike :class:`algos.replay.EpisodeReplay`, which takes whole finished
episodes, steps are usable as soon as they are stored: with many envs and 1000-step episodes, waiting for
episode ends would leave the replay empty for a long time. Each env owns ``capacity // num_envs`` rows of a
ring; a window never crosses an episode end (it may end with one) nor the ring's seam.
"""

from __future__ import annotations

from typing import Any

import torch


class WindowReplay:
    def __init__(
        self, capacity: int, num_envs: int, obs_dim: int, act_dim: int, device: str | torch.device
    ) -> None:
        if capacity < num_envs:
            raise ValueError(f"replay capacity {capacity} is below the number of envs {num_envs}")
        self.rows = capacity // num_envs
        self.num_envs = num_envs
        self.device = torch.device(device)
        shape = (self.rows, num_envs)
        self.obs = torch.zeros(*shape, obs_dim, device=self.device)
        self.next_obs = torch.zeros(*shape, obs_dim, device=self.device)
        self.action = torch.zeros(*shape, act_dim, device=self.device)
        self.reward = torch.zeros(shape, device=self.device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.done = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.count = 0
        """Vectorised steps ever added (step k lives in row k % rows)."""

    @property
    def num_transitions(self) -> int:
        return min(self.count, self.rows) * self.num_envs

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        done: torch.Tensor,
    ) -> None:
        """One vectorised step: obs, next_obs [N, d], action [N, a], reward, terminated, done [N]."""
        row = self.count % self.rows
        for storage, values in (
            (self.obs, obs),
            (self.next_obs, next_obs),
            (self.action, action),
            (self.reward, reward),
            (self.terminated, terminated),
            (self.done, done),
        ):
            storage[row] = values.detach().to(self.device, storage.dtype)
        self.count += 1

    def _valid_starts(self, horizon: int) -> tuple[int, torch.Tensor]:
        """(first stored step, [starts, N] mask of windows of ``horizon`` steps without an episode end
        before their last step)."""
        first = max(0, self.count - self.rows)
        starts = self.count - first - horizon + 1
        if starts <= 0:
            return first, torch.zeros(0, self.num_envs, dtype=torch.bool, device=self.device)
        steps = torch.arange(first, self.count, device=self.device) % self.rows
        ended = torch.cat([torch.zeros(1, self.num_envs, device=self.device), self.done[steps].float()])
        ends_before = ended.cumsum(0)
        # Episode ends at steps k .. k + horizon - 2 of a window starting at k.
        inside = ends_before[horizon - 1 : horizon - 1 + starts] - ends_before[:starts]
        return first, inside == 0

    def can_sample(self, horizon: int) -> bool:
        return bool(self._valid_starts(horizon)[1].any())

    def sample(self, batch_size: int, horizon: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Uniform windows, batch-first: obs [B, H+1, d], action [B, H, a], reward and terminated [B, H]
        (step t: the transition s_t -> s_{t+1}; only the last can be terminal)."""
        first, valid = self._valid_starts(horizon)
        candidates = valid.flatten().nonzero()[:, 0]
        if len(candidates) == 0:
            raise ValueError(f"the replay holds no window of {horizon} steps")
        draw = torch.randint(len(candidates), (batch_size,), generator=generator, device=generator.device)
        chosen = candidates[draw.to(self.device)]
        start, env = chosen // self.num_envs + first, chosen % self.num_envs
        rows = (start[:, None] + torch.arange(horizon, device=self.device)) % self.rows
        envs = env[:, None]
        obs = torch.cat([self.obs[rows, envs], self.next_obs[rows[:, -1:], envs]], dim=1)
        return {
            "obs": obs,
            "action": self.action[rows, envs],
            "reward": self.reward[rows, envs],
            "terminated": self.terminated[rows, envs],
        }

    def state_dict(self) -> dict[str, Any]:
        """The written rows and the step count (enough to continue bit-exactly)."""
        used = min(self.count, self.rows)
        names = ("obs", "next_obs", "action", "reward", "terminated", "done")
        return {
            "rows": self.rows,
            "count": self.count,
            **{name: getattr(self, name)[:used].clone() for name in names},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["rows"] != self.rows:
            raise ValueError(f"replay rows per env {state['rows']} differ from {self.rows}")
        self.count = state["count"]
        used = min(self.count, self.rows)
        for name in ("obs", "next_obs", "action", "reward", "terminated", "done"):
            getattr(self, name)[:used] = state[name].to(self.device)
