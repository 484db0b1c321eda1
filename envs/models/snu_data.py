"""Locate, verify and (on first use) download the SNU humanoid data files.

The SNU humanoid uses two data files of the MASS project (lsw9021/MASS, Apache-2.0, "Scalable
Muscle-actuated Human Simulation and Control", Lee et al., SIGGRAPH 2019): ``human.xml`` (skeleton) and
``muscle284.xml`` (muscle table). They are not part of the warpbench repository. ``snu_data_files`` finds
them, in this order:

1. the directory named by the environment variable ``WARPBENCH_SNU_DIR`` (if set, it is authoritative: a
   file missing there is an error, it is not looked for elsewhere);
2. the user cache ``$WARPBENCH_CACHE_DIR/snu`` (``~/.cache/warpbench/snu`` when ``WARPBENCH_CACHE_DIR`` is
   unset);
3. a download from the pinned MASS commit into that cache (``pooch``), unless ``download=False``.

Every file, wherever found, must match its pinned SHA-256; otherwise ``SnuDataError`` is raised with a
message that says where to get the file, where to put it and which environment variable to set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

MASS_REPOSITORY = "lsw9021/MASS"
MASS_COMMIT = "e44c2ef184cb55d45afd16b000414c84092ae18e"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{MASS_REPOSITORY}/{MASS_COMMIT}/data"
"""Raw-file address of the MASS ``data/`` folder at the pinned commit."""

SNU_FILE_SHA256: dict[str, str] = {
    "human.xml": "6db0651f634a2d45f68030987184bd4663138b9497566f866d0b9fd9512b6b43",
    "muscle284.xml": "5d66dd4fa4fdc51c12bf72ddec6a48898158730cd89c18942ebc8354dc0396a7",
}
"""File name -> SHA-256 (hex) of the MASS data files at ``MASS_COMMIT``."""

SNU_DIR_ENV = "WARPBENCH_SNU_DIR"
CACHE_DIR_ENV = "WARPBENCH_CACHE_DIR"


class SnuDataError(RuntimeError):
    """A SNU data file is missing, corrupt or could not be downloaded (message says how to fix it)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def snu_cache_dir() -> Path:
    """User cache folder of the SNU files: ``$WARPBENCH_CACHE_DIR/snu`` or ``~/.cache/warpbench/snu``."""
    cache_root = os.environ.get(CACHE_DIR_ENV)
    base = Path(cache_root).expanduser() if cache_root else Path.home() / ".cache" / "warpbench"
    return base / "snu"


def snu_file_url(name: str, base_url: str | None = None) -> str:
    """Download address of data file ``name`` under ``base_url`` (default: the pinned MASS commit)."""
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/{name}"


def _how_to_obtain(name: str, base_url: str | None, explicit_dir: Path | None = None) -> str:
    """Instructions (one paragraph) for getting data file ``name`` by hand.

    ``explicit_dir`` is the directory named by ``WARPBENCH_SNU_DIR`` when that variable is set.
    """
    url = snu_file_url(name, base_url)
    cache_dir = snu_cache_dir()
    source = (
        f"To obtain it: download {url} (MASS commit {MASS_COMMIT}, file data/{name}, "
        f"SHA-256 {SNU_FILE_SHA256[name]})"
    )
    if explicit_dir is not None:
        return (
            f"{source} into {explicit_dir} (the directory named by {SNU_DIR_ENV}), e.g. "
            f"`curl -L -o {explicit_dir / name} {url}`; or unset {SNU_DIR_ENV} so that warpbench uses the "
            f"user cache {cache_dir} (set {CACHE_DIR_ENV}=<dir> to use <dir>/snu instead) and downloads "
            "missing files there on first use."
        )
    return (
        f"{source}, e.g. `curl -L --create-dirs -o {cache_dir / name} {url}`, into the user cache "
        f"{cache_dir} (set {CACHE_DIR_ENV}=<dir> to use <dir>/snu instead), or put both "
        f"{' and '.join(SNU_FILE_SHA256)} in a directory of your choice and set {SNU_DIR_ENV}=<that "
        "directory>. With neither present, warpbench downloads them into the cache on first use."
    )


