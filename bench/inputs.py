"""The files a run starts from, read into the objects algorithms take (the CLI layer loads, algorithms
receive objects): an episode dataset and a pretrained world model. Every failure is a ConfigError that
names the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

from algos.dataset import INDEX, EpisodeDataset, load_dataset
from algos.wm_training import PretrainedWorldModel, load_world_model
from bench.algorithms import RunInputs
from bench.settings import ConfigError

# What a garbage, truncated or missing file raises inside json / numpy / torch loading.
UNREADABLE = (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile)


def read_dataset(path: str | Path) -> EpisodeDataset:
    """The episode dataset at ``path`` (``dataset.json`` and its chunks)."""
    path = Path(path)
    if not (path / INDEX).is_file():
        raise ConfigError(f"no episode dataset at {path} (missing {INDEX})")
    try:
        return load_dataset(path)
    except UNREADABLE as error:
        raise ConfigError(f"cannot read the episode dataset at {path}: {error}") from error


def read_world_model(path: str | Path) -> PretrainedWorldModel:
    """The pretrained world model in the ``bench.pretrain`` checkpoint ``path``."""
    try:
        return load_world_model(path)
    except UNREADABLE as error:
        raise ConfigError(f"cannot read the world model {path}: {error}") from error


def load_inputs(paths: dict[str, str]) -> RunInputs:
    """The objects a run starts from, read from the paths recorded in ``config.json["inputs"]``."""
    return RunInputs(
        world_model=read_world_model(paths["world_model"]) if paths.get("world_model") else None,
        dataset=read_dataset(paths["data"]) if paths.get("data") else None,
    )
