"""BPTT: backpropagation through whole episodes of a differentiable simulator (algorithms §6).

The no-critic, no-window baseline of SHAC (DiffRL ``examples/cfg/bptt/ant.yaml``). One iteration
(``BPTT.train_iteration``): cut the graph at the current env state, roll one episode length of steps with
reparameterised actions a = tanh(a_raw), a_raw ~ N(mu(norm(obs)), std), through the differentiable env,
accumulate per env J = sum_k gamma^k r_k, restarting J and the discount where an episode ends (no value
bootstrap anywhere: ``algos.training.WindowLoss`` closed with V = 0); loss = -mean over envs of the summed J
divided by the window length; backprop through the whole window, clip the gradient norm and step (a step
whose gradient has nan/inf entries is skipped and counted, ``max_nonfinite_windows`` in a row raise);
decay the learning rate linearly. Memory grows with the window (one set of adjoint buffers per control step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from algos.config import JsonConfig, check_at_least_one, check_choice
from algos.networks import ACTIVATIONS, StochasticActor
from algos.normalizers import normalized_actor_loss
from algos.training import LR_SCHEDULES, ActorStep, Learner, WindowLoss, apply_schedule


@dataclass(frozen=True)
class BPTTConfig(JsonConfig):
    """BPTT's settings; defaults: DiffRL ``examples/cfg/bptt/ant.yaml`` (algorithms §6, "BPTT")."""

    horizon: int | None = None
    """Steps differentiated through per update; None: the env's episode length (DiffRL: the whole
    1000-step episode)."""
    gamma: float = 0.99
    """Discount factor (not in the spec's BPTT row; SHAC's 0.99)."""
    max_epochs: int = 2000
    """Training iterations, one window each (DiffRL 2000); also the length of the linear decay."""
    actor_hidden: tuple[int, ...] = (128, 64, 32)
    """Hidden widths of the actor MLP (DiffRL [128, 64, 32])."""
    activation: str = "elu"
    """Hidden activation (DiffRL ELU): elu, mish, relu or tanh."""
    logstd_init: float = -1.0
    """Initial value of the actor's state-independent log-std (DiffRL -1)."""
    actor_lr: float = 4e-3
    """Initial actor learning rate (DiffRL 4e-3)."""
    lr_schedule: str = "linear"
    """'linear' (decay to final_lr over max_epochs; DiffRL) or 'constant'."""
    final_lr: float = 1e-5
    """Learning rate reached at max_epochs by the linear schedule."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas (DiffRL (0.7, 0.95))."""
    obs_rms: bool = True
    """Normalise observations with running statistics, a frozen copy within each window (DiffRL on)."""
    actor_grad_clip: float = 1.0
    """Max global norm of the actor gradient (DiffRL 1)."""
    max_nonfinite_windows: int = 10
    """Raise NonFiniteGradientError after this many consecutive windows with a nan/inf actor gradient."""

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 or null, got {self.horizon}")
        check_at_least_one(self, "max_epochs", "max_nonfinite_windows")


class BPTT(Learner):
    """BPTT over any differentiable env following the warpbench env protocol (see ``envs/__init__.py``)."""

    def __init__(self, env: Any, config: BPTTConfig, seed: int) -> None:
        super().__init__(env, config, seed, obs_rms=config.obs_rms)
        self.config: BPTTConfig = config
        self.horizon = config.horizon or env.max_episode_steps
        self.actor = StochasticActor(
            env.obs_dim, env.act_dim, config.actor_hidden, config.activation, config.logstd_init
        ).to(self.device)
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, betas=config.betas
        )
        self.actor_step = ActorStep(
            self.actor, self.actor_optimizer, config.actor_grad_clip, config.max_nonfinite_windows
        )
        self.env.reset()

    @property
    def env_steps_per_iteration(self) -> int:
        return self.horizon * self.env.num_envs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations; the stochastic case draws from the training noise stream."""
        return self.actor.act(self.normalize_obs(obs), deterministic, self.generator)

    def train_iteration(self) -> dict[str, float]:
        """One window of a whole episode length: actor update, learning-rate decay."""
        cfg = self.config
        lrs = apply_schedule(
            {"actor_lr": (self.actor_optimizer, cfg.actor_lr)},
            self.iteration,
            cfg.max_epochs,
            cfg.lr_schedule,
            cfg.final_lr,
        )
        loss, stats = self._rollout()
        metrics = self.actor_step(loss, self.iteration)
        metrics.update(stats, **lrs, actor_std_mean=float(self.actor.std().detach().mean()))
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    def _rollout(self) -> tuple[torch.Tensor, dict[str, float]]:
        normalize = self.frozen_normalizer()
        obs = self.env.detach_state()
        loss = WindowLoss(self.env.num_envs, self.config.gamma, self.device)
        no_value = torch.zeros(self.env.num_envs, device=self.device)
        reward_sum = 0.0
        terminations = truncations = 0
        for t in range(self.horizon):
            obs_in = normalize(obs)
            action_raw = self.actor.sample(obs_in, self.generator)
            action = torch.tanh(action_raw)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            done = self.record_step(obs, action, action_raw, reward, terminated, truncated, info)
            if self.obs_rms is not None:
                self.obs_rms.update(next_obs)
            loss.add(reward)
            last = t == self.horizon - 1
            loss.close(torch.ones_like(done) if last else done, no_value, last=last)
            reward_sum += float(reward.detach().mean())
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            obs = next_obs
        stats = {
            "early_terminations": float(terminations),
            "truncations": float(truncations),
            "reward_mean": reward_sum / self.horizon,
        }
        return normalized_actor_loss(loss.per_env, self.horizon, None), stats

    def nonfinite_totals(self) -> dict[str, int]:
        """Windows skipped over the whole run because the actor gradient had nan/inf entries."""
        return {"nonfinite_actor_windows": self.actor_step.nonfinite_windows}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: actor, optimiser, normaliser, RNG, env state."""
        return {
            **super().state_dict(),
            "actor": self.actor.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "consecutive_nonfinite": self.actor_step.consecutive_nonfinite,
            "nonfinite_actor_windows": self.actor_step.nonfinite_windows,
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        self.actor.load_state_dict(state["actor"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.actor_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.actor_step.nonfinite_windows = state["nonfinite_actor_windows"]
        self.env.load_state_dict(state["env"])
