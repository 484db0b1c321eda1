"""PWM diagnostics: how far the world model's view of the actor's problem is from the simulator's.

On a fixed batch of real start states (the env's reset states, drawn once) and fixed policy noise, the actor
is rolled out H steps twice with the same rule a_h = tanh(mu(E(o_h)) + std * eps_h): in the world model
(the imagined return PWM optimises) and in the differentiable simulator (the real return). Compared:

- ``imagined_return`` / ``real_return`` / ``return_gap``: discounted H-step returns in the model's reward
  units (real rewards normalised by the model's ``rew_rms``), over the steps before the real episode's first
  end (the same steps for both); ``real_return_raw`` in env units;
- ``gradient_cosine``: cosine between the gradients of the two returns w.r.t. the actor's parameters (actor
  inputs detached as in training when ``detach``; ``algos.gradient_stats.gradient_cosine``, shared with
  ``bench.landscape``; nan when either gradient is zero);
- the end-of-window value the actor also maximises, ``discount * V(z_H)`` in the model against
  ``discount * V(E(o_H))`` at the simulator's end state (0 for envs whose real episode ended; with the
  termination head the model's is weighted by its continuation probability, as in training):
  ``value_gradient_cosine`` between the two value terms' gradients, ``objective_gradient_cosine`` between
  the gradients of the whole objectives (return + value: what the actor is trained on against what the
  simulator would give it with the same critic), and ``model_value_gradient_ratio`` /
  ``real_value_gradient_ratio``, the norm of the value term's gradient over the return's (above 1: the
  critic, not the H-step rewards, steers the actor);
- ``wm_*_error``: the model's prediction errors along the real trajectory, data it never trained on (these
  rollouts enter no replay): latent MSE ||F(z, a) - E(o')||^2 and reward squared error one step ahead
  (teacher-forced) and H steps open-loop from E(o_0) with the real actions, and ``model_return_real_actions``,
  the model's return of those same actions (compare with ``real_return``);
- ``critic_value`` vs ``critic_target``: V(E(o_0)) against the real H-step return plus gamma^H V(E(o_H)) for
  envs whose episode went on (0 for those that ended); ``critic_gap`` their difference;
- ``imagined_return_window`` vs ``real_return``: the whole imagined window (what the actor optimises) against
  the real episodic return (0 after the real episode's end, model units); ``episodic_gap`` their difference,
  which grows when the actor exploits the model (e.g. falls where the model sees none): offline PWM's
  stopping rule reads it. With ``termination`` (offline PWM with a termination head) imagined rewards are
  weighted by the head's continuation probability, as in training, and ``imagined_termination`` is the
  model's probability of a termination within the window (compare ``real_episode_ends`` / N).

:func:`heldout_errors` measures the model's one-step and H-step errors on fixed windows of held-out dataset
episodes (a split recorded by ``bench.pretrain``; :func:`heldout_windows`), and its termination head there.

The env is put back exactly as found (its ``state_dict``), so a run with diagnostics trains bit-identically
to one without.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from algos.dataset import EpisodeDataset, sample_subtrajectories
from algos.gradient_stats import gradient_cosine
from algos.networks import CriticEnsemble, StochasticActor
from algos.normalizers import RunningMeanStd
from algos.world_model import WorldModel

HELDOUT_WINDOWS = 256
"""Held-out windows the prediction errors are measured on (fixed for a run)."""


def reset_snapshot(env: Any) -> dict[str, Any]:
    """The env's state after a reset (its start-state distribution, from its own generator), leaving ``env``
    and its random stream exactly as found."""
    saved = env.state_dict()
    env.reset()
    start = env.state_dict()
    env.load_state_dict(saved)
    return start


def policy_noise(
    horizon: int, num_envs: int, act_dim: int, seed: int, device: str | torch.device
) -> torch.Tensor:
    """Fixed standard-normal policy noise [H, N, act_dim] from its own generator (no shared stream)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(horizon, num_envs, act_dim, generator=generator, device=device)


def _action(actor: StochasticActor, z: torch.Tensor, noise: torch.Tensor, detach: bool) -> torch.Tensor:
    return torch.tanh(actor(z.detach() if detach else z) + actor.std() * noise)


