"""World model (algorithms §3.1, §3.9), its loss and pretraining (§3.2-§3.4), on hand-checkable problems."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from algos.dataset import EpisodeDataset
from algos.networks import CriticEnsemble, StochasticActor, parameter_count
from algos.pwm import PWMConfig
from algos.wm_training import (
    WMTrainConfig,
    WorldModelTrainer,
    load_world_model_checkpoint,
    pretrain,
    select_episodes,
    world_model_checkpoint,
)
from algos.world_model import SimNorm, WorldModel, WorldModelConfig, symlog, world_model_config


def on_simplices(x: torch.Tensor, group: int = 8) -> bool:
    groups = x.unflatten(-1, (-1, group))
    return bool((groups >= 0).all()) and torch.allclose(groups.sum(-1), torch.ones(()), atol=1e-5)


def test_simnorm_outputs_lie_on_simplices() -> None:
    x = torch.randn(5, 3, 32) * 10
    assert on_simplices(SimNorm(8)(x))
    model = WorldModel(6, 2, world_model_config("tiny"))
    z = model.encode(torch.randn(7, 6))
    assert z.shape == (7, 32) and on_simplices(z)
    assert on_simplices(model.next(z, torch.rand(7, 2)))
    mish = WorldModel(6, 2, world_model_config("tiny", variant="mish"))
    assert not on_simplices(mish.encode(torch.randn(7, 6)))


def test_small_cpu_size_parameter_count() -> None:
    # The CPU size for the ant (obs 37, act 8): 280,577 as measured in shared/notes/pwm-online-calibration.md.
    model = WorldModel(37, 8, world_model_config("small"))
    assert parameter_count(model) == 280_577
    assert tuple(map(parameter_count, (model.encoder, model.dynamics, model.reward_head))) == (
        43_392,
        135_040,
        102_145,
    )


@pytest.mark.parametrize(
    ("obs_dim", "act_dim", "total", "parts"),
    [  # algorithms spec §3.9: world model E + F + R (E, F, R where the spec lists them)
        (11, 3, 1_458_177, (136_192, 792_576, 529_409)),
        (37, 8, 1_469_953, None),
        (49, 12, 1_477_121, None),
        (76, 21, 1_493_249, None),
        (53, 152, 1_621_505, (146_944, 868_864, 605_697)),
    ],
)
def test_single_task_parameter_counts(obs_dim: int, act_dim: int, total: int, parts: tuple | None) -> None:
    model = WorldModel(obs_dim, act_dim, WorldModelConfig())
    assert parameter_count(model) == total
    if parts is not None:
        assert tuple(map(parameter_count, (model.encoder, model.dynamics, model.reward_head))) == parts
    # PWM's actor and critics act on the 512-d latent: 307,716 (Ant) and 3 x 286,801 for every env.
    config = PWMConfig()
    actor = StochasticActor(512, act_dim, config.actor_hidden, config.activation)
    critic = CriticEnsemble(512, config.critic_hidden, config.activation, config.num_critics)
    assert parameter_count(critic) == 860_403
    if act_dim == 8:
        assert parameter_count(actor) == 307_716


@pytest.mark.parametrize(
    ("size", "obs_dim", "num_tasks", "task_dim", "latent", "approx"),
    [  # §3.9: the part of TD-MPC2's models PWM differentiates (MT80: 39 obs, 80 tasks; MT30: 24 obs)
        ("5M", 39, 80, 96, None, 1.7e6),
        ("19M", 24, 30, 64, 512, 5.6e6),
        ("48M", 39, 80, 96, None, 19.2e6),
        ("317M", 39, 80, 96, None, 108e6),
    ],
)
def test_multitask_sizes(
    size: str, obs_dim: int, num_tasks: int, task_dim: int, latent, approx: float
) -> None:
    changes = {"num_tasks": num_tasks, "task_dim": task_dim, **({"latent_dim": latent} if latent else {})}
    with torch.device("meta"):
        model = WorldModel(obs_dim, 6, world_model_config(size, **changes))
    assert abs(parameter_count(model) - approx) < 0.05 * approx
    assert model.config.reward_bins == 101


def test_initialisation() -> None:
    model = WorldModel(37, 8, WorldModelConfig())
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(bool((m.bias == 0).all()) for m in linears)
    assert bool((model.reward_head[-1].weight == 0).all())
    weights = torch.cat([m.weight.detach().flatten() for m in linears[:-1]])
    assert abs(float(weights.std()) - 0.02) < 0.001
    assert bool((model.reward_output(torch.rand(3, 512), torch.rand(3, 8)) == 0).all())


def test_relu_variant_is_a_plain_mlp() -> None:
    model = WorldModel(5, 2, world_model_config("tiny", variant="relu"))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    with pytest.raises(ValueError, match="variant must be one of"):
        world_model_config("tiny", variant="spectral")


def test_two_hot_rewards() -> None:
    model = WorldModel(3, 1, world_model_config("tiny", reward_bins=101))
    rewards = torch.tensor([-3.0, 0.0, 0.37, 42.0, 1e9])
    encoded = model.two_hot(rewards)
    assert torch.allclose(encoded.sum(-1), torch.ones(5)) and int((encoded > 0).sum(-1).max()) <= 2
    expected_symlog = symlog(rewards).clamp(-10, 10)
    assert torch.allclose((encoded * model.bins).sum(-1), expected_symlog, atol=1e-5)
    logits = torch.log(encoded + 1e-12)
    assert torch.allclose(model.decode_reward(logits), expected_symlog, atol=1e-4)  # PWM: symlog space
    symexp_model = WorldModel(3, 1, world_model_config("tiny", reward_bins=101, reward_decode="symexp"))
    assert torch.allclose(symexp_model.decode_reward(logits)[:4], rewards[:4], rtol=1e-3, atol=1e-5)
    # The cross-entropy is smallest for the target's own two-hot logits.
    assert float(model.reward_loss(logits, rewards).mean()) < float(
        model.reward_loss(logits.flip(0), rewards).mean()
    )


def test_task_embedding_is_an_input() -> None:
    model = WorldModel(3, 1, world_model_config("tiny", num_tasks=4, task_dim=8))
    obs = torch.randn(2, 3)
    assert not torch.allclose(model.encode(obs, task=0), model.encode(obs, task=3))
    assert model.encode(obs, task=torch.tensor([0, 3])).shape == (2, 32)
    with pytest.raises(ValueError, match="needs task ids"):
        model.encode(obs)
    with pytest.raises(ValueError, match="no task embedding"):
        WorldModel(3, 1, world_model_config("tiny")).encode(obs, task=1)


def linear_dataset(seed: int, episodes: int, length: int = 32) -> tuple[EpisodeDataset, np.ndarray]:
    """Episodes of s' = A s + B a, r = c.s' + d.a, uniform random actions (row layout of algos.dataset)."""
    rng = np.random.default_rng(seed)
    a_matrix = np.array([[0.9, 0.2, 0, 0], [-0.2, 0.9, 0, 0], [0, 0, 0.8, 0.1], [0, 0, 0, 0.7]], np.float32)
    b_matrix = np.array([[0.5, 0], [0, 0.5], [0.3, -0.3], [0.2, 0.4]], np.float32)
    c, d = np.array([1.0, -0.5, 0.3, 0.0], np.float32), np.array([0.2, -0.4], np.float32)
    obs, actions, rewards = [], [], []
    for _ in range(episodes):
        s = rng.uniform(-1, 1, 4).astype(np.float32)
        obs.append(s), actions.append(np.full(2, np.nan, np.float32)), rewards.append(np.nan)
        for _ in range(length):
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            s = a_matrix @ s + b_matrix @ a
            obs.append(s), actions.append(a), rewards.append(float(c @ s + d @ a))
    rows = len(obs)
    dataset = EpisodeDataset(
        obs=np.array(obs, np.float32),
        action=np.array(actions, np.float32),
        action_raw=np.array(actions, np.float32),
        reward=np.array(rewards, np.float32),
        epoch=np.zeros(rows, np.int64),
        episode_id=np.arange(episodes),
        episode_start=np.arange(episodes) * (length + 1),
        episode_length=np.full(episodes, length),
        episode_terminated=np.zeros(episodes, bool),
        episode_truncated=np.ones(episodes, bool),
    )
    return dataset, a_matrix


def test_world_model_fits_a_linear_system() -> None:
    train, _ = linear_dataset(0, episodes=32)
    test, _ = linear_dataset(1, episodes=8)
    torch.manual_seed(0)
    model = WorldModel(4, 2, world_model_config("tiny"))
    trainer = pretrain(model, train, 250, WMTrainConfig(horizon=4, batch_size=64, lr=1e-3), seed=0)
    assert trainer.steps == 250 and trainer.nonfinite_grad_steps == 0
    assert abs(float(trainer.rew_rms.mean) - float(np.nanmean(train.reward))) < 1e-4  # fitted on all rewards

    # Open-loop 4-step latent rollouts on held-out episodes: rewards in normalised units, and latent states
    # against the encodings of the true states, relative to the spread of the encodings (no collapse).
    batch = trainer.dataset_batch(test)
    obs, action = batch["obs"].transpose(0, 1), batch["action"].transpose(0, 1)
    reward = trainer.rew_rms.normalize(batch["reward"]).transpose(0, 1)
    with torch.no_grad():
        z, targets = model.encode(obs[0]), model.encode(obs[1:])
        predicted_rewards, predicted_latents = [], []
        for t in range(4):
            z, r = model.step(z, action[t])
            predicted_rewards.append(r)
            predicted_latents.append(z)
    reward_mse = float((torch.stack(predicted_rewards) - reward).square().mean())
    assert reward_mse < 0.03, reward_mse  # the untrained (zero) reward head scores about 1
    latent_error = (torch.stack(predicted_latents) - targets).square().sum(-1).mean()
    spread = (targets - targets.mean(dim=(0, 1))).square().sum(-1).mean()
    assert float(latent_error / spread) < 0.15, float(latent_error / spread)  # untrained: about 3.4


def test_nonfinite_gradients_are_zeroed_and_counted() -> None:
    train, _ = linear_dataset(0, episodes=4, length=8)
    model = WorldModel(4, 2, world_model_config("tiny"))
    trainer = WorldModelTrainer(model, WMTrainConfig(horizon=4, batch_size=8, rew_rms=False))
    batch = trainer.dataset_batch(train)
    batch["reward"][0, 0] = float("nan")
    metrics = trainer.train_step(batch)
    assert metrics["wm_nonfinite_grad"] == 1.0 and trainer.nonfinite_grad_steps == 1
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_select_episodes_caps_rows_without_replacement() -> None:
    dataset, _ = linear_dataset(0, episodes=10, length=9)  # 10 rows per episode
    subset = select_episodes(dataset, 35, np.random.default_rng(0))
    assert subset.num_episodes == 3 and len(np.unique(subset.episode_id)) == 3
    for i, episode in enumerate(subset.episode_id):
        rows = slice(subset.episode_start[i], subset.episode_start[i] + 10)
        np.testing.assert_array_equal(subset.obs[rows], dataset.obs[episode * 10 : episode * 10 + 10])
    assert select_episodes(dataset, None, np.random.default_rng(0)) is dataset


def test_checkpoint_round_trip(tmp_path) -> None:
    train, _ = linear_dataset(0, episodes=4, length=8)
    model = WorldModel(4, 2, world_model_config("tiny", variant="mish"))
    trainer = pretrain(model, train, 3, WMTrainConfig(horizon=4, batch_size=8), seed=0)
    path = tmp_path / "wm.pt"
    buffer = io.BytesIO()
    torch.save(world_model_checkpoint(trainer, {"path": "somewhere", "dataset_transitions": 32}), buffer)
    path.write_bytes(buffer.getvalue())
    loaded, data = load_world_model_checkpoint(path)
    assert data["dataset_transitions"] == 32 and loaded.steps == 3
    assert loaded.world_model.config == model.config
    obs = torch.randn(5, 4)
    assert torch.equal(loaded.world_model.encode(obs), model.encode(obs))
    assert torch.equal(loaded.rew_rms.mean, trainer.rew_rms.mean)


def test_termination_head_learns_the_recorded_condition() -> None:
    dataset, _ = linear_dataset(0, episodes=32)
    dataset.would_terminate = dataset.obs[:, 0] > 0.3  # the "env's" condition on the state reached
    dataset.would_terminate[dataset.episode_start] = False
    torch.manual_seed(0)
    model = WorldModel(4, 2, world_model_config("tiny", termination_head=True))
    config = WMTrainConfig(horizon=4, batch_size=64, lr=1e-3)
    history = []
    trainer = pretrain(model, dataset, 200, config, seed=0, callback=lambda _, m: history.append(m))
    assert history[-1]["wm_termination_loss"] < 0.5 * history[0]["wm_termination_loss"]
    batch = trainer.dataset_batch(dataset)
    with torch.no_grad():
        z = model.encode(batch["obs"][:, 1:])  # the states reached, encoded
        predicted = model.termination_logit(z) > 0
    assert float((predicted == batch["would_terminate"]).float().mean()) > 0.9
    # Without flags in the batch (online replay) there is no termination term; a head-less model has none.
    del batch["would_terminate"]
    assert trainer.train_step(batch)["wm_termination_loss"] == 0.0
    plain = WorldModelTrainer(WorldModel(4, 2, world_model_config("tiny")), config)
    assert "wm_termination_loss" not in plain.train_step(trainer.dataset_batch(dataset))
    with pytest.raises(ValueError, match="no termination head"):
        plain.world_model.termination_logit(z)


def frozen(critic: CriticEnsemble):
    """The critic's ensemble-minimum value with its parameters frozen (as PWM.frozen_value passes it)."""
    critic.requires_grad_(False)
    return critic.value


