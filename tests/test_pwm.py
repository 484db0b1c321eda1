"""PWM (algorithms §3.5-§3.8) and its replay buffer, on hand-checkable problems and the toy env."""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from algos.dataset import DatasetWriter, EpisodeDataset, load_dataset
from algos.pwm import PWM, PWMConfig
from algos.replay import EpisodeReplay
from algos.wm_training import (
    PretrainedWorldModel,
    WMTrainConfig,
    WorldModelTrainer,
    load_world_model,
    pretrain,
    world_model_checkpoint,
)
from algos.world_model import WorldModel, world_model_config
from bench.collect import collect, random_policy
from bench.harness import evaluate
from bench.presets import pretrain_settings, published_config, resolve_settings
from tests.helpers import constant_critic, resume_bit_exactly
from tests.toy_envs import ScriptedEnv, make_toy_env

TINY = PWMConfig(
    horizon=8,
    max_epochs=30,
    actor_hidden=(32, 32),
    critic_hidden=(32, 32),
    actor_lr=1e-3,
    critic_iterations=4,
    world_model=world_model_config("tiny"),
    model_training=WMTrainConfig(horizon=8, batch_size=32),
    wm_steps_per_epoch=4,
    batch_size=None,  # offline start states: the env's num_envs (the 512 default is slow for unit tests)
)


def save_checkpoint(path: Path, trainer: WorldModelTrainer, data: dict[str, Any]) -> str:
    buffer = io.BytesIO()
    torch.save(world_model_checkpoint(trainer, data), buffer)
    path.write_bytes(buffer.getvalue())
    return str(path)


def untrained(model: WorldModel) -> PretrainedWorldModel:
    """``model`` as a pretrained world model (no training steps, no data)."""
    return PretrainedWorldModel.from_trainer(WorldModelTrainer(model, WMTrainConfig()))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 episodes of a uniform random policy on the toy env."""
    directory = tmp_path_factory.mktemp("toy_data")
    writer = DatasetWriter(directory, env="toy", obs_dim=4, act_dim=2)
    collect(make_toy_env(num_envs=16, seed=123), random_policy(2, 0, "cpu"), 64, writer)
    return directory


@pytest.fixture(scope="module")
def pretrained(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> PretrainedWorldModel:
    """A tiny world model pretrained for 200 steps on ``toy_data`` (as bench.pretrain would)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dataset = load_dataset(toy_data)
    torch.manual_seed(0)
    model = WorldModel(4, 2, world_model_config("tiny"))
    trainer = pretrain(model, dataset, 200, WMTrainConfig(horizon=8, batch_size=64), seed=0)
    torch.set_num_threads(threads)
    data = {"path": str(toy_data), "dataset_transitions": dataset.num_transitions}
    return load_world_model(save_checkpoint(tmp_path_factory.mktemp("wm") / "wm.pt", trainer, data))


