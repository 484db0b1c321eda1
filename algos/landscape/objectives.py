"""The H-step objectives of a deterministic policy through the simulator and through a world model.

For a policy a = tanh(μ_θ(norm(o))) (SHAC's actor, observation normaliser frozen) and start states s_0:

    J_sim^H(θ) = Σ_{t<H} γ^t r_t + γ^H V(o_H)      rolled through the differentiable simulator,
    J_wm^H(θ)  = Σ_{t<H} γ^t r̂_t + γ^H V(ô_H)     imagined: z_0 = E(o_0), (z_{t+1}, r̂_t) = F, R(z_t, a_t),

with the same critic V (ensemble minimum; 0 without a critic), the same start states and actions computed
by the same θ (spec §4). Many parameter vectors are evaluated in one call: parameters are stacked [P, ...]
and the simulator runs P·B envs, P grid points times B start states (common random numbers).

The world model has no decoder, but the actor and the critic read observations, so imagined observations
are a linear read-out ô = [z, 1] W fitted by ridge regression on encoded simulator observations
(:func:`fit_readout`); where the observation ends with the previous action, that block is the actual
previous action. At t = 0 the actor reads the true o_0. World-model rewards are trained on rew_rms-normalised
targets and are mapped back to env units, r̂ = output · sqrt(var + eps) + mean, so both objectives share units.

Envs run without early termination (a termination reset would draw fresh reset noise and break common random
numbers; the PWM pipeline's data are recorded the same way) and with episodes longer than H. Invalid states
still reset inside ``env.step``; they are counted, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

import envs
from algos.landscape.directions import Params
from algos.networks import CriticEnsemble
from algos.normalizers import VAR_EPS, RunningMeanStd
from algos.world_model import WorldModel


@dataclass
class Policy:
    """The deterministic policy and the fixed parts of the objective (normaliser, critic, discount)."""

    mean_net: nn.Module
    """The actor's mean MLP μ (its parameters are θ)."""
    obs_rms: RunningMeanStd | None
    """Frozen observation normaliser (None: raw observations)."""
    critic: CriticEnsemble | None
    """Terminal value V (ensemble minimum) on normalised observations; None: V = 0."""
    gamma: float = 0.99
    """Discount factor."""

    def theta(self) -> Params:
        """A detached copy of θ."""
        return {name: p.detach().clone() for name, p in self.mean_net.named_parameters()}

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs) if self.obs_rms is not None else obs

    def actions(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """tanh(μ_θp(norm(obs[p]))) for stacked parameters [P, ...] and observations [P, B, d]."""

        def single(p: Params, o: torch.Tensor) -> torch.Tensor:
            return functional_call(self.mean_net, p, (o,))

        return torch.tanh(vmap(single)(params, self.normalize(obs)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(norm(obs)) [...] in float64 (zeros without a critic)."""
        if self.critic is None:
            return obs.new_zeros(obs.shape[:-1], dtype=torch.float64)
        return self.critic.value(self.normalize(obs)).double()


@dataclass
class StartStates:
    """A batch of simulator start states and their observations."""

    q: torch.Tensor
    qd: torch.Tensor
    obs: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]

    def repeat(self, times: int) -> StartStates:
        """The batch tiled ``times`` times (grid point p uses rows p·B .. p·B + B - 1)."""
        return StartStates(self.q.repeat(times, 1), self.qd.repeat(times, 1), self.obs.repeat(times, 1))


def make_env(env_name: str, num_envs: int, seed: int, device: str, horizon: int) -> Any:
    """An env for landscape rollouts: no early termination, episodes longer than ``horizon``."""
    return envs.make(
        env_name,
        num_envs=num_envs,
        device=device,
        seed=seed,
        early_termination=False,
        episode_length=max(horizon + 1, 1000),
    )


def sample_start_states(env_name: str, count: int, seed: int, device: str = "cpu") -> StartStates:
    """``count`` start states with the env's reset noise, fixed by ``seed`` (common random numbers)."""
    env = make_env(env_name, count, seed, device, 1)
    obs = env.reset()
    return StartStates(env.q.clone(), env.qd.clone(), obs.clone())


@dataclass
class Rollout:
    returns: torch.Tensor
    """J^H [len(horizons), P, B] (float64) for the sorted horizons."""
    invalid_states: int
    """Env steps that ended in an invalid state (they reset inside the step)."""
    observations: torch.Tensor | None = None
    """[T + 1, P·B, d] when recorded."""


class SimulatorObjective:
    """J_sim^H through the differentiable simulator; one env per batch size, created on first use."""

    def __init__(self, env_name: str, policy: Policy, device: str = "cpu", seed: int = 0) -> None:
        self.env_name, self.policy, self.device, self.seed = env_name, policy, device, seed
        self._envs: dict[int, Any] = {}
        self.max_horizon = 1

    def env(self, num_envs: int, horizon: int) -> Any:
        if num_envs not in self._envs or self._envs[num_envs].max_episode_steps <= horizon:
            self._envs[num_envs] = make_env(self.env_name, num_envs, self.seed, self.device, horizon)
        return self._envs[num_envs]

    def __call__(
        self, params: Params, starts: StartStates, horizons: list[int], record: bool = False
    ) -> Rollout:
        """Roll P·B envs (``starts`` holds P·B states: grid point p owns rows p·B .. p·B + B - 1)."""
        points = next(iter(params.values())).shape[0]
        batch = len(starts) // points
        hs = _check_horizons(horizons)
        env = self.env(len(starts), hs[-1])
        env.reset()
        obs = env.set_state(starts.q, starts.qd)
        ret = torch.zeros(points, batch, dtype=torch.float64, device=obs.device)
        out, seen, invalid = [], [obs.detach()] if record else None, 0
        for t in range(hs[-1]):
            action = self.policy.actions(params, obs.view(points, batch, -1))
            obs, reward, _, _, info = env.step(action.reshape(points * batch, -1))
            invalid += int(info["invalid"].sum())
            ret = ret + self.policy.gamma**t * reward.view(points, batch).double()
            if seen is not None:
                seen.append(obs.detach())
            if t + 1 in hs:
                value = self.policy.value(obs).view(points, batch)
                out.append(ret + self.policy.gamma ** (t + 1) * value)
        return Rollout(torch.stack(out), invalid, torch.stack(seen) if seen is not None else None)


@dataclass
class Readout:
    """Linear read-out ô = [z, 1] W of observations from latents, with its fit quality."""

    weight: torch.Tensor
    """[latent + 1, obs_dim]."""
    r2: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """Coefficient of determination per observation dimension on the fitting data."""


def fit_readout(model: WorldModel, obs: torch.Tensor, ridge: float = 1e-3) -> Readout:
    """Ridge regression of observations [N, d] on their encodings [E(o), 1] (float64 normal equations)."""
    if obs.dim() != 2 or obs.shape[0] < 2:
        raise ValueError(f"fit_readout needs observations [N >= 2, d], got {tuple(obs.shape)}")
    with torch.no_grad():
        z = model.encode(obs.float()).double()
    x = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
    y = obs.double()
    gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    weight = torch.linalg.solve(gram, x.T @ y)
    residual = ((y - x @ weight) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0)
    r2 = torch.where(total > 0, 1.0 - residual / total.clamp_min(1e-300), torch.nan)
    return Readout(weight.float(), r2)


class WorldModelObjective:
    """J_wm^H: the same policy, start observations and critic, imagined through a world model."""

    def __init__(
        self,
        model: WorldModel,
        policy: Policy,
        readout: Readout,
        reward_mean: float = 0.0,
        reward_std: float = 1.0,
        previous_action: bool = True,
    ) -> None:
        self.model, self.policy, self.readout = model, policy, readout
        self.reward_mean, self.reward_std = reward_mean, reward_std
        self.previous_action = previous_action

    @staticmethod
    def reward_scale(rew_rms: RunningMeanStd | None) -> tuple[float, float]:
        """(mean, std) mapping the model's normalised rewards back to env units ((0, 1) without rew_rms)."""
        if rew_rms is None:
            return 0.0, 1.0
        return float(rew_rms.mean), float(torch.sqrt(rew_rms.var + VAR_EPS))

    def observe(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        obs = torch.cat([z, torch.ones_like(z[..., :1])], dim=-1) @ self.readout.weight
        if self.previous_action:
            obs = torch.cat([obs[..., : -action.shape[-1]], action], dim=-1)
        return obs

    def __call__(self, params: Params, starts: StartStates, horizons: list[int]) -> Rollout:
        points = next(iter(params.values())).shape[0]
        batch = len(starts) // points
        hs = _check_horizons(horizons)
        obs = starts.obs.view(points, batch, -1)
        with torch.no_grad():
            z = self.model.encode(obs)
        ret = torch.zeros(points, batch, dtype=torch.float64, device=obs.device)
        out = []
        for t in range(hs[-1]):
            action = self.policy.actions(params, obs)
            z, reward = self.model.step(z, action)
            reward = reward * self.reward_std + self.reward_mean
            ret = ret + self.policy.gamma**t * reward.double()
            obs = self.observe(z, action)
            if t + 1 in hs:
                out.append(ret + self.policy.gamma ** (t + 1) * self.policy.value(obs))
        return Rollout(torch.stack(out), 0)


def _check_horizons(horizons: list[int]) -> list[int]:
    hs = sorted(set(int(h) for h in horizons))
    if not hs or hs[0] < 1:
        raise ValueError(f"horizons must be >= 1, got {list(horizons)}")
    return hs


def per_point_gradients(objective: Any, params: Params, starts: StartStates, horizons: list[int]) -> Any:
    """Gradients of the batch-mean J^H of every grid point: a list over the sorted horizons of
    flattened [P, n_params] float64 tensors (one backward per horizon), and the rollout."""
    leaves = {name: t.detach().clone().requires_grad_(True) for name, t in params.items()}
    with torch.enable_grad():
        rollout = objective(leaves, starts, horizons)
        grads = []
        count = rollout.returns.shape[0]
        for h in range(count):
            total = rollout.returns[h].mean(dim=1).sum()
            parts = torch.autograd.grad(total, list(leaves.values()), retain_graph=h < count - 1)
            grads.append(torch.cat([g.reshape(g.shape[0], -1) for g in parts], dim=1).double())
    rollout.returns = rollout.returns.detach()
    return grads, rollout