def test_value_equivalence_term_matches_a_by_hand_rollout_and_trains_only_the_model() -> None:
    train, _ = linear_dataset(0, episodes=8, length=8)
    torch.manual_seed(0)
    model = WorldModel(4, 2, world_model_config("tiny"))
    critic = CriticEnsemble(32, (16,), "elu", 2)
    config = WMTrainConfig(horizon=4, batch_size=16, rew_rms=False, rho=0.9, value_coef=0.5)
    trainer = WorldModelTrainer(model, config)
    batch = trainer.dataset_batch(train)
    # By hand: sum over steps of rho^t * (V(z_t) - V(E(o_t)))^2 / Var_batch V(E(o_t)), over H.
    with torch.no_grad():
        obs, action = batch["obs"].transpose(0, 1), batch["action"].transpose(0, 1)
        z, expected = model.encode(obs[0]), 0.0
        for t in range(4):
            z = model.next(z, action[t])
            real = critic.value(model.encode(obs[t + 1]))
            expected += 0.9**t * float(((critic.value(z) - real).square() / real.var()).mean())
    metrics = trainer.train_step(batch, value=frozen(critic))
    assert metrics["wm_value_loss"] == pytest.approx(expected / 4, rel=1e-4)
    assert all(p.grad is None for p in critic.parameters())  # the critic is read, never trained
    # Off by default (coefficient 0) and without a value function: no term, no metric.
    plain = WorldModelTrainer(WorldModel(4, 2, world_model_config("tiny")), WMTrainConfig(horizon=4))
    assert "wm_value_loss" not in plain.train_step(batch, value=frozen(critic))
    assert "wm_value_loss" not in trainer.train_step(batch)
    with pytest.raises(ValueError, match="value_coef"):
        WMTrainConfig(value_coef=-1.0)


