"""bench.landscape: directions, metrics, gradient statistics, ball-wall, the ant analyses, CLI errors."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import brentq

from algos.gradient_stats import (
    bootstrap_gradient_statistics,
    gradient_cosine,
    gradient_statistics,
    growth_rate,
)
from algos.landscape import ball_wall
from algos.landscape.directions import filter_normalize, perturbed, random_directions
from algos.landscape.grid import evaluate_grid
from algos.landscape.objectives import Rollout, StartStates
from algos.networks import mlp
from algos.wm_training import WMTrainConfig, WorldModelTrainer, world_model_checkpoint
from algos.world_model import WorldModel, world_model_config
from bench import landscape as cli
from bench.landscape_metrics import (
    central_difference,
    local_lipschitz,
    roughness,
    slice_metric_bootstrap,
    tv_ratio,
)
from bench.landscape_run import (
    LandscapeSettings,
    build_problem,
    open_output,
    run_ball_wall,
    run_gradients,
    run_slices,
)

# -- directions ------------------------------------------------------------------------------------------


def _theta() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = mlp(5, (7, 6), 3, "mish")  # Linear, Mish, LayerNorm, Linear, Mish, LayerNorm, Linear
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def test_filter_normalised_rows_match_theta_and_biases_are_zero():
    theta = _theta()
    (direction,) = random_directions(theta, 1, seed=3)
    matrices = 0
    for name, d in direction.items():
        if theta[name].dim() <= 1:  # biases and LayerNorm gains/biases
            assert torch.count_nonzero(d) == 0, name
        else:
            matrices += 1
            assert torch.allclose(d.norm(dim=1), theta[name].norm(dim=1), rtol=1e-5), name
    assert matrices == 3


def test_directions_are_reproducible_and_seed_dependent():
    theta = _theta()
    a, b, c = random_directions(theta, 2, 7), random_directions(theta, 2, 7), random_directions(theta, 2, 8)
    for name in theta:
        assert torch.equal(a[0][name], b[0][name]) and torch.equal(a[1][name], b[1][name])
    assert not torch.equal(a[0]["0.weight"], c[0]["0.weight"])
    assert not torch.equal(a[0]["0.weight"], a[1]["0.weight"])


def test_filter_normalize_rejects_mismatched_shapes():
    theta = _theta()
    bad = {name: torch.zeros(2, 2) for name in theta}
    with pytest.raises(ValueError, match="shape"):
        filter_normalize(bad, theta)


def test_perturbed_stacks_linear_combinations():
    theta = _theta()
    dirs = random_directions(theta, 2, 0)
    params = perturbed(theta, dirs, torch.tensor([[0.0, 0.0], [0.5, -2.0]]))
    for name, t in theta.items():
        assert torch.equal(params[name][0], t)
        assert torch.allclose(params[name][1], t + 0.5 * dirs[0][name] - 2.0 * dirs[1][name])


# -- metrics ---------------------------------------------------------------------------------------------


def test_tv_ratio_is_one_for_monotone_and_unimodal_slices_and_larger_for_a_sawtooth():
    x = np.linspace(-1, 1, 101)
    assert tv_ratio(3 * x + 1) == pytest.approx(1.0)
    assert tv_ratio(np.exp(x)) == pytest.approx(1.0)
    assert tv_ratio(-((x - 0.3) ** 2)) == pytest.approx(1.0)
    sawtooth = np.abs(((x * 5) % 1.0) - 0.5)
    assert tv_ratio(sawtooth) > 5.0
    assert np.isnan(tv_ratio(np.zeros(5)))


def test_lipschitz_of_a_line_is_its_slope_and_its_roughness_is_zero():
    x = np.linspace(-0.05, 0.05, 41)
    assert local_lipschitz(x, -2.5 * x + 4.0) == pytest.approx(2.5)
    assert roughness(x, -2.5 * x + 4.0) == pytest.approx(0.0, abs=1e-6)
    assert roughness(x, np.sin(50 * x)) > 0


def test_central_differences_of_a_quadratic_are_exact():
    a, b, x0 = 1.7, -0.4, 0.3

    def f(x):
        return a * x**2 + b * x

    for h in (1e-1, 1e-2, 1e-3):
        assert central_difference(f(x0 + h), f(x0 - h), h) == pytest.approx(2 * a * x0 + b, rel=1e-9)


def test_slice_bootstrap_resamples_directions_and_pairs_objectives():
    alpha = np.linspace(-1, 1, 11)
    values = np.broadcast_to((2 * alpha)[None, :, None], (3, 11, 4)).copy()
    estimate, draws = slice_metric_bootstrap(alpha, values, "tv_ratio", 50, seed=0)
    assert estimate == pytest.approx(1.0) and np.allclose(draws, 1.0)
    values[1] *= 3.0  # directions with slopes 2, 6, 2
    estimate, draws = slice_metric_bootstrap(alpha, values, "lipschitz", 400, seed=0)
    assert (
        estimate == pytest.approx(10 / 3)
        and draws.min() == pytest.approx(2.0)
        and draws.max() == pytest.approx(6.0)
    )
    _, doubled = slice_metric_bootstrap(alpha, 2 * values, "lipschitz", 400, seed=0)
    assert np.allclose(doubled, 2 * draws)  # same seed, same resampled directions
    _, single = slice_metric_bootstrap(alpha, values[:1], "lipschitz", 10, seed=0)
    assert np.isnan(single).all()


# -- gradient statistics ---------------------------------------------------------------------------------


def test_gradient_statistics_match_their_definitions():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(32, 10)) + np.arange(10)
    stats = gradient_statistics(g)
    var = g.var(axis=0, ddof=1)
    assert stats["trace_cov"] == pytest.approx(var.sum())
    assert stats["mean_norm"] == pytest.approx(np.linalg.norm(g.mean(0)))
    assert stats["snr_estimator"] == pytest.approx(32 * stats["snr_sample"])
    assert stats["snr_sample"] == pytest.approx(np.sum(g.mean(0) ** 2) / var.sum())
    draws = bootstrap_gradient_statistics(g, 200, seed=1, chunk=64)
    assert draws["trace_cov"].shape == (200,)
    low, high = np.percentile(draws["mean_norm"], [2.5, 97.5])
    assert low < stats["mean_norm"] < high


def test_gradient_cosine_and_growth_rate():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    cos = gradient_cosine(a, b)
    assert cos[0] == pytest.approx(1.0) and cos[1] == pytest.approx(-1.0) and np.isnan(cos[2])
    assert gradient_cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    hs = np.array([16, 32, 64])
    assert growth_rate(hs, 3.0 * np.exp(0.05 * hs)) == pytest.approx(0.05)


# -- ball and wall ---------------------------------------------------------------------------------------


def _jump_angle(p: ball_wall.BallWall) -> float:
    """Launch angle at which the ball lands back at height 0 exactly at the wall (the low solution)."""

    def miss(theta: float) -> float:
        t = 2 * p.speed * math.sin(theta) / -p.gravity
        return p.speed * math.cos(theta) * t + 0.5 * p.accel_x * t**2 - p.wall_x

    return brentq(miss, 1e-3, 0.6)


def test_ball_wall_jump_is_where_the_physics_says():
    p = ball_wall.BallWall()
    critical = _jump_angle(p)
    theta = np.linspace(critical - 0.05, critical + 0.05, 2001)
    values, grads = ball_wall.values_and_gradients(p, theta)
    step = int(np.argmax(np.abs(np.diff(values))))
    assert theta[step] <= critical <= theta[step + 1] + 1e-7
    assert values[step] == pytest.approx(-p.wall_x) and values[step + 1] < -20
    assert np.all(grads[: step - 1] == 0.0)  # blocked side: the true gradient cannot see the jump


def test_simnorm_fit_has_a_gradient_across_the_jump():
    p = ball_wall.BallWall()
    train = ball_wall.grid(1000)
    target, _ = ball_wall.values_and_gradients(p, train)
    torch.manual_seed(0)
    model = ball_wall.simnorm_mlp()
    losses = ball_wall.fit(
        model, torch.tensor(train).float(), torch.tensor(target).float(), ball_wall.FitConfig(), 0
    )
    assert losses[-1] < losses[0]
    critical = _jump_angle(p)
    _, grads = ball_wall.values_and_gradients(model, np.linspace(critical - 0.1, critical + 0.1, 41))
    assert np.all(np.abs(grads) > 1e-3)


def test_ball_wall_argmins_and_gaps_are_computed_from_the_fits(tmp_path: Path):
    out = run_ball_wall(
        tmp_path / "bw", seed=1, points=301, fit_config=ball_wall.FitConfig(epochs=3), progress=False
    )
    with np.load(out / "landscape.npz") as data:
        arrays = dict(data)
    table = pd.read_csv(out / "ball_wall_argmin.csv").set_index("model")
    for name in ("mlp", "simnorm"):
        i = int(np.argmin(arrays[name]))
        assert table.loc[name, "argmin"] == pytest.approx(arrays["theta"][i])
        assert table.loc[name, "gap"] == pytest.approx(arrays["true"][i] - arrays["true"].min(), abs=1e-5)
    assert (out / "ball_wall.pdf").exists() and (out / "ball_wall.png").exists()


# -- the ant analyses end to end -------------------------------------------------------------------------

TINY = LandscapeSettings(
    horizons=(2, 4),
    batch=2,
    directions=2,
    points=5,
    contour_points=3,
    contour_horizon=4,
    grad_samples=3,
    grad_batch=1,
    resamples=20,
    chunk=4,
)


def _smoke_world_model(path: Path, obs_dim: int = 37, act_dim: int = 8) -> Path:
    """A tiny world model with a non-zero reward head and fitted reward statistics."""
    torch.manual_seed(0)
    model = WorldModel(obs_dim, act_dim, world_model_config("tiny"))
    torch.nn.init.normal_(model.reward_head[-1].weight, std=0.5)
    trainer = WorldModelTrainer(model, WMTrainConfig(horizon=4, batch_size=4))
    trainer.rew_rms.update(torch.randn(64) * 2 + 1)
    buffer = io.BytesIO()
    torch.save(world_model_checkpoint(trainer, {"path": None}), buffer)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def ant_problem(tmp_path_factory):
    wm = _smoke_world_model(tmp_path_factory.mktemp("wm") / "wm.pt")
    return build_problem("ant", None, "init", str(wm), seed=0)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "landscape.npz") as data:
        return dict(data)


def test_ant_slices_end_to_end_and_deterministic(tmp_path: Path, ant_problem):
    a = run_slices(tmp_path / "a", ant_problem, TINY, seed=0, progress=False)
    b = run_slices(tmp_path / "b", ant_problem, TINY, seed=0, progress=False)
    first, second = _npz(a), _npz(b)
    assert first.keys() == second.keys()
    for key in first:
        assert np.array_equal(first[key], second[key], equal_nan=True), key
    assert first["sim_random_wide"].shape == (2, 2, 5, 2)
    assert first["wm_gradient_zoom"].shape == (2, 2, 5, 2)
    assert first["sim_fd"].shape == (2, 4, 3, 2, 2)
    assert first["sim_contour"].shape == (3, 3, 2)
    assert np.isfinite(first["sim_random_wide"]).all() and np.isfinite(first["wm_random_wide"]).all()
    # The grid's centre is θ itself: every direction agrees there.
    centre = first["sim_random_zoom"][:, :, 2]
    assert np.allclose(centre, centre[:, :1])
    # Autodiff and central differences agree at the smallest step on this smooth, short-horizon slice.
    fd = pd.read_csv(a / "slices_fd_summary.csv")
    assert (fd[fd.h == 1e-3].cosine > 0.9).all()
    metrics = pd.read_csv(a / "slices_metrics.csv")
    assert set(metrics.objective) == {"sim", "wm", "wm_minus_sim"}
    for stem in ("slices_random", "slices_gradient", "slices_metrics", "slices_contour"):
        assert (a / f"{stem}.pdf").exists() and (a / f"{stem}.png").exists()
    config = json.loads((a / "config.json").read_text())
    assert config["identity"]["world_model"]["sha256"] and "provenance" in config
    assert not (a / "partial").exists()


def test_ant_gradients_end_to_end(tmp_path: Path, ant_problem):
    out = run_gradients(tmp_path / "g", ant_problem, TINY, seed=0, progress=False)
    arrays = _npz(out)
    assert arrays["sim_statistics"].shape[0] == 2 and arrays["cosine"].shape == (2, 3)
    assert np.isfinite(arrays["sim_sample_norms"]).all() and (arrays["sim_sample_norms"] > 0).all()
    table = pd.read_csv(out / "gradients.csv")
    assert {"mean_norm", "trace_cov", "snr_estimator", "esnr_pwm", "cosine_mean"} <= set(table.statistic)
    again = _npz(run_gradients(tmp_path / "g2", ant_problem, TINY, seed=0, progress=False))
    for key in arrays:
        assert np.array_equal(arrays[key], again[key], equal_nan=True), key


def test_grid_evaluation_resumes_from_stored_chunks():
    theta = {"w": torch.zeros(1, 1)}
    calls = []

    def objective(params, starts, horizons):
        calls.append(params["w"].shape[0])
        return Rollout(
            params["w"].reshape(1, -1, 1).double().expand(1, -1, len(starts) // params["w"].shape[0]), 0
        )

    class Store(dict):
        def get(self, index):
            return super().get(index)

        def put(self, index, values, invalid):
            self[index] = (values, invalid)

    store = Store({0: (np.full((1, 2, 1), -7.0), 3)})
    starts = StartStates(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    coefficients = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values, invalid = evaluate_grid(
        objective, theta, [{"w": torch.ones(1, 1)}], coefficients, starts, [1], 2, store
    )
    assert calls == [2, 1]  # the first chunk came from the store
    assert values[0, :, 0].tolist() == [-7.0, -7.0, 3.0, 4.0, 5.0] and invalid == 3


def test_an_output_directory_of_another_analysis_is_refused(tmp_path: Path):
    open_output(tmp_path, {"analysis": "slices", "seed": 0}, {})
    assert open_output(tmp_path, {"analysis": "slices", "seed": 0}, {}) is False
    with pytest.raises(ValueError, match="different analysis"):
        open_output(tmp_path, {"analysis": "slices", "seed": 1}, {})


# -- bad input -------------------------------------------------------------------------------------------


def _exit_code(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    return stop.value.code, capsys.readouterr().err


def test_cli_rejects_bad_input(tmp_path: Path, capsys):
    code, err = _exit_code(["nonsense"], capsys)
    assert code == 2 and "ball-wall" in err and "gradients" in err
    code, err = _exit_code(
        ["slices", "--env", "ant", "--at", "init", "--world-model", str(tmp_path / "no.pt")], capsys
    )
    assert code == 2 and "does not exist" in err
    humanoid_wm = _smoke_world_model(tmp_path / "humanoid.pt", obs_dim=76, act_dim=21)
    code, err = _exit_code(
        ["slices", "--env", "ant", "--at", "init", "--world-model", str(humanoid_wm)], capsys
    )
    assert code == 2 and "76/21" in err
    ant_wm = _smoke_world_model(tmp_path / "ant.pt")
    base = ["gradients", "--env", "ant", "--world-model", str(ant_wm), "--out", str(tmp_path / "o")]
    code, err = _exit_code([*base, "--at", "init", "--horizons", "4", "0"], capsys)
    assert code == 2 and ">= 1" in err
    code, err = _exit_code(base, capsys)
    assert code == 2 and "--policy is required" in err
    code, err = _exit_code([*base, "--policy", str(tmp_path / "missing_run")], capsys)
    assert code == 2 and "does not exist" in err
    code, err = _exit_code([*base, "--at", "init", "--preset", "huge"], capsys)
    assert code == 2 and "quick" in err
    with pytest.raises(ValueError, match=">= 1"):
        replace(TINY, horizons=(0, 4))
    with pytest.raises(ValueError, match="> 0"):
        replace(TINY, zoom=0.0)


def test_policy_loader_reads_a_shac_run_and_its_slim_export(tmp_path: Path):
    from bench.harness import start_run
    from bench.landscape_inputs import export_policy, export_world_model, load_policy, load_world_model

    run = start_run("shac", "ant", seed=0, preset="smoke", out=tmp_path / "runs", argv=[]).run_dir
    final = load_policy(run, "final", "ant", 37, 8, seed=0)
    fresh = load_policy(run, "init", "ant", 37, 8, seed=0)
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=False)["trainer"]
    assert torch.equal(final.policy.theta()["0.weight"], state["actor"]["mean_net.0.weight"])
    assert not torch.equal(fresh.policy.theta()["0.weight"], state["actor"]["mean_net.0.weight"])
    assert fresh.policy.critic is not None and final.env == "ant" and final.info["sha256"]
    slim = load_policy(export_policy(run, tmp_path / "policy.pt"), "final", "ant", 37, 8, seed=0)
    assert all(torch.equal(slim.policy.theta()[k], v) for k, v in final.policy.theta().items())
    with pytest.raises(ValueError, match="trained on ant"):
        load_policy(run, "final", "humanoid", 76, 21, seed=0)
    wm = export_world_model(_smoke_world_model(tmp_path / "wm.pt"), tmp_path / "wm_slim.pt")
    assert load_world_model(wm, "ant", 37, 8).reward_std > 0


def test_objectives_match_plain_rollouts():
    from algos.landscape.objectives import (
        Policy,
        Readout,
        SimulatorObjective,
        WorldModelObjective,
        make_env,
        sample_start_states,
    )
    from algos.networks import CriticEnsemble, StochasticActor

    torch.manual_seed(0)
    actor = StochasticActor(37, 8, (16, 16), "mish")
    critic = CriticEnsemble(37, (16,), "mish", num_critics=2)
    policy = Policy(actor.mean_net, None, critic, gamma=0.9)
    starts = sample_start_states("ant", 2, seed=5)
    params = perturbed(policy.theta(), [], torch.zeros(3, 0))
    with torch.no_grad():
        returns = SimulatorObjective("ant", policy).__call__(params, starts.repeat(3), [5, 3]).returns
        env = make_env("ant", 2, 0, "cpu", 5)
        env.reset()
        obs, total = env.set_state(starts.q, starts.qd), torch.zeros(2, dtype=torch.float64)
        for t in range(5):
            obs, reward, *_ = env.step(actor.act(obs))
            total += 0.9**t * reward.double()
            if t + 1 == 3:
                at_three = total + 0.9**3 * critic.value(obs).double()
        expected = total + 0.9**5 * critic.value(obs).double()
    assert returns.shape == (2, 3, 2)  # sorted horizons (3, 5), 3 identical points, 2 start states
    for p in range(3):
        assert torch.allclose(returns[0, p], at_three, rtol=1e-6)
        assert torch.allclose(returns[1, p], expected, rtol=1e-6)

    model = WorldModel(37, 8, world_model_config("tiny"))
    torch.nn.init.normal_(model.reward_head[-1].weight, std=0.5)
    readout = Readout(torch.randn(33, 37) * 0.1)
    wm = WorldModelObjective(model, policy, readout, reward_mean=1.0, reward_std=2.0)
    with torch.no_grad():
        imagined = wm(params, starts.repeat(3), [2]).returns
        z, obs, total = model.encode(starts.obs), starts.obs, torch.zeros(2, dtype=torch.float64)
        for t in range(2):
            action = actor.act(obs)
            z, reward = model.step(z, action)
            total += 0.9**t * (reward * 2.0 + 1.0).double()
            obs = torch.cat([torch.cat([z, torch.ones(2, 1)], 1) @ readout.weight], 1)
            obs = torch.cat([obs[:, :-8], action], 1)
        total += 0.9**2 * critic.value(obs).double()
    assert torch.allclose(imagined[0, 1], total, rtol=1e-5)
