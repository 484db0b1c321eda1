"""The episode dataset format: recorder -> chunked writer -> reader -> sub-trajectory sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from algos.dataset import (
    DatasetWriter,
    EpisodeRecorder,
    heldout_by_ids,
    load_dataset,
    sample_subtrajectories,
    split_heldout,
)

# Two envs over 7 steps. Env 0: episodes of 3 (terminated), 4 (truncated). Env 1: 5 (truncated), then 2
# unfinished steps. Observation = [env, step counter of this env, running episode number].
ENDS = {(0, 2): "terminated", (0, 6): "truncated", (1, 4): "truncated"}


def record(recorder: EpisodeRecorder) -> list:
    episode = [0, 0]
    for t in range(7):
        obs = torch.tensor([[e, t, episode[e]] for e in range(2)], dtype=torch.float32)
        next_obs = obs + torch.tensor([0.0, 1.0, 0.0])
        terminated = torch.tensor([ENDS.get((e, t)) == "terminated" for e in range(2)])
        truncated = torch.tensor([ENDS.get((e, t)) == "truncated" for e in range(2)])
        action = torch.full((2, 1), float(t))
        reward = torch.tensor([10.0 * e + t for e in range(2)])
        recorder.add_step(
            obs, torch.tanh(action), action, reward, next_obs, terminated, truncated, epoch=t // 4
        )
        for e in range(2):
            episode[e] += int(terminated[e] or truncated[e])
    return recorder.pop_finished()


def test_recorder_rows_follow_buffer_convention() -> None:
    episodes = record(EpisodeRecorder(num_envs=2))
    assert [(ep.length, ep.terminated, ep.truncated) for ep in episodes] == [
        (3, True, False),
        (5, False, True),
        (4, False, True),
    ]
    first = episodes[0]
    assert np.isnan(first.action[0]).all() and np.isnan(first.reward[0])
    assert first.obs[:, 1].tolist() == [0, 1, 2, 3]  # s_0..s_3, the last one before the auto-reset
    assert first.action_raw[1:, 0].tolist() == [0, 1, 2]
    assert np.allclose(first.action[1:, 0], np.tanh([0, 1, 2]))
    assert first.reward[1:].tolist() == [0, 1, 2]
    assert first.epoch.tolist() == [0, 0, 0, 0]


def test_round_trip_through_chunks(tmp_path: Path) -> None:
    recorder = EpisodeRecorder(num_envs=2)
    episodes = record(recorder)
    writer = DatasetWriter(tmp_path, env="toy", obs_dim=3, act_dim=1, metadata={"early_termination": False})
    writer.write_chunk(episodes[:1])
    writer.write_chunk([])
    writer.write_chunk(episodes[1:])
    data = load_dataset(tmp_path)
    assert (data.num_episodes, data.num_transitions) == (3, 12)
    assert data.info["metadata"] == {"early_termination": False}
    assert data.episode_id.tolist() == [0, 1, 2]
    assert data.episode_start.tolist() == [0, 4, 10]
    assert data.episode_terminated.tolist() == [True, False, False]
    for i, episode in enumerate(episodes):
        rows = slice(data.episode_start[i], data.episode_start[i] + episode.length + 1)
        np.testing.assert_array_equal(data.obs[rows], episode.obs)
        np.testing.assert_array_equal(data.action_raw[rows], episode.action_raw)
        np.testing.assert_array_equal(data.reward[rows], episode.reward)


def test_writer_resume_forgets_later_chunks(tmp_path: Path) -> None:
    episodes = record(EpisodeRecorder(num_envs=2))
    writer = DatasetWriter(tmp_path, env="toy", obs_dim=3, act_dim=1)
    writer.write_chunk(episodes[:1])
    checkpoint = writer.state_dict()
    writer.write_chunk(episodes[1:])
    reopened = DatasetWriter(tmp_path, env="toy", obs_dim=3, act_dim=1)
    reopened.load_state_dict(checkpoint)
    assert sorted(p.name for p in tmp_path.glob("chunk_*")) == ["chunk_000000.npz"]
    assert load_dataset(tmp_path).num_episodes == 1
    reopened.write_chunk(episodes[2:])
    assert load_dataset(tmp_path).episode_id.tolist() == [0, 1]


def test_recorder_state_round_trip() -> None:
    recorder = EpisodeRecorder(num_envs=2)
    record(recorder)
    copy = EpisodeRecorder(num_envs=2)
    copy.load_state_dict(recorder.state_dict())
    step = [torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 3)]
    done = torch.tensor([True, True])
    for r in (recorder, copy):
        r.add_step(*step, done, ~done, epoch=9)
    a, b = recorder.pop_finished(), copy.pop_finished()
    assert [ep.length for ep in a] == [ep.length for ep in b] == [1, 3]
    np.testing.assert_array_equal(a[1].obs, b[1].obs)


def test_sampler_stays_inside_episodes(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, env="toy", obs_dim=3, act_dim=1)
    writer.write_chunk(record(EpisodeRecorder(num_envs=2)))
    data = load_dataset(tmp_path)
    batch = sample_subtrajectories(data, batch_size=500, horizon=3, rng=np.random.default_rng(0))
    assert batch["obs"].shape == (500, 4, 3) and batch["action"].shape == (500, 3, 1)
    obs = batch["obs"]
    assert (obs[:, :, 0] == obs[:, :1, 0]).all() and (obs[:, :, 2] == obs[:, :1, 2]).all()  # one episode
    assert (np.diff(obs[:, :, 1], axis=1) == 1).all()  # consecutive steps
    assert not np.isnan(batch["action"]).any() and not np.isnan(batch["reward"]).any()
    # action t belongs to the transition s_t -> s_{t+1}, taken at step counter s_t (see record()).
    assert (batch["action_raw"][:, :, 0] == obs[:, :-1, 1]).all()
    starts = {tuple(row) for row in obs[:, 0, :]}
    assert len(starts) == 1 + 3 + 2  # valid windows: episode of 3 -> 1, of 5 -> 3, of 4 -> 2
    terminated_at = np.argwhere(batch["terminated"])
    assert (obs[terminated_at[:, 0], 0, 0] == 0).all() and (terminated_at[:, 1] == 2).all()
    with pytest.raises(ValueError, match="at least 6 transitions"):
        sample_subtrajectories(data, batch_size=1, horizon=6, rng=np.random.default_rng(0))


def test_would_terminate_is_recorded_and_old_datasets_load_without_it(tmp_path: Path) -> None:
    recorder = EpisodeRecorder(num_envs=1)
    obs, act = torch.zeros(1, 3), torch.zeros(1, 1)
    flags = [False, True, False, True]  # the condition, with early termination off: the episode goes on
    for t, flag in enumerate(flags):
        end, never = torch.tensor([t == 3]), torch.tensor([False])
        recorder.add_step(obs, act, act, torch.zeros(1), obs, never, end, 0, torch.tensor([flag]))
    (episode,) = recorder.pop_finished()
    assert episode.would_terminate.tolist() == [False, *flags]  # row 0 holds no transition
    DatasetWriter(tmp_path / "new", env="toy", obs_dim=3, act_dim=1).write_chunk([episode])
    data = load_dataset(tmp_path / "new")
    assert data.would_terminate.tolist() == [False, *flags]
    batch = sample_subtrajectories(data, batch_size=8, horizon=4, rng=np.random.default_rng(0))
    assert batch["would_terminate"].tolist() == [flags] * 8  # flag t: the state s_{t+1} reached

    # Written before the column existed (or by an env that does not report it): loads, flags None.
    old = record(EpisodeRecorder(num_envs=2))
    assert all(ep.would_terminate is None for ep in old)
    DatasetWriter(tmp_path / "old", env="toy", obs_dim=3, act_dim=1).write_chunk(old)
    data = load_dataset(tmp_path / "old")
    assert data.would_terminate is None and data.num_episodes == 3
    assert "would_terminate" not in sample_subtrajectories(data, 4, 3, np.random.default_rng(0))


def test_heldout_split_is_whole_episodes_and_seeded(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, env="toy", obs_dim=3, act_dim=1)
    for _ in range(4):
        writer.write_chunk(record(EpisodeRecorder(num_envs=2)))  # 12 episodes
    data = load_dataset(tmp_path)
    train, heldout = split_heldout(data, 0.25, seed=0)
    assert (train.num_episodes, heldout.num_episodes) == (9, 3)
    assert set(train.episode_id).isdisjoint(heldout.episode_id)
    assert train.num_transitions + heldout.num_transitions == data.num_transitions
    again = heldout_by_ids(data, [int(i) for i in heldout.episode_id])
    np.testing.assert_array_equal(again.obs, heldout.obs)  # the recorded ids rebuild the same split
    assert split_heldout(data, 0.25, seed=0)[1].episode_id.tolist() == heldout.episode_id.tolist()
    assert split_heldout(data, 0.25, seed=1)[1].episode_id.tolist() != heldout.episode_id.tolist()
    assert split_heldout(data, 0.0, seed=0) == (data, None)
    with pytest.raises(ValueError, match="heldout fraction"):
        split_heldout(data, 1.0, seed=0)