def discounted_return(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum_h gamma^h mask_h r_h over the window, per env: rewards and mask [H, N] -> [N]."""
    discounts = gamma ** torch.arange(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    return (discounts[:, None] * mask * rewards).sum(dim=0)


def real_rollout(
    env: Any, world_model: WorldModel, actor: StochasticActor, noise: torch.Tensor, detach: bool
) -> dict[str, torch.Tensor]:
    """H differentiable simulator steps from the env's current state. Returns ``obs`` [H+1, N, d] (the
    observation reached at each step, before any auto-reset; detached), ``action`` [H, N, a] (detached),
    ``reward`` [H, N] (differentiable w.r.t. the actor) and ``alive`` [H, N]: 1 up to and including the
    step at which the env's episode first ended; ``ended`` [N]: the episode ended inside the window;
    ``final_obs`` [N, d]: the last step's observation, differentiable w.r.t. the actor."""
    obs = env.detach_state()
    observations, actions, rewards, alive = [obs.detach()], [], [], []
    running = torch.ones(obs.shape[0], device=obs.device)
    for eps in noise:
        action = _action(actor, world_model.encode(obs), eps, detach)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(info["obs_before_reset"].detach())
        actions.append(action.detach())
        rewards.append(reward)
        alive.append(running)
        running = running * (~(terminated | truncated)).float()
    return {
        "obs": torch.stack(observations),
        "action": torch.stack(actions),
        "reward": torch.stack(rewards),
        "alive": torch.stack(alive),
        "ended": running == 0,
        "final_obs": info["obs_before_reset"],
    }


def imagined_rewards(
    world_model: WorldModel,
    actor: StochasticActor,
    obs: torch.Tensor,
    noise: torch.Tensor,
    detach: bool,
    termination: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model rewards [H, N] of the actor's H-step imagined rollout from observations ``obs`` (as PWM), the
    probability [N] of no imagined termination in the window and the final latent z_H [N, latent].
    ``termination``: rewards are weighted by the termination head's continuation probability as in offline
    PWM (else the probability is 1)."""
    z = world_model.encode(obs).detach()
    rewards = []
    continuation = torch.ones(obs.shape[0], device=obs.device)
    for eps in noise:
        z, reward = world_model.step(z, _action(actor, z, eps, detach))
        if termination:
            reward = continuation * reward
            continuation = continuation * (1.0 - torch.sigmoid(world_model.termination_logit(z)))
        rewards.append(reward)
    return torch.stack(rewards), continuation, z


@torch.no_grad()
def prediction_errors(
    world_model: WorldModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    alive: torch.Tensor,
    gamma: float,
) -> dict[str, float]:
    """The model's errors along a real trajectory (obs [H+1, N, d], action [H, N, a], reward [H, N] in model
    units, alive [H, N]): latent MSE and reward squared error one step ahead and at H steps open-loop, and
    the model's discounted return of the real actions replayed open-loop from E(o_0)."""
    targets = world_model.encode(obs)
    one_step_z, one_step_r = world_model.step(targets[:-1], action)
    z, open_loop = targets[0], []
    for step_action in action:
        z, open_loop_r = world_model.step(z, step_action)
        open_loop.append(open_loop_r)
    whole = alive[-1] > 0  # envs whose episode ran through the window: the H-step comparison is defined
    count = alive.sum().clamp(min=1)
    errors = {
        "wm_latent_error_1step": float(((one_step_z - targets[1:]).square().mean(-1) * alive).sum() / count),
        "wm_reward_error_1step": float(((one_step_r - reward).square() * alive).sum() / count),
        "model_return_real_actions": float(discounted_return(torch.stack(open_loop), alive, gamma).mean()),
    }
    if bool(whole.any()):
        errors["wm_latent_error_Hstep"] = float((z - targets[-1]).square().mean(-1)[whole].mean())
        errors["wm_reward_error_Hstep"] = float((open_loop_r - reward[-1]).square()[whole].mean())
    return errors


