"""Shared test utilities: MuJoCo states, learning on the toy env, and the resume checks (a trainer's
``state_dict`` round trip; an interrupted ``bench.run`` run against an uninterrupted one)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import pandas as pd
import torch

from algos.dataset import load_dataset
from bench import rundir
from bench.harness import evaluate, start_run
from tests.toy_envs import make_toy_env

RESUME_SETTINGS = ["algo.max_epochs=6", "run.eval_interval=0.25", "env.early_termination=false"]
"""``bench.run`` settings of the interrupted-run tests: 6 smoke iterations, evaluations every 25%."""


def asset_model(name: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(resources.files("envs") / "assets" / f"{name}.xml"))


def random_states(m: mujoco.MjModel, num: int, seed: int, velocity_scale: float = 1.0):
    """Random (qpos, qvel): a free root's position ~ N(0, 1) and a random unit quaternion; every other
    coordinate qpos0 + U(-1, 1) (planar roots' slides and hinges included; ball quaternions are left
    unnormalised)."""
    rng = np.random.default_rng(seed)
    q = np.tile(m.qpos0, (num, 1))
    free = m.jnt_type == mujoco.mjtJoint.mjJNT_FREE
    if free.any():
        q[:, :3] += rng.normal(size=(num, 3))
        quat = rng.normal(size=(num, 4))
        q[:, 3:7] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    first = 7 if free.any() else 0
    q[:, first:] += rng.uniform(-1, 1, size=(num, m.nq - first))
    qd = rng.normal(size=(num, m.nv)) * velocity_scale
    return q, qd


def toy_learning(
    build: Callable[[Any, int], Any],
    seeds: Iterable[int],
    iterations: int,
    num_envs: int,
    **env_overrides: Any,
) -> list[tuple[float, float]]:
    """(return before, return after ``iterations``) of the trainer ``build(env, seed)`` on the toy env per
    seed: the deterministic policy on 16 evaluation envs (toy optimum about 140, a fresh policy near 0);
    ``env_overrides`` apply to both envs."""
    results = []
    for seed in seeds:
        torch.manual_seed(seed)
        trainer = build(make_toy_env(num_envs=num_envs, seed=seed, **env_overrides), seed)
        eval_env = make_toy_env(num_envs=16, seed=100 + seed, **env_overrides)

        before = float(evaluate(eval_env, trainer.act).returns.mean())
        for _ in range(iterations):
            trainer.train_iteration()
        results.append((before, float(evaluate(eval_env, trainer.act).returns.mean())))
    return results


def assert_learns_toy_task(build: Callable[[Any, int], Any], iterations: int, num_envs: int) -> None:
    """:func:`toy_learning` over seeds 0-4: the median final return exceeds 100 and at least 4 of the 5 seeds
    gain more than 50."""
    results = toy_learning(build, range(5), iterations, num_envs)
    improved = sum(after > before + 50 for before, after in results)
    assert float(np.median([after for _, after in results])) > 100 and improved >= 4, results


def constant_critic(critic: torch.nn.Module, value: float) -> None:
    """Make every member of a :class:`~algos.networks.CriticEnsemble` output ``value`` everywhere."""
    with torch.no_grad():
        for member in critic.members:
            member[-1].weight.zero_()
            member[-1].bias.fill_(value)


# -- resume checks ------------------------------------------------------------------------------------


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested checkpoint contents are equal, tensors bit for bit (NaN matching NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):  # NaN where the other has NaN (e.g. a replay's first-row actions)
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, float | np.ndarray | np.generic):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


@dataclass
class Resumed:
    reference: Any
    """The trainer that ran on without a checkpoint."""
    resumed: Any
    """The fresh trainer restored from the checkpoint."""
    checkpoint: dict[str, Any]
    """The reference's ``state_dict`` at the checkpoint (after a round trip through ``torch.save``)."""
    metrics: list[dict[str, float]]
    """The reference's metrics of the iterations after the checkpoint."""


