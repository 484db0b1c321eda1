"""TD-MPC2: a world model, a Q-ensemble and a policy prior learned online, acting by MPPI planning
(algorithms §5; TD-MPC2 arXiv 2310.16828, nicklashansen/tdmpc2 @ e9f5932).

The world model is the project's one (:class:`algos.world_model.WorldModel`: encoder E, dynamics F,
two-hot reward head R); this file adds the Q-ensemble and the policy prior. One iteration
(``TDMPC2.train_iteration``) is ``steps_per_iteration`` vectorised env steps; at each:
  1. act: uniform random actions until ``seed_steps`` env steps are stored, then MPPI (:mod:`algos.mppi`)
     from E(obs), warm-started with the previous plan shifted by one, plus N(0, std) exploration noise
     (``plan=false``: a sample of the policy prior);
  2. store the transition in a :class:`~algos.window_replay.WindowReplay`;
  3. once seeding is over, take ``updates_per_step`` gradient updates (the first time ``seed_updates``),
     each on a batch of sub-trajectories s_0..s_H:
     - model and Q-ensemble (one Adam, encoder lr x 0.3, grad clip 20): latent rollout z_0 = E(s_0),
       z_{t+1} = F(z_t, a_t); losses weighted rho^t, summed over t and divided by H:
       20 x consistency ||z_{t+1} - sg(E(s_{t+1}))||^2, 0.1 x reward CE(R(z_t, a_t), two-hot(r_t)),
       0.1 x value CE(Q_k(z_t, a_t), two-hot(y_t)) averaged over the 5 Q's, with
       y_t = r_t + gamma (1 - terminated_t) min of 2 randomly chosen target Q's at (z', pi(z')),
       z' = E(s_{t+1});
     - policy prior (its own Adam): minimise the rho^t-weighted mean of 1e-4 log pi(a|z) - Q(z, a) / S at
       a ~ pi(z) over the detached rollout latents, S a running scale of Q;
     - target Q's: Polyak tau 0.01.

Departures, stated: the world model has no termination head; real terminations from the replay end the
value targets (TD-MPC2 learns a termination head for episodic tasks), the planner imagines none. The
replay serves windows of stored steps at once (:mod:`algos.window_replay`) instead of whole finished
episodes. Q(z, pi(z)) in the planner's terminal value and the policy loss is the ensemble mean (TD-MPC2:
the mean of 2 random members). Evaluation (``act(deterministic=True)``) plans from scratch at every step
(no warm start: the harness's policy sees no episode boundaries) with planner noise from a fixed seed and
no exploration noise, so it is a function of the observation and draws nothing from the training streams.

The trained world model loads into PWM: :meth:`TDMPC2.export_world_model` gives it as a
:class:`~algos.wm_training.WorldModelTrainer` (``bench.run`` writes it to ``checkpoints/world_model.pt`` in
the format of :func:`algos.wm_training.load_world_model`; rewards are not normalised, ``rew_rms`` off).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algos.config import JsonConfig, check_at_least_one
from algos.critic import polyak_update
from algos.mppi import MPPIConfig, plan, shift
from algos.networks import zero_nonfinite_gradients
from algos.training import ActorStep, Learner
from algos.window_replay import WindowReplay
from algos.wm_training import WMTrainConfig, WorldModelTrainer
from algos.world_model import WorldModel, WorldModelConfig, _mlp, world_model_config

EVAL_PLAN_SEED = 0
"""Seed of the planner noise of every evaluation action (a fixed function of the observation)."""


def tdmpc2_world_model(size: str = "5M") -> WorldModelConfig:
    """TD-MPC2's world model of ``size``: 101 two-hot reward bins decoded with symexp (algorithms §5)."""
    return world_model_config(size, reward_bins=101, reward_decode="symexp")


