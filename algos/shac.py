"""SHAC: Short-Horizon Actor-Critic through a differentiable simulator (algorithms §2).

One iteration (``SHAC.train_iteration``):
  1. cut the graph at the current env state (``env.detach_state()``) and roll H steps with reparameterised
     actions a = tanh(a_raw), a_raw ~ N(mu(norm(obs)), std), through the differentiable env;
  2. per env, accumulate J = sum_k gamma^k r_k since its accumulator last restarted; when the env's episode
     ends inside the window add -(J + gamma^m V') to its loss (V' = 0 on termination, V(obs_before_reset)
     on truncation) and restart; at the last step add -(J + gamma^m V(s_H)) for every env;
  3. actor loss = mean over envs of that per-env loss divided by H (or by its running std, ``ret_rms``);
     backprop through the whole window, clip the actor gradient norm and step (a step whose gradient has
     nan/inf entries is skipped and counted; ``max_nonfinite_windows`` in a row raise);
  4. fit the critic on TD(lambda) targets of the window, Polyak-update the target critic if there is one;
  5. decay the learning rates linearly.

The algorithm knows no env names: published per-env settings (the ``pwm`` and ``diffrl`` variants) are in
``bench.presets``. Shared pieces (actor step, critic update, episode statistics, schedules) come from
``algos.training`` and ``algos.critic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from algos.critic import td_lambda_targets
from algos.normalizers import normalized_actor_loss
from algos.training import ActorCriticConfig, ActorCriticLearner, WindowLoss


@dataclass(frozen=True)
class SHACConfig(ActorCriticConfig):
    """SHAC's settings: the shared actor-critic ones (``algos.training.ActorCriticConfig``) plus these."""

    obs_rms: bool = True
    """Normalise observations with running statistics (a frozen copy within each window)."""


class SHAC(ActorCriticLearner):
    """SHAC over any env following the warpbench env protocol (see ``envs/__init__.py``)."""

    def __init__(self, env: Any, config: SHACConfig, seed: int) -> None:
        super().__init__(env, config, seed, env.obs_dim, obs_rms=config.obs_rms)
        self.config: SHACConfig = config
        self.env.reset()

    @property
    def env_steps_per_iteration(self) -> int:
        return self.config.horizon * self.env.num_envs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations; the stochastic case draws from the training noise stream."""
        return self.actor.act(self.normalize_obs(obs), deterministic, self.generator)

    def train_iteration(self) -> dict[str, float]:
        """One SHAC window: actor update, critic fit, learning-rate decay. Returns per-iteration metrics."""
        lrs = self.learning_rates()
        window = self._rollout()
        metrics = self.actor_step(window["actor_loss"], self.iteration)
        metrics.update(self.fit_critic(window["inputs"], window["targets"], self.generator))
        metrics.update(window["stats"])
        metrics.update(lrs, actor_std_mean=float(self.actor.std().detach().mean()))
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    def _rollout(self) -> dict[str, Any]:
        cfg = self.config
        horizon, num_envs = cfg.horizon, self.env.num_envs
        normalize = self.frozen_normalizer()
        obs = self.env.detach_state()
        inputs = torch.empty(horizon, num_envs, self.env.obs_dim, device=self.device)
        rewards = torch.empty(horizon, num_envs, device=self.device)
        next_values = torch.empty(horizon, num_envs, device=self.device)
        dones = torch.empty(horizon, num_envs, dtype=torch.bool, device=self.device)
        loss = WindowLoss(num_envs, cfg.gamma, self.device)
        terminations = truncations = 0

        for t in range(horizon):
            obs_in = normalize(obs)
            inputs[t] = obs_in.detach()
            action_raw = self.actor.sample(obs_in, self.generator)
            action = torch.tanh(action_raw)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            final_obs = info["obs_before_reset"]
            done = self.record_step(obs, action, action_raw, reward, terminated, truncated, info)
            if self.obs_rms is not None:
                self.obs_rms.update(next_obs)
            # V' of the state each env reached: 0 on termination; final_obs == next_obs where not done.
            next_value = torch.where(terminated, 0.0, self.bootstrap_value(normalize(final_obs)))
            loss.add(reward)
            last = t == horizon - 1
            loss.close(torch.ones_like(done) if last else done, next_value, last=last)

            rewards[t], next_values[t], dones[t] = reward.detach(), next_value.detach(), done
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            obs = next_obs

        return {
            "actor_loss": normalized_actor_loss(loss.per_env, horizon, self.ret_rms),
            "inputs": inputs,
            "targets": td_lambda_targets(rewards, next_values, dones, cfg.gamma, cfg.lam),
            "stats": {
                "early_terminations": float(terminations),
                "truncations": float(truncations),
                "window_length_mean": horizon * num_envs / loss.terms,
                "reward_mean": float(rewards.mean()),
                "value_mean": float(next_values.mean()),
            },
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, normalisers, RNG, env state."""
        return {
            **super().state_dict(),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        self.env.load_state_dict(state["env"])
