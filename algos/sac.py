"""SAC: off-policy soft actor-critic with a learnable temperature (algorithms §6).

One iteration (``SAC.train_iteration``) is ``steps_per_iteration`` batched env steps under
``torch.no_grad()`` (the simulator records nothing). After each step the transitions enter the replay
(:class:`algos.replay.TransitionReplay`; ones with nan/inf entries are left out and counted) and, once the
replay holds a batch, ``updates_per_step`` updates run, each:
  1. twin critics regress on y = r + gamma (1 - terminated) (min_k Q'_k(s', a') - alpha log pi(a'|s')),
     a' ~ pi(.|s'), with Polyak-averaged target critics Q' (truncated episodes bootstrap from the state
     reached before the reset);
  2. the actor minimises alpha log pi(a|s) - min_k Q_k(s, a) with reparameterised a = tanh(u),
     u ~ N(mu(s), sigma(s)), log-std squashed into [logstd_min, logstd_max];
  3. the temperature minimises -log(alpha) (log pi(a|s) + target entropy), which drives the policy's
     entropy toward the target;
  4. target critics: theta' <- (1 - tau) theta' + tau theta.
A step whose gradient has nan/inf entries is skipped and counted (``algos.training.ActorStep``).

Settings follow the rl_games SAC of the fork (``scripts/cfg/alg/sac.yaml`` + env ``sac:`` blocks); the
DiffRL-era settings are the ``diffrl`` variant (``bench.presets``). Departures, stated: hidden layers are
warpbench's Linear -> activation -> LayerNorm (``algos.networks.mlp``); updates start once the replay
holds one batch (no uniform-random warm-up actions); observations are normalised with running statistics
of every observation seen so far, applied when a batch is sampled.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algos.config import JsonConfig, check_at_least_one, check_choice
from algos.critic import polyak_update
from algos.networks import ACTIVATIONS, CriticEnsemble, mlp
from algos.replay import TransitionReplay
from algos.training import ActorStep, Learner


@dataclass(frozen=True)
class SACConfig(JsonConfig):
    """SAC's settings; defaults: the fork's rl_games ``sac.yaml`` with its Ant block (algorithms §6,
    "SAC (rl_games, fork era)")."""

    max_epochs: int = 1000
    """Training iterations of steps_per_iteration batched env steps. Not in the spec (the fork's count is
    not recorded): 1000 x 128 steps x 128 ant envs = 16.4M env steps."""
    steps_per_iteration: int = 128
    """Batched env steps per iteration (fork: 128 steps per episode)."""
    updates_per_step: int = 1
    """Gradient updates after each batched env step (rl_games: one; not in the spec)."""
    batch_size: int = 4096
    """Transitions per update (fork Ant 4096; Hopper, Humanoid, Anymal 2048; SNU 8192)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (fork 1M); checkpointed for resume."""
    gamma: float = 0.99
    """Discount factor (fork 0.99)."""
    tau: float = 0.005
    """Polyak rate of the target critics (fork critic tau 0.005)."""
    actor_hidden: tuple[int, ...] = (128, 64, 32)
    """Hidden widths of the actor MLP (fork Ant [128, 64, 32])."""
    critic_hidden: tuple[int, ...] = (128, 64, 32)
    """Hidden widths of each of the twin critics (fork Ant [128, 64, 32])."""
    activation: str = "elu"
    """Hidden activation of actor and critics (fork ELU): elu, mish, relu or tanh."""
    actor_lr: float = 5e-4
    """Actor learning rate (fork 5e-4)."""
    critic_lr: float = 5e-4
    """Critic learning rate (fork 5e-4)."""
    alpha_lr: float = 1e-4
    """Temperature learning rate (fork 1e-4; DiffRL 5e-3)."""
    init_alpha: float = 0.2
    """Initial temperature alpha (fork 0.2; DiffRL 1)."""
    learnable_temperature: bool = True
    """Learn alpha toward the target entropy (fork); false keeps init_alpha."""
    target_entropy: float | None = None
    """Entropy target of the temperature update; None: -act_dim (the SAC paper's heuristic)."""
    logstd_min: float = -5.0
    """Lower bound of the actor's state-dependent log-std (fork -5)."""
    logstd_max: float = 2.0
    """Upper bound of the actor's state-dependent log-std (fork 2)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas of all three optimisers (torch's defaults; not in the spec)."""
    grad_clip: float | None = None
    """Max global gradient norm of each update; None: no clipping (the spec names none for SAC)."""
    obs_rms: bool = True
    """Normalise observations with running statistics (fork input normalisation)."""
    max_nonfinite_windows: int = 100
    """Raise NonFiniteGradientError after this many consecutive actor (or critic, or temperature) update
    steps with a nan/inf gradient."""

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        check_at_least_one(
            self,
            "max_epochs",
            "steps_per_iteration",
            "updates_per_step",
            "batch_size",
            "buffer_size",
            "max_nonfinite_windows",
        )
        if not self.logstd_min < self.logstd_max:
            raise ValueError(f"logstd_min must be < logstd_max, got {self.logstd_min}, {self.logstd_max}")
        if self.init_alpha <= 0:
            raise ValueError(f"init_alpha must be > 0, got {self.init_alpha}")


class SquashedGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)); log sigma = tanh-rescaled into [logstd_min, logstd_max]."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        activation: str,
        logstd_min: float,
        logstd_max: float,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, activation)
        self.logstd_min, self.logstd_max = logstd_min, logstd_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of the pre-squash Gaussian."""
        mean, raw = self.net(obs).chunk(2, dim=-1)
        logstd = self.logstd_min + 0.5 * (self.logstd_max - self.logstd_min) * (torch.tanh(raw) + 1.0)
        return mean, logstd

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a = tanh(u), u, log pi(a|s)) with reparameterised u; log pi includes the tanh correction."""
        mean, logstd = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        raw = mean + logstd.exp() * noise
        gaussian = (-0.5 * noise.square() - logstd - 0.5 * math.log(2.0 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|.
        correction = (2.0 * (math.log(2.0) - raw - F.softplus(-2.0 * raw))).sum(-1)
        return torch.tanh(raw), raw, gaussian - correction


class Temperature(nn.Module):
    """The learnable entropy temperature, held as log(alpha) so that alpha stays positive."""

    def __init__(self, init_alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))


class SAC(Learner):
    """SAC over any env following the warpbench env protocol (see ``envs/__init__.py``)."""

    def __init__(self, env: Any, config: SACConfig, seed: int) -> None:
        super().__init__(env, config, seed, obs_rms=config.obs_rms)
        self.config: SACConfig = config
        obs_dim, act_dim = env.obs_dim, env.act_dim
        self.actor = SquashedGaussianActor(
            obs_dim, act_dim, config.actor_hidden, config.activation, config.logstd_min, config.logstd_max
        ).to(self.device)
        self.critic = CriticEnsemble(obs_dim + act_dim, config.critic_hidden, config.activation, 2)
        self.critic.to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.temperature = Temperature(config.init_alpha).to(self.device)
        self.target_entropy = (
            -float(act_dim) if config.target_entropy is None else float(config.target_entropy)
        )
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, betas=config.betas
        )
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, betas=config.betas
        )
        self.alpha_optimizer = torch.optim.Adam(
            self.temperature.parameters(), lr=config.alpha_lr, betas=config.betas
        )
        clip = math.inf if config.grad_clip is None else config.grad_clip
        limit = config.max_nonfinite_windows
        self.steps = {
            "actor": ActorStep(self.actor, self.actor_optimizer, clip, limit),
            "critic": ActorStep(self.critic, self.critic_optimizer, clip, limit),
            "alpha": ActorStep(self.temperature, self.alpha_optimizer, clip, limit),
        }
        self.replay = TransitionReplay(config.buffer_size, obs_dim, act_dim, self.device)
        self.nonfinite_transitions = 0
        self.updates = 0
        self.env.reset()

    @property
    def env_steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration * self.env.num_envs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations: tanh(mu), or a sample from the training noise stream."""
        inputs = self.normalize_obs(obs)
        if deterministic:
            return torch.tanh(self.actor(inputs)[0])
        return self.actor.sample(inputs, self.generator)[0]

    def train_iteration(self) -> dict[str, float]:
        """``steps_per_iteration`` env steps, each followed by its updates. Returns per-iteration metrics."""
        sums: dict[str, float] = {}
        updates = 0
        dropped = terminations = truncations = 0
        obs = self.env.detach_state()
        for _ in range(self.config.steps_per_iteration):
            with torch.no_grad():
                action, action_raw, _ = self.actor.sample(self.normalize_obs(obs), self.generator)
                next_obs, reward, terminated, truncated, info = self.env.step(action)
            final_obs = info["obs_before_reset"]
            finite = torch.isfinite(reward) & torch.isfinite(obs).all(-1) & torch.isfinite(final_obs).all(-1)
            self.replay.add(
                obs=obs[finite],
                action=action[finite],
                reward=reward[finite],
                next_obs=final_obs[finite],
                terminated=terminated[finite],
            )
            dropped += int((~finite).sum())
            if self.obs_rms is not None:
                self.obs_rms.update(next_obs)
            self.record_step(obs, action, action_raw, reward, terminated, truncated, info)
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            obs = next_obs
            if self.replay.size >= self.config.batch_size:
                for _ in range(self.config.updates_per_step):
                    for name, value in self.update().items():
                        sums[name] = sums.get(name, 0.0) + value
                    updates += 1
        self.nonfinite_transitions += dropped
        metrics = {name: total / updates for name, total in sums.items()}
        for name in ("nonfinite_actor_grad", "nonfinite_critic_grad", "nonfinite_alpha_grad"):
            if name in metrics:
                metrics[name] = sums[name]  # counts, not means
        metrics.update(
            updates=float(updates),
            replay_size=float(self.replay.size),
            nonfinite_transitions=float(dropped),
            early_terminations=float(terminations),
            truncations=float(truncations),
        )
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    def update(self) -> dict[str, float]:
        """One critic, actor and temperature step on a replay batch, then the target critics' Polyak step."""
        cfg = self.config
        batch = self.replay.sample(cfg.batch_size, self.generator)
        obs, next_obs = self.normalize_obs(batch["obs"]), self.normalize_obs(batch["next_obs"])
        alpha = self.temperature.log_alpha.detach().exp()
        with torch.no_grad():
            next_action, _, next_log_prob = self.actor.sample(next_obs, self.generator)
            next_q = self.target_critic(torch.cat([next_obs, next_action], -1)).min(dim=0).values
            soft_value = next_q - alpha * next_log_prob
            target = batch["reward"] + cfg.gamma * torch.where(batch["terminated"], 0.0, soft_value)
        q = self.critic(torch.cat([obs, batch["action"]], -1))
        critic_loss = (q - target).square().mean(dim=1).sum()
        critic = self.steps["critic"](critic_loss, self.updates)

        action, _, log_prob = self.actor.sample(obs, self.generator)
        q_pi = self.critic(torch.cat([obs, action], -1)).min(dim=0).values
        actor = self.steps["actor"]((alpha * log_prob - q_pi).mean(), self.updates)

        metrics = {
            "critic_loss": critic["actor_loss"],
            "critic_grad_norm": critic["actor_grad_norm"],
            "nonfinite_critic_grad": critic["nonfinite_actor_grad"],
            **actor,
            "entropy": -float(log_prob.detach().mean()),
            "alpha": float(alpha),
            "q_mean": float(q.detach().mean()),
        }
        if cfg.learnable_temperature:
            alpha_loss = -(self.temperature.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            step = self.steps["alpha"](alpha_loss, self.updates)
            metrics.update(alpha_loss=step["actor_loss"], nonfinite_alpha_grad=step["nonfinite_actor_grad"])
        polyak_update(self.target_critic, self.critic, 1.0 - cfg.tau)
        self.updates += 1
        return metrics

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the whole run: skipped update steps per network and replay-rejected transitions."""
        totals = {f"nonfinite_{name}_steps": step.nonfinite_windows for name, step in self.steps.items()}
        return {**totals, "nonfinite_transitions": self.nonfinite_transitions}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, temperature, replay, normaliser,
        RNG, episode statistics, env state."""
        return {
            **super().state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "temperature": self.temperature.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "updates": self.updates,
            "nonfinite": {
                name: (step.consecutive_nonfinite, step.nonfinite_windows)
                for name, step in self.steps.items()
            },
            "nonfinite_transitions": self.nonfinite_transitions,
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        super().load_state_dict(state)
        for name in ("actor", "critic", "target_critic", "temperature"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.replay.load_state_dict(state["replay"])
        self.updates = state["updates"]
        for name, (consecutive, total) in state["nonfinite"].items():
            self.steps[name].consecutive_nonfinite, self.steps[name].nonfinite_windows = consecutive, total
        self.nonfinite_transitions = state["nonfinite_transitions"]
        self.env.load_state_dict(state["env"])