@pytest.fixture(scope="module")
def open_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 episodes of a uniform random policy on the toy env with early termination off, as datasets are
    recorded: the episodes run on through the states beyond the band, flagged would_terminate."""
    directory = tmp_path_factory.mktemp("open_data")
    writer = DatasetWriter(directory, env="toy", obs_dim=4, act_dim=2)
    env = make_toy_env(num_envs=16, seed=123, early_termination=False)
    collect(env, random_policy(2, 0, "cpu"), 64, writer)
    return directory


@pytest.fixture(scope="module")
def open_pretrained(open_data: Path) -> PretrainedWorldModel:
    """A tiny world model with a termination head pretrained on ``open_data``."""
    dataset = load_dataset(open_data)
    torch.manual_seed(0)
    model = WorldModel(4, 2, world_model_config("tiny", termination_head=True))
    trainer = pretrain(model, dataset, 200, WMTrainConfig(horizon=8, batch_size=64), seed=0)
    return PretrainedWorldModel.from_trainer(
        trainer, {"path": dataset.path, "dataset_transitions": dataset.num_transitions}
    )


def scripted_env() -> ScriptedEnv:
    """Four envs; env 0 truncates and env 1 terminates at step 1, env 3 terminates at step 3."""
    return ScriptedEnv(4, truncate={0: 1}, terminate={1: 1, 3: 3})


def constant_model(termination_probability: float | None) -> WorldModel:
    """A 1-d tiny world model with reward 1 everywhere and, unless None, a termination head that predicts
    ``termination_probability`` everywhere."""
    model = WorldModel(1, 1, world_model_config("tiny", termination_head=termination_probability is not None))
    with torch.no_grad():
        model.reward_head[-1].bias.fill_(1.0)
        if termination_probability is not None:
            model.termination_head[-1].weight.zero_()
            p = termination_probability
            model.termination_head[-1].bias.fill_(float(np.log(p / (1 - p))))
    return model


def hand_config(**changes: Any) -> PWMConfig:
    """The hand examples' settings: H = 4, gamma = lambda = 0.5, tiny nets, no return normalisation, one
    critic pass, no diagnostics (ScriptedEnv has no state_dict), plus ``changes``."""
    settings = dict(horizon=4, gamma=0.5, lam=0.5, actor_hidden=(8,), critic_hidden=(8,), ret_rms=False)
    return PWMConfig(**settings, critic_iterations=1, diagnostics_interval=0, **changes)


def constant_dataset(length: int = 8) -> EpisodeDataset:
    """One episode of ``length`` transitions, obs = action = reward = 0, as a 1-d dataset."""
    rows = length + 1
    zeros = np.zeros((rows, 1), np.float32)
    return EpisodeDataset(
        obs=zeros,
        action=zeros,
        action_raw=zeros,
        reward=np.zeros(rows, np.float32),
        epoch=np.zeros(rows, np.int64),
        episode_id=np.zeros(1, np.int64),
        episode_start=np.zeros(1, np.int64),
        episode_length=np.array([length]),
        episode_terminated=np.zeros(1, bool),
        episode_truncated=np.ones(1, bool),
        info={"obs_dim": 1, "act_dim": 1},
        would_terminate=np.zeros(rows, bool),
    )


@pytest.mark.parametrize(
    ("probability", "termination", "expected_loss", "expected_target", "expected_ended"),
    [
        # gamma = 0.5, H = 4, reward 1, V = 2, p the head's constant termination probability, c_h = (1-p)^h:
        # J = sum_h (gamma (1-p))^h + gamma * gamma^4 (1-p)^4 V; loss = -J / H.
        (0.25, True, -(1.568359375 + 0.03125 * 0.31640625 * 2) / 4, 2.0, 1 - 0.75**4),
        # p > 0.5 is an end for the critic: V' = 0, every TD(lambda) target is the reward 1.
        (0.75, True, -(1.142578125 + 0.03125 * 0.25**4 * 2) / 4, 1.0, 1 - 0.25**4),
        (0.75, False, -(1.875 + 0.03125 * 2) / 4, 2.0, None),  # termination off: the head is ignored
        (None, True, -(1.875 + 0.03125 * 2) / 4, 2.0, None),  # no head: a warning, returns not ended
    ],
)
def test_offline_imagined_returns_end_with_the_termination_head_by_hand(
    probability: float | None,
    termination: bool,
    expected_loss: float,
    expected_target: float,
    expected_ended: float | None,
) -> None:
    config = hand_config(mode="offline", batch_size=4, termination=termination)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pwm = PWM(scripted_env(), config, 0, untrained(constant_model(probability)), constant_dataset())
    assert bool(caught) == (probability is None and termination)
    constant_critic(pwm.critic, 2.0)
    metrics = pwm.train_iteration()
    assert metrics["actor_loss"] == pytest.approx(expected_loss)
    assert metrics["imagined_return"] == pytest.approx(-4 * expected_loss)
    assert metrics["value_target_mean"] == pytest.approx(expected_target)
    assert metrics.get("imagined_termination") == (
        None if expected_ended is None else pytest.approx(expected_ended)
    )


@pytest.mark.parametrize(("exponent", "expected_loss"), [("H+1", -10.8125 / 16), ("H", -11.375 / 16)])
def test_actor_loss_and_td_targets_hand_example(tmp_path: Path, exponent: str, expected_loss: float) -> None:
    # gamma = lambda = 0.5, H = 4, model reward 1, V = 2. Per env (online, real dones from ScriptedEnv):
    #   env 0 truncated at h=1: -(1.5 + .25*2) = -2, then steps 2-3 -(1.5 + .5*.25*2) = -1.75  -> -3.75
    #   env 1 terminated at h=1: -(1.5 + 0) = -1.5, then -1.75                              -> -3.25
    #   env 2 uninterrupted: -(1.875 + .5*.0625*2) = -1.9375 (gamma^(H+1) bootstrap)
    #   env 3 terminated at the last step: its return is kept, -(1.875 + 0) = -1.875 (reference defect 6)
    # With bootstrap_exponent "H" the final terms use gamma^m: -4, -3.5, -2, -1.875. Loss = mean / H.
    config = hand_config(bootstrap_exponent=exponent)
    pwm = PWM(scripted_env(), config, seed=0, world_model=untrained(constant_model(None)))
    constant_critic(pwm.critic, 2.0)
    metrics = pwm.train_iteration()
    assert metrics["actor_loss"] == pytest.approx(expected_loss)
    # TD(lambda) targets G_t = r + gamma * (V' if done else (1 - lam) V' + lam G_{t+1}): envs 0 and 2 all 2;
    # env 1 (V' = 0 at h=1): 1.75, 1, 2, 2; env 3 (V' = 0 at h=3): 1.984375, 1.9375, 1.75, 1.
    assert metrics["value_target_mean"] == pytest.approx((8 + 8 + 6.75 + 6.671875) / 16)
    assert metrics["window_length_mean"] == pytest.approx(16 / 6)
    assert (metrics["early_terminations"], metrics["truncations"]) == (2.0, 1.0)
    assert metrics["model_reward_mean"] == pytest.approx(1.0)


def test_a_target_critic_bootstraps_and_follows_the_critic_by_polyak() -> None:
    # The hand example above with the online critics at 5 and a target critic at 2: the actor loss and the
    # TD(lambda) targets are those of V = 2, and afterwards target = alpha * 2-critic + (1 - alpha) * fitted.
    pwm = PWM(scripted_env(), hand_config(target_critic_alpha=0.25), 0, untrained(constant_model(None)))
    constant_critic(pwm.critic, 5.0)
    constant_critic(pwm.target_critic, 2.0)
    before = copy.deepcopy(pwm.target_critic)
    metrics = pwm.train_iteration()
    assert metrics["actor_loss"] == pytest.approx(-10.8125 / 16)
    assert metrics["value_target_mean"] == pytest.approx((8 + 8 + 6.75 + 6.671875) / 16)
    for target, old, fitted in zip(
        pwm.target_critic.parameters(), before.parameters(), pwm.critic.parameters(), strict=True
    ):
        assert torch.allclose(target, 0.25 * old + 0.75 * fitted)
    assert not pwm.target_critic.members[0][-1].bias.requires_grad
    with pytest.raises(ValueError, match="target_critic_alpha must be in"):
        PWMConfig(target_critic_alpha=1.0)


@pytest.mark.parametrize(
    ("probability", "expected_return", "expected_target", "expected_ended"),
    [
        # gamma = 0.5, H = 4, reward 1, V = 2, q = 1 - p, real ends as in the hand example below. Step h of a
        # segment is weighted by q^h and its bootstrap by q^(m+1); a real end restarts the continuation:
        #   env 2 uninterrupted: sum_h (gamma q)^h + gamma^5 q^4 V
        #   env 0 truncated at h=1: 1 + gamma q + gamma^2 q^2 V, then 1 + gamma q + gamma^3 q^2 V
        #   env 1 terminated at h=1: 1 + gamma q (V = 0), then as env 0;  env 3 terminated at h=3: sum only
        (
            0.25,
            1.588134765625 + 3.171875 + 2.890625 + 1.568359375,
            (8 + 8 + 6.75 + 6.671875) / 16,
            1 - (2 * 0.75**2 + 2 * 0.75**4) / 4,
        ),
        # p > 0.5 ends every step for the critic: V' = 0, every TD(lambda) target is the reward 1.
        (0.75, 1.142822265625 + 2.296875 + 2.265625 + 1.142578125, 1.0, 1 - (2 * 0.25**2 + 2 * 0.25**4) / 4),
    ],
)
def test_online_imagined_returns_end_with_the_termination_head_between_real_ends_by_hand(
    probability: float, expected_return: float, expected_target: float, expected_ended: float
) -> None:
    config = hand_config()
    pwm = PWM(scripted_env(), config, seed=0, world_model=untrained(constant_model(probability)))
    assert pwm.imagined_termination and pwm.mode.replay.would_terminate is not None
    constant_critic(pwm.critic, 2.0)
    metrics = pwm.train_iteration()
    assert metrics["actor_loss"] == pytest.approx(-expected_return / 16)
    assert metrics["value_target_mean"] == pytest.approx(expected_target)
    assert metrics["imagined_termination"] == pytest.approx(expected_ended)
    assert (metrics["early_terminations"], metrics["truncations"]) == (2.0, 1.0)
    # The finished real episodes are replayed with their flags: only env 1's terminal state is flagged.
    flags = [
        pwm.mode.replay.would_terminate[start : start + length + 1]
        for start, length in pwm.mode.replay.episodes
    ]
    assert [f.tolist() for f in flags] == [[False] * 3, [False, False, True], [False] * 4 + [True]]
    # Off, the same model's head is ignored: the reference's online driver (as without a head).
    off = PWM(scripted_env(), replace(config, termination=False), 0, untrained(constant_model(probability)))
    assert not off.imagined_termination and off.mode.replay.would_terminate is None


def test_online_pwm_fine_tunes_the_termination_head_and_resumes_bit_exactly(
    open_data: Path, open_pretrained: PretrainedWorldModel
) -> None:
    model_training = WMTrainConfig(horizon=4, batch_size=8)
    config = replace(
        TINY, horizon=4, model_training=model_training, critic_iterations=2, diagnostics_interval=0
    )

    def make() -> PWM:
        env = make_toy_env(num_envs=4, seed=0, episode_length=6)
        return PWM(env, config, 0, copy.deepcopy(open_pretrained), load_dataset(open_data))

    pwm = make()
    head = copy.deepcopy(pwm.world_model.termination_head.state_dict())
    metrics = pwm.train_iteration()
    assert metrics["wm_termination_loss"] > 0 and "imagined_termination" in metrics
    assert not all(torch.equal(v, pwm.world_model.termination_head.state_dict()[k]) for k, v in head.items())
    modules = ["actor", "critic", "actor_optimizer", "critic_optimizer", "wm_trainer"]
    resume_bit_exactly(make, modules)
    # A dataset recorded before the flags existed cannot seed a replay that trains the head.
    unflagged = replace(load_dataset(open_data), would_terminate=None)
    with pytest.raises(ValueError, match="would_terminate flags in the dataset"):
        PWM(make_toy_env(num_envs=4), config, 0, open_pretrained, unflagged)
    assert not PWM(
        make_toy_env(num_envs=4), replace(config, termination=False), 0, open_pretrained, unflagged
    ).imagined_termination


def test_actor_gradient_reaches_the_actor_only_through_the_frozen_model(
    toy_data: Path, pretrained: PretrainedWorldModel
) -> None:
    config = replace(TINY, mode="offline")
    pwm = PWM(make_toy_env(num_envs=8, seed=0), config, 0, pretrained, load_dataset(toy_data))
    frozen = {k: v.clone() for k, v in pwm.world_model.state_dict().items()}
    actor_before = [p.detach().clone() for p in pwm.actor.parameters()]
    assert not any(p.requires_grad for p in pwm.world_model.parameters())
    for _ in range(3):
        metrics = pwm.train_iteration()
        assert metrics["actor_grad_norm"] > 0
    assert all(torch.equal(v, pwm.world_model.state_dict()[k]) for k, v in frozen.items())  # bitwise
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, pwm.actor.parameters(), strict=True))
    assert pwm.env_steps_per_iteration == 0 and "wm_loss" not in metrics

    # Cut the action inputs of F and R: the imagined return no longer depends on the actions, and (with the
    # actor's input detached) no gradient reaches the actor at all.
    latent = pwm.world_model.config.latent_dim
    with torch.no_grad():
        for head in (pwm.world_model.dynamics, pwm.world_model.reward_head):
            head[0].linear.weight[:, latent : latent + 2] = 0.0
    assert pwm.train_iteration()["actor_grad_norm"] == 0.0


def one_end_env(end: int | None) -> ScriptedEnv:
    """Two envs; env 0 truncates at step ``end`` (None: never)."""
    return ScriptedEnv(2, truncate={} if end is None else {0: end})


def test_a_real_episode_end_leaves_the_other_envs_gradients_intact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WorldModel(1, 1, world_model_config("tiny"))
    torch.nn.init.normal_(model.reward_head[-1].weight)  # rewards that depend on z and a
    config = replace(TINY, horizon=4, ret_rms=False, diagnostics_interval=0)
    gradients = []
    for end in (1, None):
        torch.manual_seed(1)
        pwm = PWM(one_end_env(end), config, seed=0, world_model=untrained(model))
        window = pwm.imagine(pwm.env.detach_state())
        gradients.append(torch.autograd.grad(window["per_env_loss"][1], list(pwm.actor.parameters())))
    # Env 1 imagines the same trajectory whether or not env 0's real episode ended (and its latent reset).
    assert all(torch.allclose(a, b) for a, b in zip(*gradients, strict=True))
    assert any(bool(g.abs().sum() > 0) for g in gradients[0])


def test_offline_start_states_are_dataset_states_with_a_full_window_ahead(
    toy_data: Path, pretrained: PretrainedWorldModel
) -> None:
    dataset = load_dataset(toy_data)
    config = replace(TINY, mode="offline", batch_size=256, diagnostics_interval=0)
    pwm = PWM(make_toy_env(num_envs=8), config, 0, pretrained, dataset)
    where = {}  # dataset observation -> (episode, step, episode length)
    for episode, (start, length) in enumerate(
        zip(dataset.episode_start, dataset.episode_length, strict=True)
    ):
        for step in range(length + 1):
            where[tuple(dataset.obs[start + step].tolist())] = (episode, step, int(length))
    first, second = pwm.mode.start_states(), pwm.mode.start_states()
    assert first.shape == (256, 4) and not torch.equal(first, second)  # fresh states every iteration
    found = [where[tuple(row.tolist())] for row in first]  # KeyError: not an observation of the dataset
    assert all(step + config.horizon <= length for _, step, length in found)  # H real steps follow each
    assert len({episode for episode, _, _ in found}) > 32  # spread over the 64 episodes
    assert len({step for _, step, _ in found}) > 16  # and over their time steps, not only the first


def test_data_env_steps_count_each_dataset_once(toy_data: Path, pretrained: PretrainedWorldModel) -> None:
    dataset = load_dataset(toy_data)
    transitions = dataset.num_transitions
    offline = replace(TINY, mode="offline")
    assert PWM(make_toy_env(num_envs=4), offline, 0, pretrained, dataset).data_env_steps == transitions
    online = PWM(make_toy_env(num_envs=4), TINY, seed=0, world_model=pretrained)
    assert online.data_env_steps == transitions and online.mode.replay.num_episodes == 0
    seeded = PWM(make_toy_env(num_envs=4), TINY, seed=0, dataset=dataset)
    assert seeded.mode.replay.num_transitions == transitions and seeded.data_env_steps == transitions


def toy_learning(
    mode: str,
    seed: int,
    iterations: int,
    toy_data: Path,
    pretrained: PretrainedWorldModel,
    env_options: dict[str, Any] | None = None,
    **changes: Any,
) -> tuple[float, float]:
    """Deterministic evaluation return (16 episodes) of a PWM actor on the toy env (``env_options``; early
    termination on) before and after ``iterations`` iterations from the pretrained tiny model."""
    torch.manual_seed(seed)
    config = replace(TINY, mode=mode, max_epochs=iterations, diagnostics_interval=0, **changes)
    env_options = env_options or {}
    env = make_toy_env(num_envs=32, seed=seed, **env_options)
    pwm = PWM(env, config, seed, pretrained, load_dataset(toy_data))
    eval_env = make_toy_env(num_envs=16, seed=100 + seed, **env_options)

    def score() -> float:
        return float(evaluate(eval_env, lambda obs: pwm.act(obs)).returns.mean())

    before = score()
    for _ in range(iterations):
        metrics = pwm.train_iteration()
    assert metrics["collect_only"] == 0.0
    return before, score()


@pytest.mark.slow
def test_online_pwm_improves_return_on_toy_env_over_seeds(
    toy_data: Path, pretrained: PretrainedWorldModel
) -> None:
    # The optimum is about 2.3 per step over 64 steps (~140). Measured on an AMD EPYC at 100 iterations,
    # seeds 0-9: all 10 improve by more than 50 (before -26 to 71, after 137-143 except seed 7: 98.4), 9 of
    # 10 end above 100. At the former 30 iterations 4 of 10 seeds cleared the bar (issue 10).
    # Offline PWM on this toy data (early termination on: no state beyond the band) does not improve the real
    # return (seeds 0, 1 at 100 iterations: 70.6 -> 16.0, -26.4 -> 10.6; issue 10: 0 of 10): its diagnostics
    # (seeds 0-4) show the imagined 8-step return saturating at 7.7 while the model's actor gradient turns
    # away from the simulator's (cosine 0.8-1.0 at iteration 0, -0.96 to -0.05 at 40). The offline learning
    # test below uses data recorded with early termination off and the termination head.
    results = [toy_learning("online", seed, 100, toy_data, pretrained) for seed in range(5)]
    improved = sum(after > before + 50 for before, after in results)
    assert float(np.median([after for _, after in results])) > 100 and improved >= 4, results


@pytest.mark.slow
def test_offline_pwm_improves_return_on_toy_env_over_seeds(
    open_data: Path, open_pretrained: PretrainedWorldModel
) -> None:
    # Offline (our extension): frozen model, 128 dataset start states, imagined returns ended by the
    # termination head, data recorded with early termination off (as the pipeline records it). Measured on an
    # AMD EPYC at 100 iterations, seeds 0-4 (before -> after), with two instances of the pretrained model:
    # before the faster Mish/SimNorm (rounding-level changes to the model code): -13.2 -> 132.8, 16.8 ->
    # 123.5, -12.4 -> 138.0, 31.0 -> 130.4, -33.2 -> 25.2; after them: -13.0 -> 19.4, -18.7 -> 26.8, -16.2 ->
    # 25.2, 24.0 -> 110.6, -40.1 -> 129.8 (and at 200 iterations no better). What held for both: every seed
    # improves by more than 30 (the final level depends strongly on the model instance: offline extraction
    # on the toy is fragile, see issue 10). With data recorded with early termination on and no head, 0 of
    # 10 seeds improved.
    results = [toy_learning("offline", s, 100, open_data, open_pretrained, batch_size=128) for s in range(5)]
    gains = [after - before for before, after in results]
    assert sum(gain > 25 for gain in gains) >= 4 and float(np.median(gains)) > 30, results


def test_stopping_rule_restores_the_last_passing_actor_and_stops(
    open_data: Path, open_pretrained: PretrainedWorldModel
) -> None:
    config = replace(TINY, mode="offline", guard_gap=1.0, diagnostics_interval=1)
    pwm = PWM(make_toy_env(num_envs=8), config, 0, open_pretrained, load_dataset(open_data))
    gaps = iter([0.3, 0.8, 2.0])  # growth over the first: 0, 0.5 (passes), 1.7 (> 1: fails), then any
    pwm.diagnostics = lambda: {"diag/episodic_gap": next(gaps, 0.0)}
    history, actors = [], []
    for _ in range(3):
        actors.append(copy.deepcopy(pwm.actor.state_dict()))
        history.append(pwm.train_iteration())
    assert [m["guard_stopped"] for m in history] == [0.0, 0.0, 1.0]
    assert [m["guard_gap_growth"] for m in history] == pytest.approx([0.0, 0.5, 1.7])
    assert history[-1]["guard_env_steps"] == 3 * config.horizon * 8  # the diagnostics' simulator steps
    assert "actor_loss" in history[1] and "actor_loss" not in history[2]
    # Back to the actor checked at iteration 1 (the last that passed), and it stays there.
    assert all(torch.equal(v, pwm.actor.state_dict()[k]) for k, v in actors[1].items())
    state = pwm.state_dict()
    metrics = pwm.train_iteration()
    assert (
        metrics["guard_stopped"] == 1.0 and "actor_loss" not in metrics and "guard_gap_growth" not in metrics
    )
    assert all(torch.equal(v, pwm.actor.state_dict()[k]) for k, v in actors[1].items())
    resumed = PWM(make_toy_env(num_envs=8), config, 1, open_pretrained, load_dataset(open_data))
    resumed.load_state_dict(state)
    assert resumed.mode.guard.stopped and resumed.train_iteration()["guard_stopped"] == 1.0
    with pytest.raises(ValueError, match="guard_gap"):
        replace(TINY, mode="offline", guard_gap=1.0, diagnostics_interval=0)


def test_fresh_model_collects_until_the_replay_can_sample() -> None:
    model_training = WMTrainConfig(horizon=4, batch_size=8)
    config = replace(
        TINY, horizon=4, model_training=model_training, wm_bootstrap_steps=5, critic_iterations=1
    )
    pwm = PWM(make_toy_env(num_envs=4, seed=0, early_termination=False, episode_length=10), config, seed=0)
    assert pwm.env_steps_per_iteration == 16
    history = [pwm.train_iteration() for _ in range(5)]
    # Episodes of 10 steps end during iteration 2 (steps 8-11): iterations 0-2 only collect, iteration 3
    # learns and trains the model for wm_bootstrap_steps, iteration 4 for wm_steps_per_epoch.
    assert [m["collect_only"] for m in history] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert "actor_loss" not in history[2] and "wm_loss" not in history[2]
    assert (history[3]["wm_steps"], history[4]["wm_steps"]) == (5.0, 4.0)
    assert history[4]["replay_episodes"] == 8.0 and history[4]["train_return"] != 0
    assert all("reward/forward" in m for m in history)  # the real env's reward terms, logged online too


@pytest.mark.parametrize(
    ("mode", "target_critic_alpha"), [("online", None), ("offline", None), ("online", 0.9)]
)
def test_state_dict_continues_bit_exactly(
    mode: str, target_critic_alpha: float | None, toy_data: Path, pretrained: PretrainedWorldModel
) -> None:
    inputs = {"world_model": pretrained, "dataset": load_dataset(toy_data)} if mode == "offline" else {}
    model_training = WMTrainConfig(horizon=4, batch_size=8)
    config = replace(
        TINY,
        mode=mode,
        horizon=4,
        model_training=model_training,
        wm_bootstrap_steps=3,
        critic_iterations=2,
        target_critic_alpha=target_critic_alpha,
    )

    def make() -> PWM:
        return PWM(make_toy_env(num_envs=4, seed=0, episode_length=6), config, seed=0, **inputs)

    modules = ["actor", "critic", "actor_optimizer", "critic_optimizer", "wm_trainer"]
    modules += ["target_critic"] if target_critic_alpha is not None else []
    result = resume_bit_exactly(make, modules)
    if mode == "online":
        assert "wm_loss" in result.metrics[-1]
    obs = torch.randn(3, 4)
    assert torch.equal(result.reference.act(obs), result.resumed.act(obs))


def test_config_validation(tmp_path: Path, pretrained: PretrainedWorldModel) -> None:
    with pytest.raises(ValueError, match="offline mode needs"):
        PWM(make_toy_env(), replace(TINY, mode="offline"), seed=0, world_model=pretrained)
    with pytest.raises(ValueError, match="bootstrap_exponent must be one of"):
        PWMConfig(bootstrap_exponent="H-1")
    with pytest.raises(ValueError, match="unknown PWM setting"):
        PWMConfig.from_dict({"horizon": 16, "planning": True})
    assert PWMConfig.from_dict(PWMConfig().to_dict() | {"actor_hidden": [64]}).actor_hidden == (64,)
    # A pretrained model brings its own architecture; config.world_model only shapes a fresh one.
    mish = replace(TINY, world_model=world_model_config("tiny", variant="mish"))
    assert PWM(make_toy_env(), mish, seed=0, world_model=pretrained).world_model.config == pretrained.config
    with pytest.raises(ValueError, match="obs/act dims"):
        PWM(scripted_env(), TINY, seed=0, world_model=pretrained)
    ant, ant_envs = published_config("pwm", "offline", "ant")
    assert (ant.mode, ant_envs, ant.max_epochs, ant.horizon, ant.critic_iterations) == (
        "offline",
        128,
        15_000,
        16,
        8,
    )
    assert published_config("pwm", "online", "humanoid")[1] == 64


def test_cpu_presets_use_the_small_world_model_and_paper_the_paper_size() -> None:
    for variant in ("online", "offline"):
        for preset, size in (("cpu", "small"), ("paper", "single")):
            settings = resolve_settings("pwm", "ant", preset, variant)
            assert PWMConfig.from_dict(settings["algo"]).world_model == world_model_config(size)
    # Pretraining adds the termination head (our extension, for offline PWM) only when asked.
    assert pretrain_settings("cpu", "ant").world_model == world_model_config("small")
    assert pretrain_settings("paper", "ant").world_model == world_model_config("single")
    assert pretrain_settings("cpu", "ant", termination_head=True).world_model.termination_head


def episode(length: int, tag: float, obs_dim: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of an episode of ``length`` transitions: obs = (tag, step), action = step, reward = step."""
    steps = np.arange(length + 1, dtype=np.float32)
    obs = np.stack([np.full(length + 1, tag, np.float32), steps], axis=1)[:, :obs_dim]
    return obs, steps[:, None], steps


