"""Writing a report: tidy CSVs, ``stats.json``, the LaTeX table and the figures (:func:`make_report`)."""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import normalization, plotting, stats
from bench.plotting import write_file
from bench.report.analysis import Analysis, analyse
from bench.report.ingest import TIDY_COLUMNS, coverage_report
from bench.report.latex import latex_table
from bench.report.options import PROTOCOLS, ReportError, ReportOptions
from bench.report.scores import add_normalized, resolve_normalization, run_scores
from bench.report.throughput import median_costs


def _interval_rows(an: Analysis, options: ReportOptions, scheme: str) -> pd.DataFrame:
    rows = []
    common = {"protocol": options.protocol, "normalization": scheme}
    for (algo, env), iv in an.per_env.items():
        rows.append({"algo": algo, "env": env, **_iv_row(iv), **common})
    for row in an.aggregate.values():
        for algo, iv in row.items():
            rows.append({"algo": algo, "env": "all", **_iv_row(iv), **common})
    for (a, b), iv in an.poi.items():
        rows.append({"algo": a, "env": "all", **_iv_row(iv), "versus": b, **common})
    for (a, b, env), iv in an.poi_env.items():
        rows.append({"algo": a, "env": env, **_iv_row(iv), "versus": b, **common})
    return pd.DataFrame(rows)


def _iv_row(iv: stats.Interval) -> dict[str, Any]:
    return {
        "metric": iv.metric,
        "estimate": iv.estimate,
        "low": iv.low,
        "high": iv.high,
        "n_runs": int(sum(iv.runs_per_task)),
        "n_excluded": iv.n_excluded,
        "method": iv.method,
        "resamples": iv.n_resamples,
        "confidence_level": iv.confidence_level,
        "scheme": iv.scheme,
    }


