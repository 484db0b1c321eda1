"""A sweep's plan: the grid (algos x envs x seeds) as tasks, each one ``bench.run`` or ``bench.pretrain``.

A SHAC cell is one task. A PWM cell is three dependent tasks, the pipeline of ``bench.pipeline`` run as
separate commands: data (SHAC with ``--save-data``, early termination off), pretraining (``bench.pretrain``),
then the policy (``bench.run --algo pwm --world-model ... --data ...``). ``pwm_data`` chooses where the
data comes from:

- ``separate``: one data and one pretraining task per PWM seed (what ``bench.run --algo pwm`` does);
- ``shared``: one data and one pretraining task per env (the first seed's) serve every policy seed;
- ``shac``: the sweep's SHAC run of the same env and seed records the data (``--save-data``, early
  termination as trained), as in ``results/ant_shac_vs_pwm``.

Sweep files (TOML or JSON) hold the same keys as the CLI options, plus ``[[cells]]`` tables that add
``--set`` overrides to the scored runs they match (by ``algo``, ``env`` and/or ``seed``)::

    algos = ["shac", "pwm:offline"]
    envs = ["ant"]
    seeds = "0-1"
    preset = "cpu"
    pwm_data = "shac"

    [[cells]]
    algo = "shac"
    seed = 1
    set = ["algo.actor_lr=1e-3"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench.algorithms import ALGORITHMS
from bench.presets import PRESETS, VARIANTS, default_variant, pwm_data_overrides, resolve_settings

PWM_DATA = ("separate", "shared", "shac")


@dataclass(frozen=True)
class Task:
    """One process of the sweep: ``python -m bench.<command>`` writing one run directory."""

    id: str
    """Unique name, e.g. ``ant-shac-seed0``; the task's runs live in ``<out>/<runs|stages>/<id>/``."""
    command: str
    """``run`` (bench.run) or ``pretrain`` (bench.pretrain)."""
    env: str
    """Registered env name."""
    seed: int
    """Run seed."""
    preset: str
    """Budget preset."""
    algo: str | None = None
    """bench.run's ``--algo`` (None for pretraining)."""
    variant: str | None = None
    """bench.run's ``--variant`` (None: the algorithm's default)."""
    overrides: tuple[str, ...] = ()
    """bench.run's ``--set`` assignments, in order."""
    save_data: bool = False
    """bench.run's ``--save-data`` (the task records episodes for PWM)."""
    inputs: tuple[tuple[str, str], ...] = ()
    """(role, task id) pairs: ``data`` passes that task's ``data/``, ``world_model`` its final checkpoint."""
    scored: bool = True
    """A run ``bench.report`` scores (under ``runs/``), or an intermediate stage (under ``stages/``)."""

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(task_id for _, task_id in self.inputs))

    @property
    def kind(self) -> str:
        """What the run-time estimate is keyed by: ``pretrain:<preset>`` (the preset picks the model size)
        or ``algo:variant``."""
        if self.command == "pretrain":
            return f"pretrain:{self.preset}"
        return f"{self.algo}:{self.variant or default_variant(self.algo)}"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Task:
        """The inverse of :meth:`to_dict` (JSON lists back to tuples)."""
        inputs = tuple(tuple(pair) for pair in values["inputs"])
        return cls(**{**values, "overrides": tuple(values["overrides"]), "inputs": inputs})


@dataclass
class SweepSpec:
    """What to sweep; the CLI options and the sweep file's keys."""

    algos: list[str] = field(default_factory=list)
    """``algo`` or ``algo:variant`` names, e.g. ``shac``, ``pwm:offline``."""
    envs: list[str] = field(default_factory=list)
    """Env names."""
    seeds: list[int] = field(default_factory=list)
    """Run seeds."""
    preset: str = "paper"
    """Budget preset of every task."""
    set: list[str] = field(default_factory=list)
    """``--set`` overrides of every scored run (SHAC runs and PWM policies)."""
    pwm_data: str = "separate"
    """Where PWM's data and world model come from (see the module docstring)."""
    cells: list[dict[str, Any]] = field(default_factory=list)
    """Per-cell overrides: tables with optional ``algo``, ``env``, ``seed`` and a ``set`` list."""


