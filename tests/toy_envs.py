"""A small differentiable pure-torch env implementing the warpbench env protocol, for algorithm tests."""

from __future__ import annotations

from typing import Any

import torch

import envs

TOY_ENV = "toy_pointmass"


class ScriptedEnv:
    """A hand-checkable env without state: 1-d observations 0 and reward 1 at every step (both tied to the
    actions by a zero weight, so that gradients flow through them); env i's episode ends at step
    ``truncate[i]`` (truncated) or ``terminate[i]`` (terminated), counted from 0."""

    obs_dim, act_dim, max_episode_steps, device = 1, 1, 1000, "cpu"

    def __init__(
        self, num_envs: int, truncate: dict[int, int] | None = None, terminate: dict[int, int] | None = None
    ) -> None:
        self.num_envs = num_envs
        self.truncate, self.terminate = truncate or {}, terminate or {}
        self.t = 0

    def reset(self) -> torch.Tensor:
        return torch.zeros(self.num_envs, 1)

    detach_state = reset

    def step(self, actions: torch.Tensor) -> tuple[Any, ...]:
        t, self.t = self.t, self.t + 1

        def ends(at: dict[int, int]) -> torch.Tensor:
            return torch.tensor([at.get(i) == t for i in range(self.num_envs)])

        obs = torch.zeros(self.num_envs, 1) + 0.0 * actions
        reward = 1.0 + 0.0 * actions[:, 0]
        terminated = ends(self.terminate)
        info = {"obs_before_reset": obs, "would_terminate": terminated}
        return obs, reward, terminated, ends(self.truncate), info


class PointMassEnv:
    """Batched 2-D point mass that should run along +x while staying inside a lateral band |y| <= 1.

    State: position p and velocity v in R^2. One step (a clipped to [-1, 1]): v <- 0.8 v + 0.5 a,
    p <- p + 0.1 v. Reward v_x - 0.1 |a|^2 - 0.5 p_y^2 (post-step state). Observation [p, v].
    Termination when |p_y| > 1 (``early_termination``; ``info["would_terminate"]`` reports the
    condition either way); truncation after ``episode_length`` steps.
    Resets: p = v = 0, plus U(-0.1, 0.1) noise from the env's own generator (``stochastic_init``).
    ``nan_rewards_from`` / ``nan_rewards_until`` make rewards NaN for env steps counted since creation in
    [from, until) (until None = forever), to exercise non-finite gradient handling.
    """

    obs_dim = 4
    act_dim = 2

    def __init__(
        self,
        num_envs: int = 1,
        device: str = "cpu",
        seed: int = 0,
        early_termination: bool = True,
        stochastic_init: bool = True,
        episode_length: int = 64,
        nan_rewards_from: int | None = None,
        nan_rewards_until: int | None = None,
    ) -> None:
        self.num_envs = num_envs
        self.device = device
        self.max_episode_steps = episode_length
        self.early_termination = early_termination
        self.stochastic_init = stochastic_init
        self.nan_rewards = (nan_rewards_from, nan_rewards_until)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.pos = torch.zeros(num_envs, 2, device=device)
        self.vel = torch.zeros(num_envs, 2, device=device)
        self.progress = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.steps_taken = 0

    def _start_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.zeros(self.num_envs, 2, device=self.device)
        vel = torch.zeros(self.num_envs, 2, device=self.device)
        if self.stochastic_init:
            noise = torch.rand(2, self.num_envs, 2, generator=self.generator, device=self.device)
            pos, vel = pos + 0.2 * noise[0] - 0.1, vel + 0.2 * noise[1] - 0.1
        return pos, vel

    def _observe(self) -> torch.Tensor:
        return torch.cat([self.pos, self.vel], dim=-1)

    def reset(self) -> torch.Tensor:
        self.pos, self.vel = self._start_states()
        self.progress.zero_()
        return self._observe()

    def detach_state(self) -> torch.Tensor:
        self.pos, self.vel = self.pos.detach(), self.vel.detach()
        return self._observe()

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        action = actions.clamp(-1.0, 1.0)
        self.vel = 0.8 * self.vel + 0.5 * action
        self.pos = self.pos + 0.1 * self.vel
        self.progress += 1
        beyond = self.pos[:, 1].abs() > 1.0
        reward = self.vel[:, 0] - 0.1 * action.square().sum(-1) - 0.5 * self.pos[:, 1].square()
        start, stop = self.nan_rewards
        if start is not None and self.steps_taken >= start and (stop is None or self.steps_taken < stop):
            reward = reward * float("nan")
        self.steps_taken += 1
        obs_before_reset = self._observe()
        terminated = beyond & self.early_termination
        truncated = (self.progress >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        if bool(done.any()):
            start_pos, start_vel = self._start_states()
            self.pos = torch.where(done[:, None], start_pos, self.pos)
            self.vel = torch.where(done[:, None], start_vel, self.vel)
            self.progress = torch.where(done, 0, self.progress)
        terms = {
            "forward": obs_before_reset[:, 2],
            "action": -0.1 * action.square().sum(-1),
            "lateral": -0.5 * obs_before_reset[:, 1].square(),
        }
        info = {"obs_before_reset": obs_before_reset, "reward_terms": terms, "would_terminate": beyond}
        return self._observe(), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {
            "pos": self.pos.detach().clone(),
            "vel": self.vel.detach().clone(),
            "progress": self.progress.clone(),
            "steps_taken": self.steps_taken,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos = state["pos"].to(self.device)
        self.vel = state["vel"].to(self.device)
        self.progress = state["progress"].to(self.device)
        self.steps_taken = state["steps_taken"]
        self.generator.set_state(state["generator"])


def make_toy_env(num_envs: int = 1, device: str = "cpu", seed: int = 0, **overrides: Any) -> PointMassEnv:
    valid = (
        "early_termination",
        "stochastic_init",
        "episode_length",
        "nan_rewards_from",
        "nan_rewards_until",
    )
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {TOY_ENV}; valid: {', '.join(valid)}")
    return PointMassEnv(num_envs=num_envs, device=device, seed=seed, **overrides)


def register_toy_env() -> str:
    """Register the toy env under :data:`TOY_ENV` (idempotent) and return its name."""
    envs.register(TOY_ENV, make_toy_env)
    return TOY_ENV
