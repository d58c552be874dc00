"""Content digests of a run's input files, so every cache follows content, not paths.

The example, baseline and untouched-score caches are keyed by these: a ``data=jsonl`` file
edited after a run is re-read, a deleted one fails with its key named (never "loads" from a
cache), a re-prepared asset rebuilds. Hashes are memoised per process by (path, size, mtime,
inode), so a sweep worker hashes each file once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError

log = logging.getLogger(__name__)
_MEMO: dict[tuple, str] = {}
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes (memoised while the file's size and mtime stay the same)."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if memo_key not in _MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _MEMO[memo_key] = digest.hexdigest()
    return _MEMO[memo_key]


def tree_sha256(path: Path) -> str:
    """A file's sha256, or for a directory the sha256 of its files' relative names and hashes."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(path)}\0{file_sha256(child)}\n".encode())
    return digest.hexdigest()


def _as_dict(node: Any) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node or {})


def source_files(node: Any, key: str, cache_dir: str | None) -> list[tuple[str, Path]]:
    """The local files one source, task or model node reads: ``[(label, path)]``.

    ``path`` (a local file or directory; for ``kind: jsonl`` it must exist), ``asset`` with
    ``file`` (a file of a prepared asset) or ``asset`` alone (the asset's directory). A Hub id
    has no local file: the Hub versions it.
    """
    spec = _as_dict(node)
    files: list[tuple[str, Path]] = []
    path = spec.get("path")
    if isinstance(path, str) and path and path != "???":
        local = Path(path).expanduser()
        if local.exists():
            files.append((f"{key}.path", local))
        elif spec.get("kind") != "hf":  # an hf path that is not local is a Hub id
            raise ConfigError(f"{key}.path={path!r}: file not found")
    elif spec.get("asset"):
        from mudman.assets import require_asset

        directory = require_asset(spec["asset"], cache_dir)
        target = directory / spec["file"] if spec.get("file") else directory
        if not target.exists():
            raise ConfigError(f"{key}: asset file {str(target)!r} not found; run: make assets")
        files.append((f"{key}.asset", target))
    return files


def inputs_digest(nodes: dict[str, Any], cache_dir: str | None) -> str:
    """One sha256 over every local input file of ``{key: node}`` (labels included)."""
    digest = hashlib.sha256()
    for key in sorted(nodes):
        for label, path in source_files(nodes[key], key, cache_dir):
            digest.update(f"{label}\0{tree_sha256(path)}\n".encode())
    return digest.hexdigest()


def selected_sources(cfg: DictConfig) -> dict[str, Any]:
    """The nodes a trial reads files from: the model, the data source of each side and the
    objective's task sources (only the selected ``source`` of each)."""
    nodes: dict[str, Any] = {"model": cfg.model}
    data = cfg.data
    for side in ("forget", "retain"):
        if side in data and data.source in data[side]:
            nodes[f"data.{side}.{data.source}"] = data[side][data.source]
    objective = cfg.get("objective") or {}
    for role in ("target", "guard"):
        task = objective.get(role) if hasattr(objective, "get") else None
        if isinstance(task, DictConfig) and task.get("source") in task:
            nodes[f"objective.{role}.{task.source}"] = task[task.source]
    return nodes


def warn_corrupt(path: Path, err: BaseException) -> None:
    """One warning naming a cache file that could not be read (it is rebuilt)."""
    log.warning(
        "cache entry %s is unreadable (%s: %s); rebuilding it",
        path,
        type(err).__name__,
        str(err).splitlines()[0] if str(err) else "",
    )
    with contextlib.suppress(OSError):
        os.unlink(path)


def read_cached_json(path: Path) -> dict | None:
    """A cached JSON record, or ``None`` when absent or unreadable (then warned once, rebuilt)."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"holds a {type(record).__name__}, not an object")
        return record
    except (OSError, ValueError) as err:
        warn_corrupt(path, err)
        return None
