"""bench.report and bench.published: files written, tidy tables, exit codes, protocols, the curve reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import cli, plotting, published, report, rundir

ALGOS = ("pwm", "shac")
ENVS = ("Ant", "Hopper")
SEEDS = (0, 1, 2)
STEPS = (0, 1000, 2000, 3000)
REFERENCES = {"Ant": [0.0, 1000.0], "Hopper": [100.0, 600.0]}


def _return(algo: str, env: str, seed: int, k: int) -> float:
    """Deterministic fake learning curve: rises with k; algorithm and seed offsets; Hopper shifted."""
    base = (400.0 if algo == "pwm" else 250.0) * k / 3 + 10.0 * seed
    return base + (0.0 if env == "Ant" else 100.0)


def _make_run(root: Path, algo: str, env: str, seed: int, n_evals: int = 4, status: str | None = "complete"):
    run = rundir.new_run_dir(root, env, algo, seed)
    rundir.write_json(run / rundir.CONFIG, {"algo": algo, "env": env, "seed": seed})
    rows = [
        {
            "env_steps": STEPS[k],
            "data_env_steps": 0,
            "wall_time_s": 2.0 * k + 0.1 * seed + 0.5,
            "train_time_s": 2.0 * k + 0.1 * seed,
            "eval_time_s": 0.5,
            "eval_episodes": 16,
            "return_mean": _return(algo, env, seed, k),
            "return_std": 1.0,
            "return_iqm": _return(algo, env, seed, k),
            "length_mean": 1000,
        }
        for k in range(n_evals)
    ]
    if rows:
        rundir.append_rows(run / rundir.EVAL, rundir.EVAL_COLUMNS, rows)
    if status is not None:
        rundir.write_json(run / rundir.SUMMARY, {"status": status, "final_return": rows[-1]["return_mean"]})
    return run


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """3 complete seeds per (algo, env), plus a crashed, an unfinished and a never-evaluated run."""
    root = tmp_path_factory.mktemp("runs")
    for algo in ALGOS:
        for env in ENVS:
            for seed in SEEDS:
                _make_run(root, algo, env, seed)
    _make_run(root, "pwm", "Ant", 7, n_evals=2, status=None)  # crashed: no summary.json
    _make_run(root, "shac", "Hopper", 8, n_evals=3, status="running")  # unfinished
    _make_run(root, "shac", "Ant", 9, n_evals=0, status=None)  # no evaluations
    (root / "refs.json").write_text(json.dumps(REFERENCES))
    return root


@pytest.fixture(scope="module")
def report_dir(results, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("fig") / "report"
    args = [
        str(results),
        "--out",
        str(out),
        "--normalize",
        "minmax",
        "--reference",
        str(results / "refs.json"),
    ]
    code = report.main(args + ["--resamples", "300", "--curve-resamples", "50", "--seed", "3"])
    return out, code


def test_cli_writes_every_output(report_dir):
    out, code = report_dir
    assert code == 0
    stems = ("curves_env_steps", "curves_wall_clock", "aggregate", "profiles", "poi")
    for stem in stems:
        for fmt in ("pdf", "png"):
            assert (out / f"{stem}.{fmt}").stat().st_size > 1000, stem
    for name in ("table.tex", "stats.json", "runs.csv", "scores.csv", "aggregate.csv", "curves.csv"):
        assert (out / name).exists(), name
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    pdf = (out / "aggregate.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType (fonttype 42)


def test_tidy_table_and_scores(report_dir):
    out, _ = report_dir
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == [*report.TIDY_COLUMNS, "protocol"]
    assert len(runs) == len(ALGOS) * len(ENVS) * len(SEEDS) * len(STEPS)  # incomplete runs left out
    row = runs[(runs.algo == "pwm") & (runs.env == "Hopper") & (runs.seed == 2) & (runs.env_steps == 2000)]
    assert row["return"].item() == pytest.approx(_return("pwm", "Hopper", 2, 2))
    assert row["train_time_s"].item() == pytest.approx(4.2)
    assert row["normalized"].item() == pytest.approx((_return("pwm", "Hopper", 2, 2) - 100) / 500)
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 12 and set(scores["protocol"]) == {"final"}
    final = scores[(scores.algo == "shac") & (scores.env == "Ant") & (scores.seed == 1)]
    assert final["return"].item() == pytest.approx(_return("shac", "Ant", 1, 3))
    assert final["env_steps"].item() == 3000


def test_stats_json_records_method_and_coverage(report_dir):
    out, _ = report_dir
    meta = json.loads((out / "stats.json").read_text())
    assert meta["bootstrap"]["method"] == "percentile"
    assert meta["bootstrap"]["resamples"] == 300 and meta["bootstrap"]["seed"] == 3
    assert meta["runs_per_task"] == {"pwm": {"Ant": 3, "Hopper": 3}, "shac": {"Ant": 3, "Hopper": 3}}
    assert meta["normalization"]["scheme"] == "minmax"
    coverage = "\n".join(meta["coverage"])
    assert "seed 7" in coverage and "no summary.json" in coverage
    assert "seed 8" in coverage and "'running'" in coverage
    assert "seed 9" in coverage and "no-evaluations" in coverage
    iqm = meta["aggregate"]["iqm"]["pwm"]
    assert iqm["low"] <= iqm["estimate"] <= iqm["high"] and iqm["runs_per_task"] == [3, 3]
    assert meta["probability_of_improvement"]["pwm > shac"]["estimate"] > 0.5
    table = (out / "table.tex").read_text()
    assert r"\toprule" in table and r"\bottomrule" in table and "final" in table
    agg = pd.read_csv(out / "aggregate.csv")
    row = agg[(agg.algo == "pwm") & (agg.env == "all") & (agg.metric == "iqm")]
    assert row["estimate"].item() == pytest.approx(iqm["estimate"])
    assert f"{iqm['estimate']:.2f} [{iqm['low']:.2f}, {iqm['high']:.2f}]" in table


def test_same_seed_same_numbers(results, report_dir):
    out, _ = report_dir
    table, _ = report.load_runs(results)
    options = report.ReportOptions(
        normalize="minmax", references=REFERENCES, n_resamples=300, curve_resamples=50, seed=3
    )
    scheme = report.resolve_normalization(table, options)
    table = report.add_normalized(table, scheme, REFERENCES)
    an = report.analyse(table, report.run_scores(table, "final"), scheme, options)
    meta = json.loads((out / "stats.json").read_text())
    assert an.aggregate["iqm"]["shac"].low == meta["aggregate"]["iqm"]["shac"]["low"]
    assert an.aggregate["mean"]["pwm"].high == meta["aggregate"]["mean"]["pwm"]["high"]


def test_best_protocol_picks_the_iqm_peak():
    rows = []
    for seed, peak_bonus in enumerate((0.0, 1.0, 2.0)):
        for k, value in enumerate((1.0, 5.0 + peak_bonus, 3.0)):
            rows.append(
                {
                    "algo": "a",
                    "env": "E",
                    "seed": seed,
                    "run": f"r{seed}",
                    "env_steps": 10.0 * k,
                    "wall_time_s": np.nan,
                    "train_time_s": np.nan,
                    "return": value,
                    "score": value,
                }
            )
    scores = report.run_scores(pd.DataFrame(rows), "best")
    assert scores["score"].tolist() == [5.0, 6.0, 7.0] and set(scores["env_steps"]) == {10.0}
    assert report.run_scores(pd.DataFrame(rows), "final")["score"].tolist() == [3.0, 3.0, 3.0]
    assert "optimistic" in report.PROTOCOLS["best"]
    crashed = pd.DataFrame(rows).assign(score=lambda f: np.where(f["seed"] == 2, np.nan, f["score"]))
    for protocol in ("best", "final"):
        got = report.run_scores(crashed, protocol).sort_values("seed")
        assert len(got) == 3 and np.isnan(got["score"].iloc[2])  # kept as NaN: excluded and counted later


def test_coverage_lists_missing_seeds_and_envs():
    table = pd.DataFrame(
        {
            "algo": ["a", "a", "a", "b"],
            "env": ["E", "E", "F", "E"],
            "seed": [0, 1, 0, 0],
            "run": ["r0", "r1", "r2", "r3"],
        }
    )
    lines = report.coverage_report(table)
    assert "missing: a/F seeds [1]" in lines and "missing: b has no runs on F" in lines


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--protocol",
        "--normalize",
        "--reference",
        "--resamples",
        "--curve-resamples",
        "--seed",
        "--ci-method",
        "--confidence-level",
        "--include-incomplete",
        "--smooth",
    ):
        assert option in text
    assert "optimistic" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{empty}"], "no runs"),
        (["{missing}"], "not a directory"),
        (["{results}", "--protocol", "peak"], "invalid choice"),
        (["{results}", "--ci-method", "studentized"], "invalid choice"),
        (["{results}", "--resamples", "0"], "at least 10"),
        (["{results}", "--confidence-level", "1.5"], "between 0 and 1"),
        (["{results}", "--normalize", "minmax"], "no reference scores"),
        (["{results}", "--normalize", "ppo_max", "--envs", "Ant"], None),  # valid: Ant has a PPO maximum
        (["{results}", "--algos", "dreamer"], "not in the results"),
        (["{incomplete}"], "--include-incomplete"),
        (["{results}", "--out", "{file}"], "not a directory"),
    ],
)
def test_exit_code_2_on_bad_arguments(args, message, results, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    incomplete = tmp_path / "incomplete"
    _make_run(incomplete, "pwm", "Ant", 0, status="running")
    (tmp_path / "file").write_text("x")
    names = {
        "empty": tmp_path / "empty",
        "missing": tmp_path / "nope",
        "results": results,
        "incomplete": incomplete,
        "file": tmp_path / "file",
    }
    argv = [a.format(**names) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if message is None:  # the control case must not fail at argument checking: stop it before plotting
        argv += ["--formats", "nope"]
        message = "--formats"
    with pytest.raises(SystemExit) as exc:
        report.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_algorithm_colours_are_fixed():
    colors = plotting.algo_colors(["TD-MPC2", "pwm", "SHAC", "mystery", "zeta"])
    assert colors["pwm"] == "#0173B2" and colors["SHAC"] == "#DE8F05" and colors["TD-MPC2"] == "#CC78BC"
    assert colors == plotting.algo_colors(["zeta", "mystery", "SHAC", "pwm", "TD-MPC2"])
    assert len(set(colors.values())) == len(colors)
    assert plotting.algo_label("tdmpc2") == "TD-MPC2"
    assert plotting.algo_label("pwm:offline") == "PWM (offline)"


def test_two_variants_of_one_algorithm_are_two_labels(tmp_path):
    """A run of a non-default variant is reported as algo:variant, never as a duplicate seed of algo."""
    for variant in ("online", "offline", None):
        run = rundir.new_run_dir(tmp_path, "Ant", "pwm", 0)
        rundir.write_json(run / rundir.CONFIG, {"algo": "pwm", "env": "Ant", "seed": 0, "variant": variant})
        row = dict.fromkeys(rundir.EVAL_COLUMNS, 1.0) | {"env_steps": 0, "data_env_steps": 0}
        rundir.append_rows(run / rundir.EVAL, rundir.EVAL_COLUMNS, [row])
        rundir.write_json(run / rundir.SUMMARY, {"status": "complete"})
    table, runs = report.load_runs(tmp_path)
    assert sorted(runs["algo"]) == ["pwm", "pwm", "pwm:offline"]  # online is PWM's default variant
    assert sorted(table["algo"].unique()) == ["pwm", "pwm:offline"]


def test_published_reader_turns_wide_curves_into_the_tidy_table(tmp_path):
    wide = pd.DataFrame(
        {
            "Step": [100, 200, 300],
            "FOWM_AntEnv_sweep_1 - rewards": [1.0, np.nan, 3.0],
            "FOWM_AntEnv_sweep_1 - rewards__MIN": [0.0, np.nan, 0.0],
            "FOWM_AntEnv_sweep_1 - rewards__MAX": [9.0, np.nan, 9.0],
            "FOWM_AntEnv_sweep_0 - _step": [0, 1, 2],
            "FOWM_AntEnv_sweep_0 - rewards": [np.nan, 2.0, 4.0],
        }
    )
    wide.to_csv(tmp_path / "pwm_ant.csv", index=False)
    timed = pd.DataFrame({"Relative Time (Process)": [5, 6], "SHAC_HopperEnv_sweep_3 - rewards": [7.0, 8.0]})
    timed.to_csv(tmp_path / "shac_hopper_time.csv")
    pd.DataFrame({"Step": [1], "x - rewards": [1.0]}).to_csv(tmp_path / "pwm_ant_simple.csv", index=False)
    table = published.read_curves(tmp_path)
    assert sorted(table["run"].unique()) == [
        "pwm_ant.csv:FOWM_AntEnv_sweep_0",
        "pwm_ant.csv:FOWM_AntEnv_sweep_1",
        "shac_hopper_time.csv:SHAC_HopperEnv_sweep_3",
    ]  # the ablation file is skipped without --ablations
    ant = table[table["algo"] == "PWM"].sort_values(["seed", "env_steps"])
    assert ant["seed"].tolist() == [0, 0, 1, 1] and set(ant["env"]) == {"Ant"}
    assert ant["env_steps"].tolist() == [200, 300, 100, 300]
    assert ant["return"].tolist() == [2.0, 4.0, 1.0, 3.0]
    assert ant["train_time_s"].isna().all()
    hop = table[table["algo"] == "SHAC"]
    assert hop["train_time_s"].tolist() == [5, 6] and hop["env_steps"].isna().all()
    assert set(published.read_curves(tmp_path, ablations=True)["algo"]) == {"PWM", "SHAC", "PWM (ReLU MLP)"}
    assert published.parse_name("tdmpc2_humanoidsnu") == ("TD-MPC2", "SNUHumanoid", False)
    assert published.parse_name("pwm_ant_bsz32") is None


def test_env_steps_include_the_env_steps_that_generated_offline_data(tmp_path):
    """Evaluation spec §1: an offline learner's env-step count includes its data (data_env_steps)."""
    run = rundir.new_run_dir(tmp_path, "Ant", "pwm", 0)
    rundir.write_json(run / rundir.CONFIG, {"algo": "pwm", "env": "Ant", "seed": 0})
    row = dict.fromkeys(rundir.EVAL_COLUMNS, 1.0) | {"env_steps": 0, "data_env_steps": 5000}
    rundir.append_rows(run / rundir.EVAL, rundir.EVAL_COLUMNS, [row, row | {"env_steps": 100}])
    rundir.write_json(run / rundir.SUMMARY, {"status": "complete"})
    table, _ = report.load_runs(tmp_path)
    assert list(table["env_steps"]) == [5000.0, 5100.0]