def resume_bit_exactly(
    make: Callable[[], Any],
    modules: Iterable[str],
    before: int = 3,
    after: int = 3,
    timing: tuple[str, ...] = (),
) -> Resumed:
    """Train ``make()`` ``before`` iterations, checkpoint it (``state_dict`` through ``torch.save``) and train
    ``after`` more; a fresh ``make()`` of another initialisation restored from the checkpoint must give the
    same metrics (bar the wall-clock ones in ``timing``) and end with the same ``modules`` (attribute
    names), bit for bit."""
    torch.manual_seed(0)
    reference = make()
    for _ in range(before):
        reference.train_iteration()
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    expected = [reference.train_iteration() for _ in range(after)]

    torch.manual_seed(123)  # a different initialisation: everything must come from the checkpoint
    resumed = make()
    checkpoint = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    resumed.load_state_dict(checkpoint)
    actual = [resumed.train_iteration() for _ in range(after)]

    def untimed(metrics: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in m.items() if k not in timing} for m in metrics]

    assert untimed(actual) == untimed(expected)
    for name in modules:
        assert_same(getattr(reference, name).state_dict(), getattr(resumed, name).state_dict(), name)
    return Resumed(reference, resumed, checkpoint, expected)


def only_run(out: Path) -> Path:
    """The one run directory under ``out``."""
    (run_dir,) = rundir.find_runs(out)
    return run_dir


def load_checkpoint(run_dir: Path, name: str = rundir.LATEST) -> dict[str, Any]:
    return torch.load(io.BytesIO(rundir.checkpoint(run_dir, name).read_bytes()), weights_only=False)


def interrupt_at(iteration: int) -> Callable[[int], None]:
    """An ``on_iteration`` callback of :func:`bench.harness.start_run` that stops the run at ``iteration``
    as Ctrl-C would."""

    def interrupt(reached: int) -> None:
        if reached == iteration:
            raise KeyboardInterrupt

    return interrupt


def straight_and_interrupted(algo: str, env: str, out: Path, **kwargs: Any) -> tuple[Path, Path]:
    """Two smoke runs with :data:`RESUME_SETTINGS` and ``--save-data`` under ``out``: one uninterrupted,
    one interrupted at iteration 3 (resuming it is the caller's test)."""
    runs = []
    for name, stop in (("straight", None), ("resumed", interrupt_at(3))):
        settings = {"overrides": RESUME_SETTINGS, "save_data": True, **kwargs}
        start_run(algo, env, preset="smoke", out=out / name, on_iteration=stop, **settings)
        runs.append(only_run(out / name))
    assert rundir.read_summary(runs[1])["status"] == "interrupted"
    return runs[0], runs[1]


def comparable(run_dir: Path, timing: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Everything a run wrote except wall-clock quantities (``fps`` and the ``timing`` metrics)."""
    train = pd.read_csv(run_dir / rundir.TRAIN).drop(columns="wall_time_s")
    evals = pd.read_csv(run_dir / rundir.EVAL).drop(columns=["wall_time_s", "train_time_s", "eval_time_s"])
    clock = train["metric"].isin(["fps", *timing])
    return {
        "train": train[~clock].reset_index(drop=True),
        "eval": evals,
        "episodes": pd.read_csv(run_dir / rundir.EVAL_EPISODES),
    }


def assert_same_run(expected: Path, actual: Path, timing: tuple[str, ...] = ()) -> None:
    """Two run directories hold the same numbers, bit for bit: run files (bar wall-clock quantities), the
    final checkpoint's trainer, and the ``--save-data`` episodes where there are some."""
    for name, table in comparable(expected, timing).items():
        pd.testing.assert_frame_equal(table, comparable(actual, timing)[name], check_exact=True, obj=name)
    final = [load_checkpoint(run_dir, rundir.FINAL)["trainer"] for run_dir in (expected, actual)]
    assert_same(*final, "trainer")
    if (expected / rundir.DATA).exists():
        data = [load_dataset(run_dir / rundir.DATA) for run_dir in (expected, actual)]
        for field in ("obs", "action", "action_raw", "reward", "epoch", "episode_id"):
            np.testing.assert_array_equal(getattr(data[0], field), getattr(data[1], field))