def test_replay_evicts_oldest_whole_episodes_and_samples_inside_episodes() -> None:
    replay = EpisodeReplay(capacity=20, obs_dim=2, act_dim=1, device="cpu")
    for tag, length in enumerate((5, 6, 3)):  # rows 0-5, 6-12, 13-16
        replay.add(*episode(length, tag))
    assert (replay.num_episodes, replay.num_transitions) == (3, 14)
    replay.add(*episode(4, 3))  # 5 rows do not fit after row 16: wraps to 0, evicting episode 0 only
    assert [start for start, _ in replay.episodes] == [6, 13, 0] and replay.num_transitions == 13
    replay.add(*episode(7, 4))  # rows 5-12 overlap episode 1: evicted
    assert [length for _, length in replay.episodes] == [3, 4, 7]
    assert not replay.can_sample(8) and replay.can_sample(7)

    generator = torch.Generator().manual_seed(0)
    batch = replay.sample(500, 3, generator)
    obs = batch["obs"]
    assert (
        obs.shape == (500, 4, 2)
        and batch["action"].shape == (500, 3, 1)
        and batch["reward"].shape == (500, 3)
    )
    assert bool((obs[:, :, 0] == obs[:, :1, 0]).all())  # one episode per window
    assert bool((obs[:, 1:, 1] - obs[:, :-1, 1] == 1).all())  # consecutive steps
    assert bool((batch["action"][:, :, 0] == obs[:, 1:, 1]).all())  # a_t, r_t: transition s_t -> s_{t+1}
    starts = {tuple(row.tolist()) for row in obs[:, 0]}
    assert len(starts) == 1 + 2 + 5  # windows of 3 transitions in episodes of 3, 4 and 7
    with pytest.raises(ValueError, match="at least 8 transitions"):
        replay.sample(1, 8, generator)

    restored = EpisodeReplay(capacity=20, obs_dim=2, act_dim=1, device="cpu")
    restored.load_state_dict(replay.state_dict())
    for target in (replay, restored):
        target.add(*episode(2, 5))
    a, b = (
        replay.sample(64, 2, torch.Generator().manual_seed(1)),
        restored.sample(64, 2, torch.Generator().manual_seed(1)),
    )
    assert all(torch.equal(a[k], b[k]) for k in a) and replay.episodes == restored.episodes