def _curve_rows(an: Analysis) -> pd.DataFrame:
    frames = []
    for axis, curves in an.curves.items():
        for (algo, env), b in curves.items():
            frames.append(
                pd.DataFrame(
                    {
                        "axis": axis,
                        "algo": algo,
                        "env": env,
                        "x": b.x,
                        "iqm": b.estimate,
                        "low": b.low,
                        "high": b.high,
                        "n_runs": b.n_runs,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_file(path, frame.to_csv(index=False, float_format="%.6g").encode())


def make_report(
    table: pd.DataFrame,
    out_dir: str | Path,
    options: ReportOptions,
    runs: pd.DataFrame | None = None,
    throughput: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compute every statistic for the tidy ``table`` and write figures, tables and ``stats.json``.

    ``table`` needs the columns ``algo, env, seed, run, env_steps, train_time_s, return`` (NaN where a
    quantity was not logged). ``throughput`` (:func:`bench.report.throughput.load_throughput`, optional):
    each run's cost, written to ``throughput.csv`` and summarised in the LaTeX table. Returns the content
    written to ``stats.json``.
    """
    if table.empty:
        raise ReportError("no evaluation rows to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheme = resolve_normalization(table, options)
    table = add_normalized(table, scheme, options.references)
    scores = run_scores(table, options.protocol, options.curve_points)
    an = analyse(table, scores, scheme, options)
    coverage = coverage_report(table, runs)
    runs_per_cell = {k: int(np.isfinite(g["score"]).sum()) for k, g in scores.groupby(["algo", "env"])}
    written: list[Path] = []

    if options.write_run_data:
        tidy = table[list(TIDY_COLUMNS)].assign(protocol=options.protocol)
        written.append(_write_csv(out / "runs.csv", tidy))
        if importlib.util.find_spec("pyarrow") is not None:
            buf = io.BytesIO()
            tidy.to_parquet(buf, index=False)
            write_file(out / "runs.parquet", buf.getvalue())
            written.append(out / "runs.parquet")
        written.append(
            _write_csv(
                out / "scores.csv",
                scores.rename(columns={"score": "normalized"}).assign(
                    normalized=lambda f: f["normalized"] if scheme != "none" else np.nan
                ),
            )
        )
    written.append(_write_csv(out / "aggregate.csv", _interval_rows(an, options, scheme)))
    curve_rows = _curve_rows(an)
    if options.write_run_data and not curve_rows.empty:
        written.append(_write_csv(out / "curves.csv", curve_rows))
    costs = None
    if throughput is not None and not throughput.empty:
        written.append(_write_csv(out / "throughput.csv", throughput))
        costs = median_costs(throughput)
    written.append(write_file(out / "table.tex", latex_table(an, options, runs_per_cell, costs).encode()))
    written += _figures(an, options, out)

    result = {
        "tool": "bench.report",
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": options.source,
        "score": options.data_label,
        "protocol": options.protocol,
        "protocol_label": PROTOCOLS[options.protocol],
        "normalization": {"scheme": scheme, **_norm_constants(an.envs, scheme, options.references)},
        "bootstrap": {
            "scheme": "task-resampling (whole envs resampled)"
            if options.task_bootstrap
            else "stratified: runs resampled with replacement within each env "
            "(scipy.stats.bootstrap, paired=False, one sample per env)",
            "method": options.ci_method,
            "resamples": options.n_resamples,
            "curve_resamples": options.curve_resamples,
            "confidence_level": options.confidence_level,
            "seed": options.seed,
            "generator": "numpy.random.default_rng([seed, zlib.crc32(key)]) per estimate, "
            "key e.g. 'iqm|<algo>'",
        },
        "algos": an.algos,
        "envs": an.envs,
        "aggregate_algos": an.aggregate_algos,
        "runs_per_task": {a: {e: runs_per_cell.get((a, e), 0) for e in an.envs} for a in an.algos},
        "excluded_runs": {
            f"{a}/{e}": int((~np.isfinite(g["score"])).sum())
            for (a, e), g in scores.groupby(["algo", "env"])
            if (~np.isfinite(g["score"])).any()
        },
        "coverage": coverage,
        "notes": options.notes + an.notes,
        "aggregate": {m: {a: iv.to_dict() for a, iv in row.items()} for m, row in an.aggregate.items()},
        "per_env": {f"{a}/{e}": iv.to_dict() for (a, e), iv in an.per_env.items()},
        "probability_of_improvement": {f"{a} > {b}": iv.to_dict() for (a, b), iv in an.poi.items()},
        "files": sorted(p.name for p in written) + ["stats.json"],
    }
    write_file(out / "stats.json", (json.dumps(result, indent=2, default=_json_default) + "\n").encode())
    return result


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _norm_constants(envs: list[str], scheme: str, references: dict | None) -> dict[str, Any]:
    if scheme == "ppo_max":
        return {"ppo_max": {e: normalization.ppo_max(e) for e in envs}}
    if scheme == "minmax":
        source = (
            "--reference file"
            if references is not None
            else f"bench.normalization v{normalization.REFERENCE_SCORES_VERSION}"
        )
        return {
            "r_min_r_ref": {e: normalization.reference_for(e, references) for e in envs},
            "source": source,
        }
    return {}


def _figures(an: Analysis, options: ReportOptions, out: Path) -> list[Path]:
    ylabel = "Return" if an.scheme == "none" else "Normalised score"
    tag = " (best over training: optimistic)" if options.protocol == "best" else ""
    written = []
    with plotting.style():
        for axis, curves in an.curves.items():
            if not curves:
                continue
            shown = {
                k: replace(
                    b,
                    estimate=_ewm(b.estimate, options.smooth),
                    low=_ewm(b.low, options.smooth),
                    high=_ewm(b.high, options.smooth),
                )
                for k, b in curves.items()
            }
            envs = [e for e in an.envs if any(k[1] == e for k in shown)]
            algos = [a for a in an.algos if any(k[0] == a for k in shown)]
            fig = plotting.plot_curves(
                shown, algos, envs, "env_steps" if axis == "env_steps" else "time", ylabel
            )
            written += plotting.save(fig, out, f"curves_{axis}", options.formats)
        if an.aggregate:
            fig = plotting.plot_aggregate(an.aggregate, an.aggregate_algos, ylabel + tag)
            written += plotting.save(fig, out, "aggregate", options.formats)
        if an.profiles:
            fig = plotting.plot_profiles(
                an.profiles, an.taus, an.aggregate_algos, r"$\tau$ (" + ylabel.lower() + ")" + tag
            )
            written += plotting.save(fig, out, "profiles", options.formats)
        if an.poi:
            fig = plotting.plot_poi(an.poi, an.aggregate_algos)
            written += plotting.save(fig, out, "poi", options.formats)
    return written


def _ewm(y: np.ndarray, alpha: float) -> np.ndarray:
    return pd.Series(y).ewm(alpha=alpha, ignore_na=True).mean().to_numpy() if alpha > 0 else y
