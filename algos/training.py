"""The shape every algorithm here shares, and the training pieces several of them use.

:class:`Learner` is the base of every trainer (SHAC, PWM, PPO, SAC, BPTT, TD-MPC2): env, config, noise
generator, optional observation normaliser, training-episode statistics, recorder and iteration counter,
with their part of the checkpoint. An algorithm file adds its config dataclass, its networks and its
update rule. Also here: learning-rate schedules, the clipped step that skips non-finite gradients
(:class:`ActorStep`), the windowed actor loss of SHAC, PWM and BPTT (:class:`WindowLoss`), and
:class:`ActorCriticLearner`, the base of SHAC and PWM (:class:`ActorCriticConfig`). The critic side
(TD(lambda) targets and the critic update) lives in :mod:`algos.critic`.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from algos.config import JsonConfig, check_at_least_one, check_choice
from algos.critic import CriticUpdate, polyak_update
from algos.dataset import EpisodeRecorder
from algos.networks import ACTIVATIONS, CriticEnsemble, StochasticActor, gradient_norm
from algos.normalizers import RunningMeanStd

LR_SCHEDULES = ("linear", "constant")
RECENT_EPISODES = 100


@dataclass(frozen=True)
class ActorCriticConfig(JsonConfig):
    """The settings every actor-critic learner here shares (SHAC's defaults; subclasses change some)."""

    horizon: int = 32
    """Window length H: steps differentiated through per actor update."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """TD(lambda) mixing parameter of the critic targets."""
    max_epochs: int = 2000
    """Training iterations (one window each); also the length of the linear learning-rate decay."""
    actor_hidden: tuple[int, ...] = (400, 200, 100)
    """Hidden widths of the actor MLP."""
    critic_hidden: tuple[int, ...] = (400, 200)
    """Hidden widths of each critic MLP."""
    activation: str = "mish"
    """Hidden activation of actor and critics: elu, mish, relu or tanh."""
    logstd_init: float = -1.0
    """Initial value of the actor's state-independent log-std."""
    logstd_min: float | None = None
    """Lower clamp of the log-std (None: unclamped)."""
    num_critics: int = 3
    """Critic ensemble size; values are the minimum over members."""
    actor_lr: float = 2e-3
    """Initial actor learning rate."""
    critic_lr: float = 5e-4
    """Initial critic learning rate."""
    lr_schedule: str = "linear"
    """'linear' (decay to final_lr over max_epochs) or 'constant'."""
    final_lr: float = 1e-5
    """Learning rate reached at max_epochs by the linear schedule."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas of actor and critic optimisers."""
    critic_iterations: int = 16
    """Passes over the window's states when fitting the critic."""
    critic_batches: int = 4
    """Minibatches per pass (each of H*N/critic_batches states)."""
    ret_rms: bool = True
    """Divide the actor loss by the running std of the per-env loss instead of by H."""
    actor_grad_clip: float = 1.0
    """Max global norm of the actor gradient."""
    critic_grad_clip: float = 100.0
    """Max global norm of the critic gradient."""
    target_critic_alpha: float | None = None
    """Polyak coefficient alpha of a target critic (theta' <- alpha theta' + (1 - alpha) theta after each
    critic fit) used for all bootstrap values; None: no target network, the online critics bootstrap."""
    max_nonfinite_windows: int = 10
    """Raise NonFiniteGradientError after this many consecutive windows with a nan/inf actor gradient."""

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_at_least_one(
            self,
            "horizon",
            "max_epochs",
            "num_critics",
            "critic_iterations",
            "critic_batches",
            "max_nonfinite_windows",
        )
        if self.target_critic_alpha is not None and not 0.0 <= self.target_critic_alpha < 1.0:
            raise ValueError(f"target_critic_alpha must be in [0, 1) or None, got {self.target_critic_alpha}")


class NonFiniteGradientError(FloatingPointError):
    """Too many consecutive windows had a nan/inf actor gradient (the run fails, keeping its checkpoint)."""


def scheduled_lr(initial: float, iteration: int, max_epochs: int, schedule: str, final: float) -> float:
    """``constant``: ``initial``; ``linear``: initial + (final - initial) * iteration / max_epochs."""
    if schedule == "constant":
        return initial
    return initial + (final - initial) * iteration / max(max_epochs, 1)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def apply_schedule(
    optimizers: dict[str, tuple[torch.optim.Optimizer, float]],
    iteration: int,
    max_epochs: int,
    schedule: str,
    final: float,
) -> dict[str, float]:
    """Set each optimiser's learning rate for ``iteration``; returns ``{metric name: lr}``.

    ``optimizers`` maps a metric name (e.g. ``actor_lr``) to (optimiser, initial learning rate).
    """
    rates = {}
    for name, (optimizer, initial) in optimizers.items():
        rates[name] = scheduled_lr(initial, iteration, max_epochs, schedule, final)
        set_learning_rate(optimizer, rates[name])
    return rates


class WindowLoss:
    """The actor's per-env loss over one window. Each env accumulates J = sum_k gamma^k r_k since its
    accumulator last restarted; :meth:`close` adds -(J + scale * gamma^m V) for the envs that end (their
    episode, or the window) and restarts them."""

    def __init__(self, batch: int, gamma: float, device: torch.device) -> None:
        self.gamma = gamma
        self.window_return = torch.zeros(batch, device=device)
        self.discount = torch.ones(batch, device=device)
        self.per_env = torch.zeros(batch, device=device)
        self.terms = batch
        """Loss terms: one per env at the window's end plus one per episode end inside it."""

    def add(self, reward: torch.Tensor) -> None:
        self.window_return = self.window_return + self.discount * reward
        self.discount = self.discount * self.gamma

    def close(self, ends: torch.Tensor, value: torch.Tensor, scale: float = 1.0, last: bool = False) -> None:
        """Close the envs where ``ends`` with bootstrap ``value`` (0 where terminated); ``last``: the window's
        end (every env is closed, not counted as an extra term)."""
        bootstrap = scale * self.discount * value
        self.per_env = self.per_env - torch.where(ends, self.window_return + bootstrap, 0.0)
        self.window_return = torch.where(ends, 0.0, self.window_return)
        self.discount = torch.where(ends, 1.0, self.discount)
        if not last:
            self.terms += int(ends.sum())


class ActorStep:
    """One clipped optimiser step on the actor's loss. A step whose gradient has nan/inf entries is skipped
    and counted (never patched); ``max_nonfinite`` such windows in a row raise NonFiniteGradientError."""

    def __init__(
        self, actor: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, max_nonfinite: int
    ) -> None:
        self.params = list(actor.parameters())
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.max_nonfinite = max_nonfinite
        self.consecutive_nonfinite = 0
        self.nonfinite_windows = 0

    def __call__(self, loss: torch.Tensor, iteration: int) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        # Gradients of the actor only: the loss also depends on critics (and PWM's world model), whose own
        # updates must not see them.
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        norm_before = gradient_norm(self.params)
        finite = math.isfinite(norm_before)
        if finite:
            self.consecutive_nonfinite = 0
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            norm_after = gradient_norm(self.params)
            self.optimizer.step()
        else:
            self.consecutive_nonfinite += 1
            self.nonfinite_windows += 1
            norm_after = float("nan")
            if self.consecutive_nonfinite >= self.max_nonfinite:
                raise NonFiniteGradientError(
                    f"actor gradient was nan/inf in {self.consecutive_nonfinite} consecutive windows "
                    f"(iteration {iteration}; limit max_nonfinite_windows={self.max_nonfinite})"
                )
        return {
            "actor_loss": float(loss.detach()),
            "actor_grad_norm": norm_before,
            "actor_grad_norm_clipped": norm_after,
            "nonfinite_actor_grad": float(not finite),
        }


class EpisodeTracker:
    """Returns and lengths of the training episodes (the stochastic policy's; labelled, never the score),
    and the per-iteration mean of each reward term an env reports in ``info["reward_terms"]``."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.episode_return = torch.zeros(num_envs, device=device)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[int] = deque(maxlen=RECENT_EPISODES)
        self.term_sums: dict[str, float] = {}
        self.term_steps = 0

    def add(self, reward: torch.Tensor, done: torch.Tensor, info: dict[str, Any]) -> None:
        """One env step: ``reward`` and ``done`` are [num_envs]; ``info`` as returned by ``env.step``."""
        self.episode_return += reward.detach()
        self.episode_length += 1
        if bool(done.any()):
            self.recent_returns.extend(self.episode_return[done].tolist())
            self.recent_lengths.extend(self.episode_length[done].tolist())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        terms = info.get("reward_terms")
        if terms:
            for name, value in terms.items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value.detach().float().mean())
            self.term_steps += 1

    def metrics(self) -> dict[str, float]:
        """``train_return`` and ``train_episode_length`` over the last 100 finished episodes (once there is
        one) and ``reward/<term>`` (mean over this iteration's env steps and envs); resets the term sums."""
        metrics = {}
        if self.recent_returns:
            metrics["train_return"] = sum(self.recent_returns) / len(self.recent_returns)
            metrics["train_episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
        for name, total in self.term_sums.items():
            metrics[f"reward/{name}"] = total / self.term_steps
        self.term_sums, self.term_steps = {}, 0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.episode_return.device
        self.episode_return = state["episode_return"].to(device)
        self.episode_length = state["episode_length"].to(device)
        self.recent_returns = deque(state["recent_returns"], maxlen=RECENT_EPISODES)
        self.recent_lengths = deque(state["recent_lengths"], maxlen=RECENT_EPISODES)


class Learner:
    """The part of a trainer every algorithm here shares, with its part of the checkpoint.

    A subclass (one algorithm) builds its networks after ``super().__init__`` and provides the rest of the
    ``bench.algorithms.Trainer`` protocol: ``env_steps_per_iteration``, ``train_iteration``, ``act``,
    ``nonfinite_totals``, and its own entries in ``state_dict`` / ``load_state_dict``. ``config`` needs
    ``max_epochs`` and ``to_dict``; ``obs_rms``: keep running observation statistics
    (:meth:`normalize_obs`).

    ``recorder``: set an :class:`~algos.dataset.EpisodeRecorder` to record every real training transition.
    """

    def __init__(self, env: Any, config: Any, seed: int, obs_rms: bool = False) -> None:
        self.env = env
        self.config = config
        self.device = torch.device(env.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        """The trainer's noise stream (actions, minibatches, replay samples): checkpointed."""
        self.obs_rms = RunningMeanStd((env.obs_dim,), device=env.device) if obs_rms else None
        self.recorder: EpisodeRecorder | None = None
        self.episodes = EpisodeTracker(env.num_envs, self.device)
        self.iteration = 0

    @property
    def max_iterations(self) -> int:
        return self.config.max_epochs

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` normalised by the running statistics (unchanged without ``obs_rms``)."""
        return self.obs_rms.normalize(obs) if self.obs_rms is not None else obs

    def frozen_normalizer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`normalize_obs` with the statistics as they are now (for one window, during which
        ``obs_rms`` goes on updating)."""
        if self.obs_rms is None:
            return lambda obs: obs
        return copy.deepcopy(self.obs_rms).normalize

    def record_step(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        action_raw: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        info: dict[str, Any],
    ) -> torch.Tensor:
        """Enter one real env step (from ``obs`` with ``action``, the pre-squash ``action_raw``) into the
        episode statistics and the recorder; returns ``done`` = terminated | truncated."""
        done = terminated | truncated
        self.episodes.add(reward, done, info)
        if self.recorder is not None:
            final_obs, would = info["obs_before_reset"], info.get("would_terminate")
            self.recorder.add_step(
                obs, action, action_raw, reward, final_obs, terminated, truncated, self.iteration, would
            )
        return done

    def state_dict(self) -> dict[str, Any]:
        """The shared part of the checkpoint (subclasses add theirs)."""
        return {
            "config": self.config.to_dict(),
            "generator": self.generator.get_state(),
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms is not None else None,
            "iteration": self.iteration,
            **self.episodes.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        self.generator.set_state(state["generator"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        self.iteration = state["iteration"]
        self.episodes.load_state_dict(state)


class ActorCriticLearner(Learner):
    """Base of SHAC and PWM: actor, critic ensemble, their Adam optimisers, actor step, critic update and
    return normaliser over inputs of ``input_dim`` (observations for SHAC, latents for PWM), with their part
    of the checkpoint.
    """

    def __init__(
        self, env: Any, config: ActorCriticConfig, seed: int, input_dim: int, obs_rms: bool = False
    ) -> None:
        super().__init__(env, config, seed, obs_rms)
        self.config: ActorCriticConfig = config
        self.actor = StochasticActor(
            input_dim,
            env.act_dim,
            config.actor_hidden,
            config.activation,
            config.logstd_init,
            config.logstd_min,
        ).to(self.device)
        self.critic = CriticEnsemble(input_dim, config.critic_hidden, config.activation, config.num_critics)
        self.critic.to(self.device)
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, betas=config.betas
        )
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, betas=config.betas
        )
        self.actor_step = ActorStep(
            self.actor, self.actor_optimizer, config.actor_grad_clip, config.max_nonfinite_windows
        )
        self.critic_update = CriticUpdate(
            self.critic,
            self.critic_optimizer,
            config.critic_iterations,
            config.critic_batches,
            config.critic_grad_clip,
        )
        self.ret_rms = RunningMeanStd((), device=env.device) if config.ret_rms else None
        self.target_critic: CriticEnsemble | None = None
        if config.target_critic_alpha is not None:
            self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def bootstrap_value(self, inputs: torch.Tensor) -> torch.Tensor:
        """Bootstrap value: the target critic if there is one, else the online ensemble minimum."""
        return (self.target_critic or self.critic).value(inputs)

    def fit_critic(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        """Fit the critics to one window's targets, then move the target critic (if any) towards them."""
        metrics = self.critic_update(inputs, targets, generator)
        if self.target_critic is not None:
            polyak_update(self.target_critic, self.critic, self.config.target_critic_alpha)
        return metrics

    def learning_rates(self, **others: tuple[torch.optim.Optimizer, float]) -> dict[str, float]:
        """Set this iteration's actor, critic (and ``others``') learning rates; returns them as metrics."""
        cfg = self.config
        optimizers = {
            "actor_lr": (self.actor_optimizer, cfg.actor_lr),
            "critic_lr": (self.critic_optimizer, cfg.critic_lr),
            **others,
        }
        return apply_schedule(optimizers, self.iteration, cfg.max_epochs, cfg.lr_schedule, cfg.final_lr)

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the whole run of skipped actor steps and critic steps with zeroed gradients."""
        return {
            "nonfinite_actor_windows": self.actor_step.nonfinite_windows,
            "nonfinite_critic_steps": self.critic_update.nonfinite_steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """The shared part of the checkpoint (subclasses add theirs)."""
        return {
            **super().state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms is not None else None,
            "target_critic": self.target_critic.state_dict() if self.target_critic is not None else None,
            "consecutive_nonfinite": self.actor_step.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        if self.target_critic is not None:
            self.target_critic.load_state_dict(state["target_critic"])
        self.actor_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.actor_step.nonfinite_windows = state["nonfinite_totals"]["nonfinite_actor_windows"]
        self.critic_update.nonfinite_steps = state["nonfinite_totals"]["nonfinite_critic_steps"]