def test_eval_csv_with_missing_columns_is_skipped_and_listed(tmp_path, capsys):
    """Issue 11 item 5: a run whose eval.csv lacks a column the report reads is left out and listed."""
    for seed in (0, 1):
        _make_run(tmp_path, "pwm", "Ant", seed)
    broken = _make_run(tmp_path, "pwm", "Ant", 2)
    ev = pd.read_csv(broken / rundir.EVAL).drop(columns=["return_mean", "train_time_s"])
    ev.to_csv(broken / rundir.EVAL, index=False)
    table, runs = report.load_runs(tmp_path)
    assert sorted(table["seed"].unique()) == [0, 1]
    bad = runs[runs["seed"] == 2].iloc[0]
    assert not bad["used"] and "unreadable" in bad["status"] and "return_mean" in bad["status"]
    out = tmp_path / "out"
    argv = [
        str(tmp_path),
        "--out",
        str(out),
        "--resamples",
        "20",
        "--curve-resamples",
        "10",
        "--formats",
        "svg",
    ]
    assert report.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"left out: {broken.relative_to(tmp_path)}" in printed and "lacks the column(s)" in printed
    meta = json.loads((out / "stats.json").read_text())
    assert any("train_time_s" in line for line in meta["coverage"])
    assert meta["runs_per_task"] == {"pwm": {"Ant": 2}}


