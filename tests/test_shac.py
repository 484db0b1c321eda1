"""SHAC building blocks and the algorithm itself, on small hand-checkable problems and the toy env."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from algos.critic import td_lambda_targets
from algos.networks import CriticEnsemble, StochasticActor, parameter_count
from algos.normalizers import RunningMeanStd
from algos.shac import SHAC, SHACConfig
from algos.training import NonFiniteGradientError
from bench.harness import evaluate
from bench.presets import published_config
from tests.helpers import constant_critic
from tests.toy_envs import ScriptedEnv, make_toy_env

TINY = SHACConfig(
    horizon=16,
    max_epochs=30,
    actor_hidden=(32, 32),
    critic_hidden=(32, 32),
    critic_iterations=4,
)


def test_td_lambda_targets_hand_computed() -> None:
    # gamma = lambda = 0.5. Env 0 never ends: G2 = 3 + .5*30 = 18, G1 = 2 + .5*(.5*20 + .5*18) = 11.5,
    # G0 = 1 + .5*(.5*10 + .5*11.5) = 6.375. Env 1 terminates at t=0 (V' = 0): G0 = 1, later steps as env 0.
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    next_values = torch.tensor([[10.0, 0.0], [20.0, 20.0], [30.0, 30.0]])
    dones = torch.tensor([[False, True], [False, False], [False, False]])
    targets = td_lambda_targets(rewards, next_values, dones, gamma=0.5, lam=0.5)
    expected = torch.tensor([[6.375, 1.0], [11.5, 11.5], [18.0, 18.0]])
    assert torch.allclose(targets, expected)


def test_td_lambda_extremes() -> None:
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    next_values = torch.tensor([[4.0], [4.0], [4.0]])
    dones = torch.zeros(3, 1, dtype=torch.bool)
    one_step = td_lambda_targets(rewards, next_values, dones, gamma=0.9, lam=0.0)
    assert torch.allclose(one_step, torch.full((3, 1), 1 + 0.9 * 4))
    monte_carlo = td_lambda_targets(rewards, next_values, dones, gamma=0.9, lam=1.0)
    assert torch.allclose(monte_carlo[0], torch.tensor([1 + 0.9 + 0.81 + 0.729 * 4]))


@pytest.mark.parametrize(
    ("variant", "env", "obs_dim", "act_dim", "actor_params", "critic_params"),
    [  # algorithms spec §3.9
        ("diffrl", "ant", 37, 8, 15_920, 6_913),
        ("diffrl", "humanoid", 76, 21, 56_106, 27_009),
        ("diffrl", "snu_humanoid", 53, 152, 199_728, 80_897),
        ("pwm", "ant", 37, 8, 117_716, 290_403),
        ("pwm", "humanoid", 76, 21, 134_642, 337_203),
        ("pwm", "snu_humanoid", 53, 152, 138_804, 309_603),
    ],
)
def test_published_network_sizes(
    variant: str, env: str, obs_dim: int, act_dim: int, actor_params: int, critic_params: int
) -> None:
    config, _ = published_config("shac", variant, env)
    actor = StochasticActor(obs_dim, act_dim, config.actor_hidden, config.activation)
    critic = CriticEnsemble(obs_dim, config.critic_hidden, config.activation, config.num_critics)
    assert (parameter_count(actor), parameter_count(critic)) == (actor_params, critic_params)


def test_published_configs() -> None:
    pwm_ant, pwm_envs = published_config("shac", "pwm", "ant")
    assert (pwm_envs, pwm_ant.max_epochs, pwm_ant.num_critics, pwm_ant.ret_rms) == (128, 2000, 3, True)
    diffrl_humanoid, _ = published_config("shac", "diffrl", "humanoid")
    assert (diffrl_humanoid.target_critic_alpha, diffrl_humanoid.critic_lr) == (0.995, 5e-4)
    generic, generic_envs = published_config("shac", "diffrl", "unknown_env")
    assert (generic.actor_hidden, generic_envs) == ((128, 64, 32), 64)
    with pytest.raises(ValueError, match="valid: pwm, diffrl"):
        published_config("shac", "ppo", "ant")


def test_running_mean_std_matches_numpy_and_ignores_nonfinite() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(100, 3)).astype(np.float32)
    rms = RunningMeanStd((3,), initial_count=1e-4)
    for batch in np.split(data, 4):
        rms.update(torch.from_numpy(batch))
    rms.update(torch.tensor([[float("nan"), 0.0, 0.0]]))
    assert np.allclose(rms.mean.numpy(), data.mean(0), atol=1e-4)
    assert np.allclose(rms.var.numpy(), data.var(0), rtol=1e-3)
    assert float(rms.normalize(torch.full((3,), 1e6)).max()) == 5.0


def scripted_env() -> ScriptedEnv:
    """Three envs; env 0 truncates and env 1 terminates after its 2nd step."""
    return ScriptedEnv(3, truncate={0: 1}, terminate={1: 1})


def test_actor_loss_bootstraps_on_truncation_only() -> None:
    # H = 4, gamma = 0.5, V = 2 everywhere. Window returns of two steps: 1 + .5 = 1.5 (discount left .25);
    # four steps: 1.875 (discount .0625). Per env: truncated -(1.5 + .25*2) - (1.5 + .25*2) = -4,
    # terminated -(1.5 + 0) - (1.5 + .25*2) = -3.5, running -(1.875 + .0625*2) = -2. Loss = mean / H.
    config = SHACConfig(
        horizon=4,
        gamma=0.5,
        actor_hidden=(8,),
        critic_hidden=(8,),
        num_critics=1,
        obs_rms=False,
        ret_rms=False,
        critic_iterations=1,
    )
    shac = SHAC(scripted_env(), config, seed=0)
    constant_critic(shac.critic, 2.0)
    metrics = shac.train_iteration()
    assert metrics["actor_loss"] == pytest.approx(-(4 + 3.5 + 2) / 3 / 4)
    assert metrics["window_length_mean"] == pytest.approx(12 / 5)
    assert (metrics["early_terminations"], metrics["truncations"]) == (1, 1)


def _toy_returns(seed: int) -> tuple[float, float, float]:
    """(before, after, last training return) of a TINY SHAC run on the toy env with ``seed``."""
    torch.manual_seed(seed)
    shac = SHAC(make_toy_env(num_envs=32, seed=seed), TINY, seed=seed)
    eval_env = make_toy_env(num_envs=16, seed=100 + seed)

    def score() -> float:
        return float(evaluate(eval_env, lambda obs: shac.act(obs)).returns.mean())

    before = score()
    for _ in range(TINY.max_epochs):
        metrics = shac.train_iteration()
    return before, score(), metrics["train_return"]


def test_shac_improves_return_on_toy_env_over_seeds() -> None:
    # The optimum is about 2.3 per step over 64 steps (~140); a random initial policy scores near 0.
    # Measured on an AMD EPYC: seeds 0-9 all end at 134-142 from -29..20 (10 of 10 pass the per-seed
    # bar), so the bars below leave room for other CPUs' rounding without passing a broken learner.
    runs = [_toy_returns(seed) for seed in range(5)]
    afters = [after for _, after, _ in runs]
    assert np.median(afters) > 100, runs
    assert sum(after > before + 50 for before, after, _ in runs) >= 4, runs
    assert np.median([train for _, _, train in runs]) > 100, runs


def test_nonfinite_window_is_skipped_and_counted() -> None:
    env = make_toy_env(num_envs=8, seed=0, nan_rewards_from=16, nan_rewards_until=32)
    shac = SHAC(env, replace(TINY, max_epochs=3), seed=0)
    shac.train_iteration()
    before = [p.detach().clone() for p in shac.actor.parameters()]
    skipped = shac.train_iteration()  # env steps 16..31 have NaN rewards
    assert skipped["nonfinite_actor_grad"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, shac.actor.parameters(), strict=True))
    assert skipped["critic_nonfinite_targets"] > 0
    healthy = shac.train_iteration()
    assert healthy["nonfinite_actor_grad"] == 0.0 and np.isfinite(healthy["actor_loss"])
    assert shac.nonfinite_totals()["nonfinite_actor_windows"] == 1
    assert all(bool(torch.isfinite(p).all()) for p in shac.actor.parameters())


def test_persistent_nonfinite_gradients_raise() -> None:
    env = make_toy_env(num_envs=4, seed=0, nan_rewards_from=0)
    shac = SHAC(env, replace(TINY, max_nonfinite_windows=3), seed=0)
    shac.train_iteration()
    shac.train_iteration()
    with pytest.raises(NonFiniteGradientError, match="3 consecutive windows"):
        shac.train_iteration()


@pytest.mark.parametrize("variant", ["pwm", "diffrl"])
def test_state_dict_continues_bit_exactly(variant: str) -> None:
    base, _ = published_config("shac", variant, "toy")
    config = replace(
        base, horizon=8, max_epochs=6, actor_hidden=(16,), critic_hidden=(16,), critic_iterations=2
    )

    def fresh() -> SHAC:
        torch.manual_seed(123)  # different init on purpose: everything must come from the checkpoint
        return SHAC(make_toy_env(num_envs=4, seed=0, episode_length=10), config, seed=0)

    torch.manual_seed(0)
    reference = SHAC(make_toy_env(num_envs=4, seed=0, episode_length=10), config, seed=0)
    for _ in range(3):
        reference.train_iteration()
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    expected = [reference.train_iteration() for _ in range(3)]

    resumed = fresh()
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    assert [resumed.train_iteration() for _ in range(3)] == expected
    for a, b in zip(
        reference.state_dict()["actor"].values(), resumed.state_dict()["actor"].values(), strict=True
    ):
        assert torch.equal(a, b)