def verify_snu_file(
    path: Path, name: str, where: str, base_url: str | None = None, explicit_dir: Path | None = None
) -> None:
    """Raise ``SnuDataError`` unless ``path`` has the pinned SHA-256 of data file ``name``.

    ``where`` says how the file was found (it is quoted in the error message); ``explicit_dir`` is the
    ``WARPBENCH_SNU_DIR`` directory if the file was found there.
    """
    actual = file_sha256(path)
    expected = SNU_FILE_SHA256[name]
    if actual != expected:
        raise SnuDataError(
            f"SNU data file {path} ({where}) is corrupt or not the pinned version: its SHA-256 is {actual}, "
            f"expected {expected}. Delete or replace it. " + _how_to_obtain(name, base_url, explicit_dir)
        )


def _copy_file_url(
    url: str, output_file: str | IO[bytes], pooch: Any, check_only: bool = False
) -> bool | None:
    """``pooch`` downloader for ``file://`` addresses (offline mirrors, tests): copies the file."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if check_only:
        return source.is_file()
    if isinstance(output_file, (str, os.PathLike)):
        shutil.copyfile(source, output_file)
    else:
        with open(source, "rb") as stream:
            shutil.copyfileobj(stream, output_file)
    return None


def _download(name: str, cache_dir: Path, base_url: str | None) -> Path:
    """Download data file ``name`` into ``cache_dir`` with SHA-256 verification; return its path."""
    import pooch  # local import: only needed on first use

    url = snu_file_url(name, base_url)
    downloader = _copy_file_url if url.startswith("file:") else None
    try:
        fetched = pooch.retrieve(
            url=url,
            known_hash=f"sha256:{SNU_FILE_SHA256[name]}",
            fname=name,
            path=cache_dir,
            downloader=downloader,
            progressbar=False,
        )
    except Exception as error:  # network errors, HTTP errors, hash mismatch (ValueError), disk errors
        raise SnuDataError(
            f"Could not download SNU data file {name} from {url} into {cache_dir}: "
            f"{type(error).__name__}: {error}. " + _how_to_obtain(name, None)
        ) from error
    return Path(fetched)


def snu_data_files(base_url: str | None = None, *, download: bool = True) -> dict[str, Path]:
    """Paths of the verified SNU data files: ``{"human.xml": ..., "muscle284.xml": ...}``.

    Args:
        base_url: where to download missing files from (``https://``, ``http://`` or ``file://`` address of
            a folder holding them); default ``DEFAULT_BASE_URL`` (the pinned MASS commit).
        download: if False, a file that is not present locally raises ``SnuDataError`` instead of being
            downloaded.

    Raises:
        SnuDataError: a file is missing (and cannot be downloaded) or fails its SHA-256 check.
    """
    explicit_dir = os.environ.get(SNU_DIR_ENV)
    if explicit_dir:
        data_dir = Path(explicit_dir).expanduser()
        files: dict[str, Path] = {}
        for name in SNU_FILE_SHA256:
            path = data_dir / name
            if not path.is_file():
                raise SnuDataError(
                    f"SNU data file {name} not found in {data_dir} (named by {SNU_DIR_ENV}). "
                    + _how_to_obtain(name, base_url, data_dir)
                )
            verify_snu_file(path, name, f"from {SNU_DIR_ENV}={explicit_dir}", base_url, data_dir)
            files[name] = path
        return files

    cache_dir = snu_cache_dir()
    files = {}
    for name in SNU_FILE_SHA256:
        path = cache_dir / name
        if path.is_file():
            verify_snu_file(path, name, "in the user cache", base_url)
        elif download:
            path = _download(name, cache_dir, base_url)
        else:
            raise SnuDataError(
                f"SNU data file {name} not found in the user cache {cache_dir} and download=False. "
                + _how_to_obtain(name, base_url)
            )
        files[name] = path
    return files