def diagnose(
    env: Any,
    start_state: dict[str, Any],
    world_model: WorldModel,
    actor: StochasticActor,
    critic: CriticEnsemble,
    rew_rms: RunningMeanStd | None,
    noise: torch.Tensor,
    gamma: float,
    detach: bool,
    termination: bool = False,
    final_discount: float = 1.0,
) -> dict[str, float]:
    """Every diagnostic (see the module docstring) from ``start_state`` (an ``env.state_dict()``) with policy
    ``noise`` [H, N, act_dim]; ``env`` is restored to its state on entry. ``termination``: imagined returns
    weighted by the model's termination head (offline PWM's setting). The end-of-window value is weighted by
    ``gamma^H * final_discount`` (:attr:`algos.pwm.PWMConfig.final_discount`)."""
    saved = env.state_dict()
    params = list(actor.parameters())

    def gradient(objective: torch.Tensor, retain: bool) -> torch.Tensor:
        grads = torch.autograd.grad(objective.mean(), params, allow_unused=True, retain_graph=retain)
        pairs = zip(grads, params, strict=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in pairs])

    try:
        env.load_state_dict(start_state)
        with torch.enable_grad():
            real = real_rollout(env, world_model, actor, noise, detach)
            real_reward = rew_rms.normalize(real["reward"]) if rew_rms is not None else real["reward"]
            imagined, continuation, final_latent = imagined_rewards(
                world_model, actor, real["obs"][0], noise, detach, termination
            )
            real_return = discounted_return(real_reward, real["alive"], gamma)
            imagined_return = discounted_return(imagined, real["alive"], gamma)
            # The same envs' end values in both (those whose real episode ran through the window); the real
            # one (differentiable) is also the critic target's bootstrap below.
            went_on = (~real["ended"]).float()
            bootstrap = went_on * critic.value(world_model.encode(real["final_obs"]))
            value_discount = gamma ** noise.shape[0] * final_discount
            real_value = value_discount * bootstrap
            model_value = value_discount * went_on * continuation * critic.value(final_latent)
            grads = {
                "real": gradient(real_return, retain=True),
                "real_value": gradient(real_value, retain=False),
                "model": gradient(imagined_return, retain=True),
                "model_value": gradient(model_value, retain=False),
            }
    finally:
        env.load_state_dict(saved)

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(gradient_cosine(a.cpu().numpy(), b.cpu().numpy()))

    def ratio(value: torch.Tensor, rewards: torch.Tensor) -> float:
        norm = float(rewards.norm())
        return float(value.norm()) / norm if norm > 0 else float("nan")

    with torch.no_grad():
        horizon = noise.shape[0]
        ended = real["ended"]
        target = real_return + gamma**horizon * bootstrap
        value = critic.value(world_model.encode(real["obs"][0]))
        metrics = {
            "imagined_return": float(imagined_return.mean()),
            "real_return": float(real_return.mean()),
            "return_gap": float((imagined_return - real_return).mean()),
            "real_return_raw": float(discounted_return(real["reward"], real["alive"], gamma).mean()),
            "gradient_cosine": cosine(grads["model"], grads["real"]),
            "value_gradient_cosine": cosine(grads["model_value"], grads["real_value"]),
            "objective_gradient_cosine": cosine(
                grads["model"] + grads["model_value"], grads["real"] + grads["real_value"]
            ),
            "model_value_gradient_ratio": ratio(grads["model_value"], grads["model"]),
            "real_value_gradient_ratio": ratio(grads["real_value"], grads["real"]),
            "critic_value": float(value.mean()),
            "critic_target": float(target.mean()),
            "critic_gap": float((value - target).mean()),
            "real_episode_ends": float(ended.sum()),
        }
        window = discounted_return(imagined.detach(), torch.ones_like(imagined), gamma)
        metrics["imagined_return_window"] = float(window.mean())
        metrics["episodic_gap"] = float((window - real_return.detach()).mean())
        if termination:
            metrics["imagined_termination"] = float(1.0 - continuation.mean())
        metrics.update(
            prediction_errors(world_model, real["obs"], real["action"], real_reward, real["alive"], gamma)
        )
    return {f"diag/{name}": number for name, number in metrics.items()}


def heldout_windows(
    dataset: EpisodeDataset, horizon: int, count: int, device: str | torch.device
) -> dict[str, torch.Tensor] | None:
    """``count`` windows of ``horizon`` transitions of ``dataset`` (held-out episodes), drawn with a fixed
    seed, time-major: obs [H+1, N, d], action [H, N, a], reward [H, N] (env units) and, when recorded,
    would_terminate [H, N]. None if no episode is long enough."""
    if not (dataset.episode_length >= horizon).any():
        return None
    batch = sample_subtrajectories(dataset, count, horizon, np.random.default_rng(0))
    keys = [key for key in ("obs", "action", "reward", "would_terminate") if key in batch]
    return {key: torch.from_numpy(batch[key]).to(device).transpose(0, 1) for key in keys}


@torch.no_grad()
def heldout_errors(
    world_model: WorldModel, windows: dict[str, torch.Tensor], rew_rms: RunningMeanStd | None, gamma: float
) -> dict[str, float]:
    """The model's errors on held-out ``windows`` (:func:`heldout_windows`), named ``heldout_*``: latent and
    reward errors one step ahead and H steps open-loop (:func:`prediction_errors`; rewards in model units)
    and, with a termination head and recorded flags, its BCE and accuracy on the open-loop latents against
    the flags (``heldout_termination_rate``: the flags' rate)."""
    reward = rew_rms.normalize(windows["reward"]) if rew_rms is not None else windows["reward"]
    alive = torch.ones_like(reward)
    errors = prediction_errors(world_model, windows["obs"], windows["action"], reward, alive, gamma)
    metrics = {name.replace("wm_", "heldout_"): value for name, value in errors.items()}
    metrics["heldout_model_return_real_actions"] = metrics.pop("model_return_real_actions")
    metrics["heldout_real_return"] = float(discounted_return(reward, alive, gamma).mean())
    flags = windows.get("would_terminate")
    if world_model.termination_head is not None and flags is not None:
        z, logits = world_model.encode(windows["obs"][0]), []
        for action in windows["action"]:
            z = world_model.next(z, action)
            logits.append(world_model.termination_logit(z))
        logit, target = torch.stack(logits), flags.to(reward.dtype)
        metrics["heldout_termination_bce"] = float(F.binary_cross_entropy_with_logits(logit, target))
        metrics["heldout_termination_accuracy"] = float(((logit > 0) == flags).float().mean())
        metrics["heldout_termination_rate"] = float(target.mean())
    return metrics