def parse_seeds(text: str | int | list[int]) -> list[int]:
    """``"0-4"``, ``"0,2,7"``, ``"0-2,5"``, an int or a list of ints -> sorted unique seeds."""
    if isinstance(text, int):
        return [text]
    if isinstance(text, list):
        if not all(isinstance(s, int) and s >= 0 for s in text):
            raise ValueError(f"seeds must be non-negative integers, got {text}")
        return sorted(set(text))
    seeds: set[int] = set()
    for part in str(text).split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(f"seeds: expected e.g. 0-4 or 0,2,5, got {text!r}") from None
        if low < 0 or high < low:
            raise ValueError(f"seeds: bad range {part!r} in {text!r}")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def split_names(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else str(text).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a TOML (``.toml``) or JSON sweep file; unknown keys raise ValueError."""
    path = Path(path)
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError("TOML sweep files need Python >= 3.11 (tomllib); use a .json file") from None
        values = tomllib.loads(path.read_text())
    else:
        values = json.loads(path.read_text())
    known = {f.name for f in fields(SweepSpec)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid: {sorted(known)}")
    spec = SweepSpec(**{k: v for k, v in values.items() if k not in ("algos", "envs", "seeds", "set")})
    spec.algos = split_names(values.get("algos", []))
    spec.envs = split_names(values.get("envs", []))
    spec.seeds = parse_seeds(values["seeds"]) if "seeds" in values else []
    spec.set = list(values.get("set", []))
    return spec


def _check(spec: SweepSpec, env_names: list[str]) -> list[tuple[str, str | None]]:
    """Validate ``spec``; returns the (algo, variant) pairs."""
    for name, values in (("algos", spec.algos), ("envs", spec.envs), ("seeds", spec.seeds)):
        if not values:
            raise ValueError(f"no {name} given")
    pairs = []
    for entry in spec.algos:
        algo, _, variant = entry.partition(":")
        if algo not in ALGORITHMS:
            raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(ALGORITHMS)}")
        if variant and variant not in VARIANTS[algo]:
            valid = ", ".join(VARIANTS[algo])
            raise ValueError(f"unknown variant {variant!r} of {algo}; valid: {valid}")
        pairs.append((algo, variant or None))
    for env in spec.envs:
        if env not in env_names:
            raise ValueError(f"unknown env {env!r}; valid: {', '.join(env_names)}")
    if spec.preset not in PRESETS:
        raise ValueError(f"unknown preset {spec.preset!r}; valid: {', '.join(PRESETS)}")
    if spec.pwm_data not in PWM_DATA:
        raise ValueError(f"unknown pwm_data {spec.pwm_data!r}; valid: {', '.join(PWM_DATA)}")
    if spec.pwm_data == "shac" and "pwm" in {a for a, _ in pairs} and "shac" not in {a for a, _ in pairs}:
        raise ValueError("pwm_data = shac needs shac among the algos (its runs record the data)")
    for cell in spec.cells:
        extra = sorted(set(cell) - {"algo", "env", "seed", "set"})
        if extra or "set" not in cell:
            raise ValueError(f"a cell needs 'set' and may have algo, env, seed; got {sorted(cell)}")
    return pairs


def _cell_overrides(spec: SweepSpec, algo: str, variant: str | None, env: str, seed: int) -> tuple[str, ...]:
    names = {algo, f"{algo}:{variant}" if variant else algo}
    extra = [
        assignment
        for cell in spec.cells
        if cell.get("algo", algo) in names and cell.get("env", env) == env and cell.get("seed", seed) == seed
        for assignment in cell["set"]
    ]
    return (*spec.set, *extra)


def _tag(algo: str, variant: str | None) -> str:
    return f"{algo}_{variant}" if variant else algo


def build_plan(spec: SweepSpec, env_names: list[str]) -> list[Task]:
    """The tasks of ``spec`` in dependency order (every task after the tasks it reads)."""
    pairs = _check(spec, env_names)
    variants = {algo: [v for a, v in pairs if a == algo] for algo, _ in pairs}
    tasks: dict[str, Task] = {}
    for env in spec.envs:
        for seed in spec.seeds:
            for algo, variant in pairs:
                common = dict(env=env, seed=seed, preset=spec.preset)
                overrides = _cell_overrides(spec, algo, variant, env, seed)
                task_id = f"{env}-{_tag(algo, variant)}-seed{seed}"
                if algo != "pwm":
                    # In pwm_data=shac mode the first SHAC variant of the sweep records the data.
                    records = spec.pwm_data == "shac" and "pwm" in variants and variant == variants["shac"][0]
                    task = Task(task_id, "run", algo=algo, variant=variant, overrides=overrides, **common)
                    tasks[task_id] = replace(task, save_data=records)
                    continue
                if spec.pwm_data == "shac":
                    data_id = f"{env}-{_tag('shac', variants['shac'][0])}-seed{seed}"
                    pretrain_seed = seed
                else:
                    data_seed = spec.seeds[0] if spec.pwm_data == "shared" else seed
                    data_id = f"{env}-pwm_data-seed{data_seed}"
                    data = Task(
                        data_id,
                        "run",
                        env=env,
                        seed=data_seed,
                        preset=spec.preset,
                        algo="shac",
                        overrides=tuple(pwm_data_overrides(spec.preset)),
                        save_data=True,
                        scored=False,
                    )
                    tasks.setdefault(data_id, data)
                    pretrain_seed = data_seed
                pretrain_id = f"{env}-pwm_pretrain-seed{pretrain_seed}"
                pretrain = Task(
                    pretrain_id,
                    "pretrain",
                    env=env,
                    seed=pretrain_seed,
                    preset=spec.preset,
                    inputs=(("data", data_id),),
                    scored=False,
                )
                tasks.setdefault(pretrain_id, pretrain)
                inputs = (("world_model", pretrain_id), ("data", data_id))
                tasks[task_id] = Task(
                    task_id, "run", algo="pwm", variant=variant, overrides=overrides, inputs=inputs, **common
                )
    plan = dependency_order(list(tasks.values()))
    for task in plan:
        if task.command == "run":
            task_settings(task)  # a bad --set fails here, before anything runs
    return plan


def task_settings(task: Task) -> dict[str, Any]:
    """The resolved bench.run settings of a run task (ValueError naming a bad override)."""
    assert task.command == "run" and task.algo is not None, f"{task.id} is not a bench.run task"
    return resolve_settings(task.algo, task.env, task.preset, task.variant, task.overrides)


def dependency_order(tasks: list[Task]) -> list[Task]:
    done: set[str] = set()
    ordered: list[Task] = []
    while len(ordered) < len(tasks):
        ready = [task for task in tasks if task.id not in done and all(dep in done for dep in task.deps)]
        if not ready:
            raise ValueError(f"tasks with missing dependencies: {[t.id for t in tasks if t.id not in done]}")
        ordered.extend(ready)
        done.update(task.id for task in ready)
    return ordered