def test_cli_options_are_generated_from_report_options():
    parser = report.cli.build_parser()
    base = ["runs", "--out", "x"]
    assert report.options_from_args(parser, parser.parse_args(base), report.ReportOptions()) == (
        report.ReportOptions()
    )
    argv = base + ["--ci-method", "bca", "--formats", "PNG,svg", "--tau", "0", "1", "--task-bootstrap"]
    options = report.options_from_args(parser, parser.parse_args(argv), report.ReportOptions())
    assert options.ci_method == "BCa" and options.formats == ("png", "svg")
    assert options.tau == (0.0, 1.0) and options.task_bootstrap
    # The field docstrings are the help texts.
    docs = cli.field_docs(report.ReportOptions)
    help_text = " ".join(parser.format_help().split())
    for name in ("seed", "confidence_level", "curve_resamples"):
        assert docs[name] and docs[name] in help_text, name
    # bench.published: the same options with the paper's defaults.
    pub = published.build_parser()
    options = report.options_from_args(pub, pub.parse_args(["curves", "--out", "x"]), published.DEFAULTS)
    assert options.n_resamples == 50_000 and options.normalize == "ppo_max" and not options.write_run_data


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"protocol": "peak"}, "protocol"),
        ({"n_resamples": 5}, "n_resamples"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"formats": ("pdf", "gif")}, "formats"),
        ({"tau": (1.0, 0.0)}, "tau"),
    ],
)
def test_report_options_reject_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        report.ReportOptions(**kwargs)