def test_value_equivalence_term_closes_the_value_gap_at_a_small_weight() -> None:
    """Trained with a small value term, the model's latents agree better with the critic's reading of the
    real ones than trained on latents and rewards alone (same data, steps and initialisation), at little
    cost in latent error. (Measured: value gap 0.06 against 0.20, latent error 0.08 against 0.06; a weight
    of 1 makes the term dominate the gradient and both errors grow.)"""
    train, _ = linear_dataset(0, episodes=16, length=16)
    torch.manual_seed(1)
    critic = CriticEnsemble(32, (32,), "elu", 2)
    gaps, latent_errors = {}, {}
    for coef in (0.0, 0.03):
        torch.manual_seed(0)
        model = WorldModel(4, 2, world_model_config("tiny"))
        config = WMTrainConfig(horizon=4, batch_size=32, rew_rms=False, lr=1e-3, value_coef=coef)
        trainer = WorldModelTrainer(model, config, seed=0)
        for _ in range(300):
            trainer.train_step(trainer.dataset_batch(train), value=frozen(critic))
        probe = WorldModelTrainer(model, WMTrainConfig(horizon=4, batch_size=512), seed=7)
        batch = probe.dataset_batch(train)
        with torch.no_grad():
            obs, action = batch["obs"].transpose(0, 1), batch["action"].transpose(0, 1)
            z, gap, latent_error = model.encode(obs[0]), 0.0, 0.0
            for t in range(4):
                z = model.next(z, action[t])
                target = model.encode(obs[t + 1])
                real = critic.value(target)
                gap += float((critic.value(z) - real).square().mean() / real.var())
                latent_error += float((z - target).square().sum(-1).mean())
        gaps[coef], latent_errors[coef] = gap, latent_error
    assert gaps[0.03] < 0.5 * gaps[0.0], gaps
    assert latent_errors[0.03] < 2.0 * latent_errors[0.0], latent_errors
