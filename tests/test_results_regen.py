"""Every committed report under results/ regenerates from committed inputs to the same tidy outputs.

The reports are listed in ``results/reports.json`` (output folder, command, inputs). Each is regenerated into
a temporary folder and its CSV and JSON files are compared with the committed ones: same files, same
columns and keys, text equal, numbers equal within a relative 1e-9 (statistics are seeded, so only the
last bits of floating-point sums may differ between CPUs). Figures are not compared.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "results" / "reports.json"
TIDY_SUFFIXES = (".csv", ".json")
IGNORED_KEYS = {"created_utc"}  # the only field of stats.json that changes on a rerun
RTOL, ATOL = 1e-9, 1e-12


def _entries() -> list[dict[str, Any]]:
    return json.loads(MANIFEST.read_text())["reports"]


def _tidy_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in TIDY_SUFFIXES)


def _compare_json(ours: Any, theirs: Any, where: str) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        keys = set(theirs) - IGNORED_KEYS
        assert set(ours) - IGNORED_KEYS == keys, f"{where}: keys differ"
        for key in sorted(keys):
            _compare_json(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: lengths differ"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _compare_json(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, (int, float)), f"{where}: {ours!r} is not a number"
        both_nan = math.isnan(ours) and math.isnan(theirs)
        assert both_nan or math.isclose(ours, theirs, rel_tol=RTOL, abs_tol=ATOL), (
            f"{where}: {ours!r} != {theirs!r}"
        )
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def _compare_csv(ours: Path, theirs: Path) -> None:
    a, b = pd.read_csv(ours), pd.read_csv(theirs)
    assert list(a.columns) == list(b.columns), f"{theirs.name}: columns differ"
    assert a.shape == b.shape, f"{theirs.name}: {a.shape} rows x columns, committed {b.shape}"
    for col in b.columns:
        if pd.api.types.is_numeric_dtype(b[col]) and pd.api.types.is_numeric_dtype(a[col]):
            np.testing.assert_allclose(
                a[col], b[col], rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=f"{theirs.name}:{col}"
            )
        else:
            assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), f"{theirs.name}:{col}"


def compare_tidy(regenerated: Path, committed: Path) -> None:
    """Assert that the CSV and JSON files of two report folders agree (AssertionError says where)."""
    assert _tidy_files(regenerated) == _tidy_files(committed), "the sets of tidy files differ"
    for name in _tidy_files(committed):
        if name.endswith(".json"):
            ours = json.loads((regenerated / name).read_text())
            _compare_json(ours, json.loads((committed / name).read_text()), name)
        else:
            _compare_csv(regenerated / name, committed / name)


def regenerate(entry: dict[str, Any], out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the entry's command into ``out``; fail (never skip) when an input is missing, unless pending."""
    if entry.get("pending"):
        pytest.skip(f"pending: {entry['out']}: {entry['pending']}")
    missing = [p for p in entry["inputs"] if not (ROOT / p).exists()]
    if missing:
        pytest.fail(
            f"{entry['out']} cannot be regenerated: its input(s) {missing} are not in the repository; "
            "commit them (results/README.md says how) or mark the entry 'pending' with a reason in "
            f"{MANIFEST.relative_to(ROOT)}"
        )
    monkeypatch.chdir(ROOT)  # the commands and the paths they record are relative to the repository root
    main = importlib.import_module(entry["module"]).main
    assert main([*entry["args"], "--out", str(out)]) == 0


@pytest.mark.parametrize("entry", _entries(), ids=lambda e: e["out"])
def test_committed_report_regenerates(entry, tmp_path, monkeypatch):
    regenerate(entry, tmp_path / "report", monkeypatch)
    compare_tidy(tmp_path / "report", ROOT / entry["out"])


def test_every_committed_report_is_in_the_manifest():
    listed = {e["out"] for e in _entries()}
    reports = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "results").rglob("stats.json")}
    assert reports <= listed, f"reports not in {MANIFEST.name}: {sorted(reports - listed)}"
    assert all((ROOT / out).is_dir() for out in listed), "a manifest entry names a folder that does not exist"


def test_no_report_input_is_ignored_by_git():
    """The class of bug behind issue 11 item 1: a `runs/` pattern in .gitignore hid results/runs/."""
    # An input folder and a file inside it (a pattern may ignore only the contents).
    paths = [q for e in _entries() for p in e["inputs"] for q in (p, f"{p}/x/eval.csv")]
    try:
        done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if done.returncode not in (0, 1):  # 128: not a git checkout (an unpacked sdist, say)
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    assert done.stdout.split() == [], f"ignored by .gitignore: {done.stdout.split()}"


def test_missing_inputs_fail_and_pending_entries_skip(tmp_path, monkeypatch):
    entry = {"out": "results/x", "module": "bench.report", "args": [], "inputs": ["results/no/such/runs"]}
    with pytest.raises(pytest.fail.Exception, match="not in the repository"):
        regenerate(entry, tmp_path, monkeypatch)
    with pytest.raises(pytest.skip.Exception, match="pending: results/x: runs not yet published"):
        regenerate(entry | {"pending": "runs not yet published"}, tmp_path, monkeypatch)


def test_comparison_catches_a_changed_number_and_ignores_the_timestamp(tmp_path):
    committed = ROOT / "results" / "published"
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in _tidy_files(committed):
        shutil.copy(committed / name, copy / name)
    meta = json.loads((copy / "stats.json").read_text())
    meta["created_utc"] = "2000-01-01T00:00:00Z"
    (copy / "stats.json").write_text(json.dumps(meta))
    compare_tidy(copy, committed)
    meta["aggregate"]["iqm"]["PWM"]["low"] *= 1 + 1e-7
    (copy / "stats.json").write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="stats.json.aggregate.iqm.PWM.low"):
        compare_tidy(copy, committed)
    table = pd.read_csv(committed / "aggregate.csv")
    table.loc[0, "estimate"] += 1e-3
    table.to_csv(copy / "aggregate.csv", index=False)
    with pytest.raises(AssertionError, match="aggregate.csv:estimate"):
        compare_tidy(copy, committed)


def test_published_inputs_are_the_released_files():
    """results/published/curves/*.csv.gz decompress to the released CSVs (SHA256SUMS of the originals)."""
    folder = ROOT / "results" / "published" / "curves"
    sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == sorted(p.name.removesuffix(".gz") for p in folder.glob("*.csv.gz"))
    for name, digest in sums.items():
        assert hashlib.sha256(gzip.decompress((folder / f"{name}.gz").read_bytes())).hexdigest() == digest, (
            name
        )


LANDSCAPES = sorted(  # analyses with committed figures (the extra ball-wall seeds commit tidy files only)
    p.parent for p in (ROOT / "results" / "landscape").rglob("config.json") if any(p.parent.glob("*.png"))
)


@pytest.mark.parametrize("folder", LANDSCAPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_landscape_figures_regenerate_from_their_files(folder, tmp_path):
    """`bench.landscape plot DIR` redraws every committed landscape figure from the folder's files alone."""
    from bench import landscape

    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    figures = sorted(p.name for p in copy.iterdir() if p.suffix in (".png", ".pdf"))
    for name in figures:
        (copy / name).unlink()
    assert landscape.main(["plot", str(copy)]) == 0
    assert sorted(p.name for p in copy.iterdir() if p.suffix in (".png", ".pdf")) == figures