def test_videos_of_runs_are_listed_beside_the_report(report_dir, tmp_path):
    assert not (report_dir[0] / "videos.csv").exists()  # no run has videos
    root = tmp_path / "runs"
    runs = [_make_run(root, algo, "Ant", seed) for algo in ALGOS for seed in SEEDS]
    videos = runs[0] / "videos"
    videos.mkdir()
    for steps in (2000, 0):
        (videos / f"env_steps_{steps:012d}.mp4").write_bytes(b"")
    (videos / "env_steps_000000000000.csv").write_text("episode\n")  # the per-step table: not a video
    out = tmp_path / "report"
    assert report.main([str(root), "--out", str(out), "--resamples", "100", "--curve-resamples", "20"]) == 0
    table = pd.read_csv(out / "videos.csv")
    assert list(table.columns) == ["run", "env_steps", "path"]
    assert table["env_steps"].tolist() == [0, 2000]
    assert (table["run"] == str(runs[0].relative_to(root))).all()
    assert all((out / path).resolve() == (videos / Path(path).name).resolve() for path in table["path"])


def test_training_cost_per_run_and_in_the_table(report_dir, tmp_path):
    out, _ = report_dir
    costs = pd.read_csv(out / "throughput.csv")
    assert len(costs) == len(ALGOS) * len(ENVS) * len(SEEDS)  # the reported runs only
    seed1 = costs[(costs["algo"] == "pwm") & (costs["env"] == "Ant") & (costs["seed"] == 1)].iloc[0]
    # The last evaluation: 3,000 env steps after 6.1 s of training (evaluation time excluded).
    assert (seed1["env_steps"], seed1["train_time_s"]) == (3000, pytest.approx(6.1))
    assert seed1["env_steps_per_s"] == pytest.approx(3000 / 6.1) and np.isnan(seed1["plan_time_s"])
    table = (out / "table.tex").read_text()
    assert "Ant env-steps/s (training) & 492 & 492" in table  # median over seeds: 3000 / 6.1
    assert "Ant training time (min) & 0.1 & 0.1" in table and "planning" not in table

    # A planner's time split is summed from train.csv; a run without training env steps has no rate.
    root = tmp_path / "runs"
    planner = _make_run(root, "tdmpc2", "Ant", 0)
    rows = [
        {"step": k, "env_steps": 1000 * k, "wall_time_s": k, "metric": "plan_time_s", "value": 1.5}
        for k in (1, 2, 3)
    ]
    rundir.append_rows(planner / rundir.TRAIN, rundir.TRAIN_COLUMNS, rows)
    offline = _make_run(root, "pwm", "Ant", 0)
    offline_eval = pd.read_csv(offline / rundir.EVAL).assign(env_steps=0)
    offline_eval.to_csv(offline / rundir.EVAL, index=False)
    table, runs = report.load_runs(root)
    costs = report.load_throughput(root, runs).set_index("algo")
    assert costs.loc["tdmpc2", "plan_time_s"] == 4.5 and np.isnan(costs.loc["tdmpc2", "update_time_s"])
    assert np.isnan(costs.loc["pwm", "env_steps_per_s"])
    latex = report.make_report(
        table,
        tmp_path / "rep",
        report.ReportOptions(n_resamples=100),
        runs,
        report.load_throughput(root, runs),
    )
    assert latex["files"].count("throughput.csv") == 1
    text = (tmp_path / "rep" / "table.tex").read_text()
    assert "Ant of it planning (min) & -- & 0.1" in text and "Ant env-steps/s (training) & -- & 500" in text
