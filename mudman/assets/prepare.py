"""Idempotent prep of the offline assets: build what is missing, stale or corrupted, skip the rest.

Each asset module provides ``asset_key()`` (what the asset is built from) and
``build(out_dir, downloads, ...)`` (writes the files, returns manifest fields). This module adds
the manifest with checksums and the atomic rename, and decides when a cached copy can be reused.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mudman.assets.store import (
    ASSET_NAMES,
    asset_path,
    atomic_directory,
    check_name,
    clean_stale_temp_dirs,
    downloads_dir,
    hash_outputs,
    resolve_cache_dir,
    verify_asset,
    write_manifest,
)

# Asset name -> module that builds it (imported lazily: torch/transformers are heavy).
_MODULES = {
    "smollm2-135m": "mudman.assets.smollm2",
    "python-stdlib": "mudman.assets.stdlib_python",
    "wikipedia": "mudman.assets.wikipedia",
    "go-definitions": "mudman.assets.go_definitions",
    "house": "mudman.assets.house",
    "mmlu": "mudman.assets.mmlu",
}
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class PrepareResult:
    """Outcome of preparing one asset."""

    name: str
    path: Path
    status: str  # "cached" or "built"
    reason: str  # why it was (re)built, or "" when cached
    seconds: float


def _module(name: str) -> Any:
    return importlib.import_module(_MODULES[check_name(name)])


def _options(name: str, stdlib_root: Path | str | None) -> dict[str, Any]:
    if name == "python-stdlib" and stdlib_root is not None:
        return {"stdlib_root": Path(stdlib_root)}
    return {}


def asset_status(
    name: str, cache_dir: Path | str | None = None, stdlib_root: Path | str | None = None
) -> str:
    """Return "ok" if the asset is prepared and intact, else why not (missing, stale, ...)."""
    key = _module(name).asset_key(**_options(name, stdlib_root))
    problem = verify_asset(asset_path(name, cache_dir), key)
    return problem or "ok"


def prepare_one(
    name: str,
    cache_dir: Path | str | None = None,
    force: bool = False,
    stdlib_root: Path | str | None = None,
) -> PrepareResult:
    """Build asset ``name`` unless an intact copy with the same key is already in the cache."""
    started = time.perf_counter()
    module = _module(name)
    options = _options(name, stdlib_root)
    key = module.asset_key(**options)
    target = asset_path(name, cache_dir)
    downloads = downloads_dir(cache_dir)
    for parent in (target.parent, downloads):  # leftovers of preps that were killed
        clean_stale_temp_dirs(parent)
    problem = "forced" if force else verify_asset(target, key)
    if problem is None:
        return PrepareResult(name, target, "cached", "", time.perf_counter() - started)
    downloads.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as tmp:
        fields = module.build(tmp, downloads, **options)
        manifest = {
            "name": name,
            "format": MANIFEST_FORMAT,
            "key": key,
            **fields,
            "files": hash_outputs(tmp),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        write_manifest(tmp, manifest)
    return PrepareResult(name, target, "built", problem, time.perf_counter() - started)


def prepare(
    names: Iterable[str] | None = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    stdlib_root: Path | str | None = None,
) -> dict[str, Path]:
    """Prepare the given assets (all by default); returns name -> asset directory."""
    selected = list(names) if names is not None else list(ASSET_NAMES)
    for name in selected:
        check_name(name)
    cache = resolve_cache_dir(cache_dir)
    return {
        name: prepare_one(name, cache, force=force, stdlib_root=stdlib_root).path
        for name in selected
    }