@dataclass(frozen=True)
class TDMPC2Config(JsonConfig):
    """TD-MPC2's single-task settings (algorithms §5 unless noted)."""

    world_model: WorldModelConfig = field(default_factory=tdmpc2_world_model)
    """Architecture of E, F, R (default size 5M: encoder [256], hidden [512, 512], latent 512, SimNorm 8,
    101 reward bins); its ``hidden`` widths are also those of each Q-function and of the policy prior."""
    horizon: int = 3
    """Sub-trajectory length H of the model, value and policy losses (TD-MPC2: 3; PWM's WMs: 16)."""
    rho: float = 0.5
    """Weight rho^t of step t in every loss (TD-MPC2: 0.5; PWM's WMs: 0.99)."""
    batch_size: int = 256
    """Sub-trajectories per gradient update (TD-MPC2: 256; PWM's WMs: 1024)."""
    lr: float = 3e-4
    """Adam learning rate of model, Q-ensemble and policy prior (constant)."""
    encoder_lr_scale: float = 0.3
    """The encoder's learning rate is lr times this."""
    grad_clip: float = 20.0
    """Max global gradient norm of the model + Q update and of the policy update."""
    consistency_coef: float = 20.0
    """Weight of the latent consistency loss."""
    reward_coef: float = 0.1
    """Weight of the reward cross-entropy."""
    value_coef: float = 0.1
    """Weight of the value cross-entropy (mean over the Q-ensemble)."""
    num_q: int = 5
    """Q-functions in the ensemble."""
    q_dropout: float = 0.01
    """Dropout after the first layer of each Q-function (training updates only)."""
    tau: float = 0.01
    """Polyak rate of the target Q's: theta' <- (1 - tau) theta' + tau theta."""
    entropy_coef: float = 1e-4
    """Entropy bonus of the policy prior."""
    log_std_min: float = -10.0
    """Lower bound of the policy prior's log-std."""
    log_std_max: float = 2.0
    """Upper bound of the policy prior's log-std."""
    scale_tau: float = 0.01
    """Rate of the running scale of Q in the policy loss (an average of its 5th-95th percentile range over
    the batch, at least 1)."""
    discount: float | None = None
    """gamma; None: TD-MPC2's heuristic from the episode length T, clip((T/5 - 1)/(T/5), 0.95, 0.995)."""
    plan: bool = True
    """Act by MPPI planning (TD-MPC2's mpc=true); false: with the policy prior alone."""
    mppi: MPPIConfig = field(default_factory=MPPIConfig)
    """The planner's settings (TD-MPC2's defaults)."""
    steps_per_iteration: int = 1000
    """Vectorised env steps per iteration (one row of train.csv; the harness's unit of progress)."""
    max_epochs: int = 10_000
    """Iterations (TD-MPC2: 10M env steps = 10,000 x 1000 steps of one env)."""
    updates_per_step: int = 1
    """Gradient updates per vectorised env step (TD-MPC2: one per env step of its single env)."""
    seed_steps: int | None = None
    """Env steps of uniform random actions before learning; None: TD-MPC2's max(1000, 5 x episode length)."""
    seed_updates: int | None = None
    """Updates of the first learning step; None: seed_steps x updates_per_step / num_envs (TD-MPC2: as
    many as seed steps, at its one update per env step)."""
    replay_capacity: int = 1_000_000
    """Replay transitions (all envs together)."""
    max_nonfinite_updates: int = 10
    """Raise NonFiniteGradientError after this many consecutive policy updates with a nan/inf gradient."""

    def __post_init__(self) -> None:
        check_at_least_one(
            self,
            "horizon",
            "batch_size",
            "num_q",
            "steps_per_iteration",
            "max_epochs",
            "updates_per_step",
            "max_nonfinite_updates",
        )
        if self.num_q < 2:
            raise ValueError(f"num_q must be >= 2 (targets take the min of 2), got {self.num_q}")
        if self.world_model.reward_bins < 2 or self.world_model.reward_decode != "symexp":
            raise ValueError(
                "TD-MPC2 needs a two-hot reward head (world_model.reward_bins >= 2) decoded "
                "with reward_decode=symexp"
            )
        if self.discount is not None and not 0 < self.discount <= 1:
            raise ValueError(f"discount must be in (0, 1] or null, got {self.discount}")
        if not 0 < self.rho <= 1 or not 0 < self.tau <= 1:
            raise ValueError("rho and tau must be in (0, 1]")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min must be below log_std_max")
        for name in ("seed_steps", "seed_updates"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or null, got {value}")


def heuristic_discount(episode_length: int) -> float:
    """TD-MPC2's per-task discount clip((T/5 - 1) / (T/5), 0.95, 0.995)."""
    frames = episode_length / 5
    return min(max((frames - 1) / frames, 0.95), 0.995)


def _init(module: nn.Module) -> None:
    """The world model's initialisation (truncated normal std 0.02, zero bias), zero output weights."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)


class QEnsemble(nn.Module):
    """K Q-functions Q_k(z, a) with two-hot outputs, built like the world model's reward head."""

    def __init__(self, config: TDMPC2Config, act_dim: int) -> None:
        super().__init__()
        model = replace(config.world_model, dropout=config.q_dropout)
        in_dim, bins = model.latent_dim + act_dim, model.reward_bins
        self.members = nn.ModuleList(
            _mlp(in_dim, model.hidden, bins, model, latent=False) for _ in range(config.num_q)
        )
        _init(self)
        for member in self.members:
            nn.init.zeros_(member[-1].weight)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Logits [K, ..., bins]."""
        inputs = torch.cat([z, action], dim=-1)
        return torch.stack([member(inputs) for member in self.members])


class PolicyPrior(nn.Module):
    """Squashed Gaussian pi(a|z): a = tanh(mu + std * eps), log-std squashed into [log_std_min, max]."""

    def __init__(self, config: TDMPC2Config, act_dim: int) -> None:
        super().__init__()
        model = config.world_model
        self.net = _mlp(
            model.latent_dim, model.hidden, 2 * act_dim, replace(model, dropout=0.0), latent=False
        )
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max
        _init(self)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-std) of the pre-squash Gaussian."""
        mean, raw = self.net(z).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1)
        return mean, log_std

    def sample(self, z: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in (-1, 1), its log-probability with the tanh correction), reparameterised."""
        mean, log_std = self(z)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        raw = mean + log_std.exp() * noise
        action = torch.tanh(raw)
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(x)/dx| = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
        correction = 2 * (math.log(2.0) - raw - F.softplus(-2 * raw))
        return action, log_prob - correction.sum(-1)


class _LatentPlanner:
    """The :class:`algos.mppi.PlanningModel` of a TD-MPC2 agent: F and R, Q(z, pi(z)) as terminal value."""

    def __init__(self, agent: TDMPC2) -> None:
        self.agent = agent

    def step(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.agent.world_model.step(z, action)

    def value(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.agent.q_value(z, self.policy(z, generator))

    def policy(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.agent.policy.sample(z, generator)[0]


class TDMPC2(Learner):
    """TD-MPC2 over any env following the warpbench env protocol (see ``envs/__init__.py``).

    The recorder gets the applied action also as ``action_raw`` (planned actions have no pre-squash sample).
    """

    def __init__(self, env: Any, config: TDMPC2Config, seed: int) -> None:
        super().__init__(env, config, seed)
        self.config: TDMPC2Config = config
        self.gamma = config.discount or heuristic_discount(env.max_episode_steps)
        self.seed_steps = (
            config.seed_steps if config.seed_steps is not None else max(1000, 5 * env.max_episode_steps)
        )
        self.seed_updates = (
            config.seed_updates
            if config.seed_updates is not None
            else max(1, round(self.seed_steps * config.updates_per_step / env.num_envs))
        )
        # The world model first (its initialisation draws from the global generator, seeded by the caller).
        self.world_model = WorldModel(env.obs_dim, env.act_dim, config.world_model).to(self.device)
        self.q = QEnsemble(config, env.act_dim).to(self.device)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False).eval()
        self.policy = PolicyPrior(config, env.act_dim).to(self.device)
        encoder = list(self.world_model.encoder.parameters())
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.world_model.parameters() if id(p) not in encoder_ids]
        self.model_params = [*encoder, *rest, *self.q.parameters()]
        self.model_optimizer = torch.optim.Adam(
            [
                {"params": encoder, "lr": config.lr * config.encoder_lr_scale},
                {"params": rest + list(self.q.parameters())},
            ],
            lr=config.lr,
        )
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.policy_step = ActorStep(
            self.policy, self.policy_optimizer, config.grad_clip, config.max_nonfinite_updates
        )
        self.q_scale = 1.0
        self.replay = WindowReplay(
            config.replay_capacity, env.num_envs, env.obs_dim, env.act_dim, self.device
        )
        self.plan_mean = torch.zeros(env.num_envs, config.mppi.horizon, env.act_dim, device=self.device)
        self.learning = False
        """True once the seed updates are done."""
        self.nonfinite_model_steps = 0
        self.nonfinite_plan_scores = 0
        self.nonfinite_samples = 0
        self.planner = _LatentPlanner(self)
        self.q.eval()  # dropout only inside updates
        env.reset()

    # -- protocol -----------------------------------------------------------------------------------

    @property
    def env_steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration * self.env.num_envs

    def q_value(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q(z, a): the ensemble mean of the decoded two-hot values."""
        return self.world_model.decode_reward(self.q(z, action)).mean(dim=0)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Env action for raw observations. Deterministic: MPPI from scratch with a fixed-seed noise stream
        and no exploration (``plan=false``: tanh of the prior's mean); else a training-style action without
        warm start from the training stream."""
        z = self.world_model.encode(obs)
        if not self.config.plan:
            return (
                torch.tanh(self.policy(z)[0]) if deterministic else self.policy.sample(z, self.generator)[0]
            )
        generator = self.generator
        if deterministic:
            generator = torch.Generator(device=self.device).manual_seed(EVAL_PLAN_SEED)
        result = plan(
            self.planner,
            z,
            self.config.mppi,
            self.gamma,
            generator,
            self.env.act_dim,
            explore=not deterministic,
        )
        return result.action

    def train_iteration(self) -> dict[str, float]:
        """``steps_per_iteration`` env steps, each followed (after seeding) by its gradient updates."""
        cfg = self.config
        totals: dict[str, float] = {}
        reports: dict[str, int] = {}
        updates = 0
        plan_time = update_time = 0.0
        terminations = truncations = 0
        reward_sum = 0.0
        obs = self.env.detach_state()
        for step in range(cfg.steps_per_iteration):
            stored = (self.iteration * cfg.steps_per_iteration + step) * self.env.num_envs
            start = time.perf_counter()
            action = self._training_action(obs, seeding=stored < self.seed_steps)
            plan_time += time.perf_counter() - start
            with torch.no_grad():
                next_obs, reward, terminated, truncated, info = self.env.step(action)
            done = self.record_step(obs, action, action, reward, terminated, truncated, info)
            self.replay.add(obs, action, reward, info["obs_before_reset"], terminated, done)
            self.plan_mean = torch.where(done[:, None, None], 0.0, self.plan_mean)
            terminations += int(terminated.sum())
            truncations += int(truncated.sum())
            reward_sum += float(reward.sum())
            obs = next_obs
            seeded = stored + self.env.num_envs >= self.seed_steps
            if seeded and self.replay.can_sample(cfg.horizon):
                count = cfg.updates_per_step if self.learning else self.seed_updates
                self.learning = True
                start = time.perf_counter()
                for _ in range(count):
                    for name, value in self.update().items():
                        totals[name] = totals.get(name, 0.0) + value
                        reports[name] = reports.get(name, 0) + 1
                update_time += time.perf_counter() - start
                updates += count
        metrics = {name: value / reports[name] for name, value in totals.items()}  # means per update
        metrics.update(
            updates=float(updates),
            collect_only=float(updates == 0),
            early_terminations=float(terminations),
            truncations=float(truncations),
            reward_mean=reward_sum / (cfg.steps_per_iteration * self.env.num_envs),
            plan_time_s=plan_time,
            update_time_s=update_time,
            replay_transitions=float(self.replay.num_transitions),
            q_scale=self.q_scale,
        )
        metrics.update(self.episodes.metrics())
        self.iteration += 1
        return metrics

    def _training_action(self, obs: torch.Tensor, seeding: bool) -> torch.Tensor:
        """Uniform random while seeding; else MPPI warm-started and exploring (or a sample of the prior)."""
        if seeding:
            shape = (self.env.num_envs, self.env.act_dim)
            return torch.rand(shape, generator=self.generator, device=self.device) * 2 - 1
        with torch.no_grad():
            z = self.world_model.encode(obs)
            if not self.config.plan:
                return self.policy.sample(z, self.generator)[0]
            result = plan(
                self.planner,
                z,
                self.config.mppi,
                self.gamma,
                self.generator,
                self.env.act_dim,
                init_mean=shift(self.plan_mean),
                explore=True,
            )
        self.plan_mean = result.mean
        self.nonfinite_plan_scores += result.nonfinite_scores
        return result.action

    # -- one gradient update -------------------------------------------------------------------------

    def update(self) -> dict[str, float]:
        """One model + Q update, one policy-prior update and the target Polyak step on a replay batch.

        Windows with a nan/inf observation, reward or value target are left out and counted (a two-hot
        target of nan has no bin); a batch with none left is skipped."""
        cfg = self.config
        batch = self.replay.sample(cfg.batch_size, cfg.horizon, self.generator)
        obs, action = batch["obs"].transpose(0, 1), batch["action"].transpose(0, 1)
        reward, terminated = batch["reward"].transpose(0, 1), batch["terminated"].transpose(0, 1)
        # Dropout masks come from a stream seeded by the trainer's generator, so a checkpoint carries them.
        dropout_seed = int(torch.randint(2**62, (1,), generator=self.generator, device=self.device))
        with torch.no_grad():
            next_z = self.world_model.encode(obs[1:])
            targets = self.value_targets(next_z, reward, terminated)
        keep = torch.isfinite(obs).all(-1).all(0) & torch.isfinite(targets).all(0)
        dropped = int((~keep).sum())
        self.nonfinite_samples += dropped
        if not bool(keep.any()):
            return {"nonfinite_samples": float(dropped)}
        if dropped:
            kept = (x[:, keep] for x in (obs, next_z, action, reward, targets))
            obs, next_z, action, reward, targets = kept
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(dropout_seed)
            self.q.train()
            try:
                metrics, latents = self._model_update(obs[0], next_z, action, reward, targets)
                metrics.update(self._policy_update(latents))
            finally:
                self.q.eval()
        polyak_update(self.target_q, self.q, 1.0 - cfg.tau)
        metrics["nonfinite_samples"] = float(dropped)
        return metrics

    @torch.no_grad()
    def value_targets(
        self, next_z: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor
    ) -> torch.Tensor:
        """y_t = r_t + gamma (1 - terminated_t) min of 2 random target Q's at (z', pi(z')); [H, B]."""
        model = self.world_model
        next_action = self.policy.sample(next_z, self.generator)[0]
        pair = torch.randperm(self.config.num_q, generator=self.generator, device=self.device)[:2]
        next_q = model.decode_reward(self.target_q(next_z, next_action)[pair]).min(dim=0).values
        return reward + self.gamma * (~terminated).float() * next_q

    def _model_update(
        self,
        obs: torch.Tensor,
        next_z: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[dict[str, float], torch.Tensor]:
        """One step on the model + Q losses from first observations ``obs`` [B, d] and the encoded later
        ones ``next_z`` [H, B, L]; returns the metrics and the rollout latents [H+1, B, L] (detached)."""
        cfg, model, horizon = self.config, self.world_model, self.config.horizon
        z = model.encode(obs)
        latents, consistency = [z], obs.new_zeros(())
        for t in range(horizon):
            z = model.next(z, action[t])
            consistency = consistency + cfg.rho**t * F.mse_loss(z, next_z[t])
            latents.append(z)
        rollout = torch.stack(latents[:-1])
        weights = cfg.rho ** torch.arange(horizon, device=self.device, dtype=z.dtype)[:, None]
        reward_loss = (
            (model.reward_loss(model.reward_output(rollout, action), reward) * weights).mean(1).sum()
        )
        q_loss = model.reward_loss(self.q(rollout, action), targets[None].expand(cfg.num_q, -1, -1))
        value_loss = (q_loss.mean(0) * weights).mean(1).sum()
        loss = (
            cfg.consistency_coef * consistency + cfg.reward_coef * reward_loss + cfg.value_coef * value_loss
        ) / horizon
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nonfinite = zero_nonfinite_gradients(self.model_params)
        self.nonfinite_model_steps += int(nonfinite)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model_params, cfg.grad_clip))
        self.model_optimizer.step()
        metrics = {
            "model_loss": float(loss.detach()),
            "consistency_loss": float(consistency.detach()) / horizon,
            "reward_loss": float(reward_loss.detach()) / horizon,
            "value_loss": float(value_loss.detach()) / horizon,
            "model_grad_norm": grad_norm,
            "nonfinite_model_grad": float(nonfinite),
            "value_target_mean": float(targets.mean()),
        }
        return metrics, torch.stack(latents).detach()

    def _policy_update(self, latents: torch.Tensor) -> dict[str, float]:
        """The prior's step on the rollout latents [H+1, B, L] (detached; Q's gradients are not kept)."""
        cfg = self.config
        action, log_prob = self.policy.sample(latents, self.generator)
        q = self.q_value(latents, action)
        with torch.no_grad():
            low, high = torch.quantile(q[0], torch.tensor([0.05, 0.95], device=self.device))
            spread = max(float(high - low), 1.0)
            if math.isfinite(spread):  # a nan/inf batch leaves the scale as it was
                self.q_scale += cfg.scale_tau * (spread - self.q_scale)
        weights = cfg.rho ** torch.arange(latents.shape[0], device=self.device, dtype=q.dtype)[:, None]
        loss = ((cfg.entropy_coef * log_prob - q / self.q_scale) * weights).mean(1).mean()
        metrics = self.policy_step(loss, self.iteration)
        metrics["policy_entropy"] = float(-log_prob.detach().mean())
        return metrics

    # -- the world model for PWM --------------------------------------------------------------------

    def export_world_model(self) -> WorldModelTrainer:
        """A copy of the world model in a fresh :class:`WorldModelTrainer` with TD-MPC2's loss settings
        (H, rho, batch, lr, clip; raw rewards: ``rew_rms`` off) and a fresh optimiser, as PWM loads it
        (:func:`algos.wm_training.world_model_checkpoint`)."""
        cfg = self.config
        train = WMTrainConfig(
            horizon=cfg.horizon,
            batch_size=cfg.batch_size,
            rho=cfg.rho,
            lr=cfg.lr,
            grad_clip=cfg.grad_clip,
            rew_rms=False,
        )
        return WorldModelTrainer(copy.deepcopy(self.world_model), train)

    # -- bookkeeping --------------------------------------------------------------------------------

    def nonfinite_totals(self) -> dict[str, int]:
        """Counts over the run: skipped policy updates, model updates with zeroed gradients, planner
        trajectory scores that were nan/inf, replay windows left out of updates for nan/inf values."""
        return {
            "nonfinite_actor_windows": self.policy_step.nonfinite_windows,
            "nonfinite_model_steps": self.nonfinite_model_steps,
            "nonfinite_plan_scores": self.nonfinite_plan_scores,
            "nonfinite_samples": self.nonfinite_samples,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly: networks, optimisers, generator, replay, env, plan."""
        return {
            **super().state_dict(),
            "world_model": self.world_model.state_dict(),
            "q": self.q.state_dict(),
            "target_q": self.target_q.state_dict(),
            "policy": self.policy.state_dict(),
            "model_optimizer": self.model_optimizer.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "q_scale": self.q_scale,
            "replay": self.replay.state_dict(),
            "plan_mean": self.plan_mean.clone(),
            "learning": self.learning,
            "consecutive_nonfinite": self.policy_step.consecutive_nonfinite,
            "nonfinite_totals": self.nonfinite_totals(),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (tensors may be on the CPU; they are moved to the device)."""
        # Checkpoints written before the shared Learner base nest the episode statistics.
        super().load_state_dict({**state, **state.get("episodes", {})})
        for name in ("world_model", "q", "target_q", "policy", "model_optimizer", "policy_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.q_scale = state["q_scale"]
        self.replay.load_state_dict(state["replay"])
        self.plan_mean = state["plan_mean"].to(self.device)
        self.learning = state["learning"]
        self.policy_step.consecutive_nonfinite = state["consecutive_nonfinite"]
        totals = state["nonfinite_totals"]
        self.policy_step.nonfinite_windows = totals["nonfinite_actor_windows"]
        self.nonfinite_model_steps = totals["nonfinite_model_steps"]
        self.nonfinite_plan_scores = totals["nonfinite_plan_scores"]
        self.nonfinite_samples = totals["nonfinite_samples"]
        self.env.load_state_dict(state["env"])
