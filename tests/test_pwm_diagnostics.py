"""PWM diagnostics (algos.pwm_diagnostics): against an exact model of the toy env, and inside a PWM run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from algos.dataset import load_dataset
from algos.networks import CriticEnsemble, StochasticActor
from algos.pwm import PWM
from algos.pwm_diagnostics import diagnose, policy_noise, reset_snapshot
from algos.wm_training import PretrainedWorldModel
from bench import report, rundir
from bench.report import diagnostics
from tests.test_pwm import TINY, pretrained, toy_data  # noqa: F401 (fixtures)
from tests.test_report import _make_run
from tests.toy_envs import make_toy_env


class ExactToyModel(torch.nn.Module):
    """The toy point mass itself as a 'world model' (z = obs); ``reward_sign`` -1: it lies about rewards."""

    def __init__(self, reward_sign: float = 1.0, lateral_drift: float = 0.0) -> None:
        super().__init__()
        self.reward_sign, self.lateral_drift = reward_sign, lateral_drift

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def step(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = action.clamp(-1.0, 1.0)
        vel = 0.8 * z[..., 2:] + 0.5 * action
        pos = z[..., :2] + 0.1 * vel + torch.tensor([0.0, self.lateral_drift])
        reward = vel[..., 0] - 0.1 * action.square().sum(-1) - 0.5 * pos[..., 1].square()
        return torch.cat([pos, vel], dim=-1), self.reward_sign * reward


def setup(horizon: int = 8) -> tuple[object, dict, StochasticActor, CriticEnsemble, torch.Tensor]:
    torch.manual_seed(0)
    env = make_toy_env(num_envs=16, seed=3)
    env.reset()
    actor = StochasticActor(4, 2, (16,), "mish")
    critic = CriticEnsemble(4, (16,), "mish", num_critics=2)
    return env, reset_snapshot(env), actor, critic, policy_noise(horizon, 16, 2, seed=0, device="cpu")


def test_an_exact_model_agrees_with_the_simulator_and_a_lying_one_does_not() -> None:
    env, start, actor, critic, noise = setup()
    before = env.state_dict()
    exact = diagnose(env, start, ExactToyModel(), actor, critic, None, noise, 0.99, detach=True)
    assert exact["diag/gradient_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert exact["diag/value_gradient_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert exact["diag/objective_gradient_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert exact["diag/model_value_gradient_ratio"] == pytest.approx(exact["diag/real_value_gradient_ratio"])
    assert exact["diag/return_gap"] == pytest.approx(0.0, abs=1e-5)
    assert exact["diag/real_return"] == pytest.approx(exact["diag/real_return_raw"])
    assert exact["diag/model_return_real_actions"] == pytest.approx(exact["diag/real_return"], rel=1e-5)
    for name in ("latent_error_1step", "reward_error_1step", "latent_error_Hstep", "reward_error_Hstep"):
        assert exact[f"diag/wm_{name}"] == pytest.approx(0.0, abs=1e-10)
    # The env is left exactly as found (state and random stream).
    after = env.state_dict()
    assert all(torch.equal(torch.as_tensor(before[k]), torch.as_tensor(after[k])) for k in before)

    lying = diagnose(env, start, ExactToyModel(-1.0), actor, critic, None, noise, 0.99, detach=True)
    assert lying["diag/gradient_cosine"] == pytest.approx(-1.0, abs=1e-5)
    # Its dynamics are exact: the critic's end-of-window value moves with the actor as the simulator's does.
    assert lying["diag/value_gradient_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 < lying["diag/objective_gradient_cosine"] < 1.0
    assert lying["diag/imagined_return"] == pytest.approx(-lying["diag/real_return"], rel=1e-5)
    drifting = diagnose(env, start, ExactToyModel(lateral_drift=0.05), actor, critic, None, noise, 0.99, True)
    assert drifting["diag/wm_latent_error_Hstep"] > drifting["diag/wm_latent_error_1step"] > 0
    # Drifting sideways costs lateral reward the simulator does not charge: less return for the same actions.
    assert drifting["diag/model_return_real_actions"] < drifting["diag/real_return"]


def test_real_return_and_critic_target_by_hand() -> None:
    env, start, actor, critic, noise = setup(horizon=4)
    metrics = diagnose(
        env, start, ExactToyModel(), actor, critic, None, noise, 0.9, detach=True, final_discount=0.9
    )
    # Replay the same rollout by hand: same start state, same noise, no episode ends in 4 steps.
    env.load_state_dict(start)
    obs, total = env.detach_state(), torch.zeros(16)
    with torch.no_grad():
        value0 = critic.value(obs)
    for h, eps in enumerate(noise):
        obs, reward, *_ = env.step(torch.tanh(actor(obs.detach()) + actor.std() * eps))
        total = total + 0.9**h * reward
    end_value = 0.9**5 * critic.value(obs)  # gamma^H * final_discount
    target = (total + 0.9**4 * critic.value(obs)).detach()
    params = list(actor.parameters())
    norms = [
        torch.cat([g.flatten() for g in torch.autograd.grad(term.mean(), params, retain_graph=True)]).norm()
        for term in (total, end_value)
    ]
    assert metrics["diag/real_episode_ends"] == 0.0
    assert metrics["diag/real_return_raw"] == pytest.approx(float(total.detach().mean()), rel=1e-5)
    assert metrics["diag/critic_target"] == pytest.approx(float(target.mean()), rel=1e-5)
    assert metrics["diag/critic_gap"] == pytest.approx(float((value0 - target).mean()), rel=1e-4, abs=1e-5)
    assert metrics["diag/real_value_gradient_ratio"] == pytest.approx(float(norms[1] / norms[0]), rel=1e-4)


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_pwm_logs_diagnostics_without_changing_training(
    mode: str,
    toy_data: Path,  # noqa: F811
    pretrained: PretrainedWorldModel,  # noqa: F811
) -> None:
    inputs = {"world_model": pretrained, "dataset": load_dataset(toy_data)}
    runs = {}
    for interval in (0, 2):
        config = replace(TINY, mode=mode, diagnostics_interval=interval, max_epochs=5)
        torch.manual_seed(0)
        pwm = PWM(make_toy_env(num_envs=8, seed=0), config, seed=0, **inputs)
        runs[interval] = [pwm.train_iteration() for _ in range(5)]
    logged = [sorted(k for k in m if k.startswith("diag/")) for m in runs[2]]
    assert [bool(names) for names in logged] == [True, False, True, False, True]
    assert "diag/gradient_cosine" in logged[0] and "diag/wm_latent_error_Hstep" in logged[0]
    for name in ("gradient_cosine", "value_gradient_cosine", "objective_gradient_cosine"):
        assert all(-1.0 <= m[f"diag/{name}"] <= 1.0 for m in runs[2][::2])
    # Bit-identical training with and without diagnostics.
    plain = [{k: v for k, v in m.items() if not k.startswith("diag/")} for m in runs[2]]
    assert plain == runs[0]


def test_report_plots_diagnostics_when_runs_logged_them(
    tmp_path: Path,
    toy_data: Path,  # noqa: F811
    pretrained: PretrainedWorldModel,  # noqa: F811
) -> None:
    root = tmp_path / "runs"
    with_diag = _make_run(root, "pwm", "Ant", 0)
    _make_run(root, "pwm", "Ant", 1)  # no train.csv: contributes nothing
    config = replace(TINY, mode="offline", diagnostics_interval=2, max_epochs=4)
    pwm = PWM(make_toy_env(num_envs=8, seed=0), config, 0, pretrained, load_dataset(toy_data))
    rows = []
    for step in range(4):
        metrics = pwm.train_iteration()
        rows += [
            {"step": step, "env_steps": 0, "wall_time_s": 0.0, "metric": k, "value": v}
            for k, v in metrics.items()
        ]
    rundir.append_rows(with_diag / rundir.TRAIN, rundir.TRAIN_COLUMNS, rows)

    out = tmp_path / "report"
    assert report.main([str(root), "--out", str(out), "--resamples", "50", "--curve-resamples", "10"]) == 0
    table = pd.read_csv(out / "diagnostics.csv")
    assert set(table["step"]) == {0, 2} and set(table["run"]) == {str(with_diag.relative_to(root))}
    cosine = table[(table["metric"] == "diag/gradient_cosine") & (table["step"] == 2)]["value"]
    assert cosine.tolist() == pytest.approx(
        [next(r["value"] for r in rows if r["step"] == 2 and r["metric"] == "diag/gradient_cosine")]
    )
    assert (out / "diagnostics.png").stat().st_size > 0

    plain = tmp_path / "plain"
    (with_diag / rundir.TRAIN).unlink()
    assert report.main([str(root), "--out", str(plain), "--resamples", "50", "--curve-resamples", "10"]) == 0
    assert not list(plain.glob("diagnostics*"))


def test_diagnostics_figure_shows_only_the_panels_runs_logged() -> None:
    def titles(metrics: list[str]) -> list[str]:
        table = pd.DataFrame({"run": "r", "step": 0, "metric": metrics, "value": 0.5})
        fig = diagnostics.plot_diagnostics(table)
        shown = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        plt.close(fig)
        return shown

    # A run of an older commit: no value-gradient metrics, so no empty panel for them.
    assert titles(["diag/gradient_cosine", "diag/real_episode_ends"]) == [
        "Model vs simulator actor-gradient cosine",
        "Real episodes ending within H (falls)",
    ]
    every = [metric for metrics in diagnostics.PANELS.values() for metric in metrics]
    assert titles(every) == list(diagnostics.PANELS)
