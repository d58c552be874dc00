"""How every cache finds its entries: the sha256 of a canonical text of what the entry depends on.

One place makes the keys of the tokenized examples (``<cache>/examples/<key>.pt``), the device
batches a sweep worker reuses, the relearn-only baselines (``<cache>/baselines/<key>.json``),
the untouched models' multiple-choice scores and the multiple-choice evaluators a process
keeps. A key is either its parts joined by ``"|"`` or the canonical JSON of a structure; both
are the exact strings the keys have always been made of, so caches on disk stay valid
(``tests/test_caches.py`` pins them).

Content digests (asset manifests, input files, sweep fingerprints) are not cache keys and do
not come through here: they name what a file or an experiment holds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def cache_key(*parts: object, length: int | None = None) -> str:
    """Hex sha256 of ``parts`` formatted as f-strings and joined by ``"|"``, cut to the first
    ``length`` hex digits (``None``: all 64)."""
    digest = hashlib.sha256("|".join(f"{part}" for part in parts).encode()).hexdigest()
    return digest if length is None else digest[:length]


def json_key(value: Any, length: int | None = None) -> str:
    """:func:`cache_key` of the canonical JSON (sorted keys) of ``value``."""
    return cache_key(json.dumps(value, sort_keys=True), length=length)


def config_json(node: Any) -> str:
    """The canonical JSON of a config node (interpolations resolved, keys sorted), as it
    enters a key."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return json.dumps(node, sort_keys=True)