def test_replay_keeps_termination_flags_with_their_transitions() -> None:
    replay = EpisodeReplay(capacity=30, obs_dim=2, act_dim=1, device="cpu", termination_flags=True)
    for tag, length in enumerate((5, 6, 3)):
        obs, action, reward = episode(length, tag)
        replay.add(obs, action, reward, np.arange(length + 1) == length)  # the last state is flagged
    batch = replay.sample(200, 3, torch.Generator().manual_seed(0))
    # would_terminate[t] is the flag of s_{t+1}: set exactly where s_{t+1} is its episode's last state.
    lengths = torch.tensor([5.0, 6.0, 3.0])[batch["obs"][:, 0, 0].long()]
    assert torch.equal(batch["would_terminate"], batch["obs"][:, 1:, 1] == lengths[:, None])
    assert bool(batch["would_terminate"].any())
    with pytest.raises(ValueError, match="every episode needs them"):
        replay.add(*episode(2, 3))
    with pytest.raises(ValueError, match="keeps no would_terminate"):
        EpisodeReplay(30, 2, 1, "cpu").add(*episode(2, 3), np.zeros(3, bool))
    restored = EpisodeReplay(capacity=30, obs_dim=2, act_dim=1, device="cpu", termination_flags=True)
    restored.load_state_dict(replay.state_dict())
    assert torch.equal(restored.would_terminate, replay.would_terminate)
    with pytest.raises(ValueError, match="differ in keeping would_terminate"):
        EpisodeReplay(30, 2, 1, "cpu").load_state_dict(replay.state_dict())


def test_online_value_equivalence_reads_the_critic_without_training_it(
    toy_data: Path, pretrained: PretrainedWorldModel
) -> None:
    """``model_training.value_coef`` (our extension): the online model update passes the bootstrap critic,
    frozen; its gradient reaches the latents, never the critic, and the critic stays trainable."""
    config = replace(TINY, model_training=WMTrainConfig(horizon=8, batch_size=32, value_coef=0.03))
    pwm = PWM(make_toy_env(num_envs=8, seed=0), config, 0, pretrained, load_dataset(toy_data))
    latents = pwm.world_model.encode(torch.randn(5, pwm.env.obs_dim)).detach().requires_grad_(True)
    pwm.frozen_value(latents).sum().backward()
    assert latents.grad is not None and float(latents.grad.abs().sum()) > 0
    assert all(p.grad is None and p.requires_grad for p in pwm.critic.parameters())
    metrics = pwm.train_iteration()
    assert metrics["wm_value_loss"] > 0
    plain = PWM(make_toy_env(num_envs=8, seed=0), TINY, 0, pretrained, load_dataset(toy_data))
    assert "wm_value_loss" not in plain.train_iteration()
