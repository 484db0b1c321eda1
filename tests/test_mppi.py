"""The MPPI planner (algorithms §5) on a latent model whose optimum is known in closed form."""

from __future__ import annotations

import pytest
import torch

from algos.mppi import MPPIConfig, plan, shift, trajectory_scores

STEP = 0.5


class ReachOrigin:
    """z' = z + 0.5 a, reward -10 |z'|^2, terminal value 0, a uniform-random policy prior. Each coordinate is
    separate and moving as close to 0 as possible is best at every step, so the optimal action is the
    greedy a = clip(-z / 0.5, -1, 1)."""

    def __init__(self, nan_if_first_action_positive: bool = False) -> None:
        self.nan_if_positive = nan_if_first_action_positive

    def step(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z + STEP * action
        reward = -10.0 * z.square().sum(-1)
        if self.nan_if_positive:
            reward = torch.where(action[..., 0] > 0, torch.nan, reward)
        return z, reward

    def value(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(z.shape[:-1])

    def policy(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(z.shape, generator=generator) * 2 - 1


def optimal_action(z: torch.Tensor) -> torch.Tensor:
    return (-z / STEP).clamp(-1.0, 1.0)


def closed_loop_return(z: torch.Tensor, act, steps: int = 8) -> torch.Tensor:
    model, total = ReachOrigin(), torch.zeros(z.shape[0])
    for _ in range(steps):
        z, reward = model.step(z, act(z))
        total += reward
    return total


def start_states(seed: int = 0) -> torch.Tensor:
    return torch.empty(16, 2).uniform_(-2.0, 2.0, generator=torch.Generator().manual_seed(seed))


def test_first_action_is_the_known_optimum() -> None:
    z = torch.tensor([[1.5, -0.2], [-0.3, 0.1], [0.0, -3.0]])
    result = plan(ReachOrigin(), z, MPPIConfig(), 0.99, torch.Generator().manual_seed(0), act_dim=2)
    # Optimum: [-1, 0.4], [0.6, -0.2], [0, 1]. The executed action is one elite's first step.
    assert torch.allclose(result.action, optimal_action(z), atol=0.15), result.action
    assert result.mean.shape == (3, 3, 2) and result.std.shape == (3, 3, 2)
    assert result.nonfinite_scores == 0


def test_mppi_beats_random_actions_and_nearly_reaches_the_optimum() -> None:
    z0 = start_states()
    generator = torch.Generator().manual_seed(1)
    cfg = MPPIConfig()

    def mppi(z: torch.Tensor) -> torch.Tensor:
        return plan(ReachOrigin(), z, cfg, 0.99, generator, act_dim=2).action

    def random(z: torch.Tensor) -> torch.Tensor:
        return torch.rand(z.shape, generator=generator) * 2 - 1

    optimum = closed_loop_return(z0, optimal_action).mean()
    planned = closed_loop_return(z0, mppi).mean()
    chance = closed_loop_return(z0, random).mean()
    # Measured (AMD EPYC): optimum -13.40, MPPI -13.54, random actions -336.2.
    assert planned > chance + 50.0
    assert planned >= 1.02 * optimum  # returns are negative: within 2% of the optimum


def test_more_iterations_refine_the_plan() -> None:
    z0 = start_states(seed=2)
    errors = []
    for iterations in (1, 6):
        cfg = MPPIConfig(iterations=iterations, num_samples=64, num_elites=8, num_policy_trajectories=0)
        result = plan(ReachOrigin(), z0, cfg, 0.99, torch.Generator().manual_seed(0), act_dim=2)
        errors.append(float((result.mean[:, 0] - optimal_action(z0)).abs().mean()))
    assert errors[1] < 0.5 * errors[0], errors


def test_warm_start_shift_and_scores() -> None:
    mean = torch.arange(12.0).reshape(1, 3, 4)
    shifted = shift(mean)
    assert torch.equal(shifted[0, :2], mean[0, 1:]) and torch.equal(shifted[0, 2], torch.zeros(4))
    # Scores: sum_t gamma^t r_t + gamma^H V; z = 1 and a = -1 twice: z 0.5, 0 -> -10 * 0.25 - 0.5 * 0.
    z, actions = torch.tensor([[1.0]]), torch.full((1, 2, 1), -1.0)
    assert trajectory_scores(ReachOrigin(), z, actions, 0.5, torch.Generator()).item() == pytest.approx(-2.5)


def test_same_generator_state_same_plan_and_warm_start_is_used() -> None:
    z0 = start_states(seed=3)
    cfg = MPPIConfig(iterations=1, num_samples=32, num_elites=4, num_policy_trajectories=0, max_std=0.05)
    one = plan(ReachOrigin(), z0, cfg, 0.99, torch.Generator().manual_seed(5), act_dim=2)
    two = plan(ReachOrigin(), z0, cfg, 0.99, torch.Generator().manual_seed(5), act_dim=2)
    assert torch.equal(one.action, two.action) and torch.equal(one.mean, two.mean)
    # With a narrow std (0.05) one iteration stays near its initial mean: the warm start decides.
    warm = torch.full((16, 3, 2), 0.8)
    started = plan(ReachOrigin(), z0, cfg, 0.99, torch.Generator().manual_seed(5), 2, init_mean=warm)
    assert (started.mean - 0.8).abs().max() < 0.2


def test_nonfinite_scores_are_counted_and_never_chosen() -> None:
    z0 = start_states(seed=4)
    model = ReachOrigin(nan_if_first_action_positive=True)
    result = plan(model, z0, MPPIConfig(), 0.99, torch.Generator().manual_seed(0), act_dim=2)
    assert result.nonfinite_scores > 0
    assert (result.action[:, 0] <= 0).all()

    class AllNan(ReachOrigin):
        def value(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return torch.full(z.shape[:-1], torch.nan)

    with pytest.raises(FloatingPointError, match="nan/inf"):
        plan(AllNan(), z0, MPPIConfig(), 0.99, torch.Generator().manual_seed(0), act_dim=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_elites": 600}, "num_elites"),
        ({"num_policy_trajectories": 513}, "num_policy_trajectories"),
        ({"min_std": 3.0}, "std"),
        ({"iterations": 0}, "iterations"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MPPIConfig(**changes)
