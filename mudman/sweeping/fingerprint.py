"""A study is one experiment: the fingerprint of everything its trials depend on.

The fingerprint is the sha256 of the resolved config minus the run-only keys (where outputs
go, logging, progress bars: nothing a trial's numbers depend on) plus the search space. It is
stored with the study when the study is created; every later open compares it. Same: the run
resumes the study. Different: the run is refused before any trial, naming the keys that
differ, unless ``hydra.sweeper.allow_config_change=true`` (then the change is appended to the
study's ``config_changes`` attribute; the recorded ``config`` is never rewritten).

``n_trials`` is deliberately not part of it (raising it tops a study up), nor are the sampler,
storage, worker and timing keys of ``hydra.sweeper`` (how the study is run, not what it is).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: top-level config keys that never change a trial's numbers
RUN_ONLY_KEYS = ("hydra", "sweep", "logger", "progress", "overwrite", "preflight", "paths")
#: the tables a preset picks each variant's space from: the study's own effective space is in
#: the experiment instead, so editing TAR's range does not refuse resuming MUDMAN's study
SPACE_TABLES = ("search_space", "search_ranges")


def experiment_of(cfg: DictConfig, search_space: dict[str, Any]) -> dict[str, Any]:
    """What the trials of a study depend on: resolved config minus run-only keys, plus the space."""
    dropped = (*RUN_ONLY_KEYS, *SPACE_TABLES)
    resolved = {k: v for k, v in resolved_container(cfg).items() if k not in dropped}
    experiment = {"config": resolved, "search_space": dict(search_space)}
    return json.loads(json.dumps(experiment, default=str, sort_keys=True))


def resolved_container(node: Any) -> Any:
    """Like ``OmegaConf.to_container(resolve=True)``, but an interpolation that cannot be
    resolved (it points at a ``???`` of an unused option) keeps its text instead of failing."""
    if isinstance(node, DictConfig):
        out = {}
        for key in node:
            try:
                value = node[key]
            except Exception:  # any resolution error: keep the raw text
                value = OmegaConf.to_container(node, resolve=False)[key]
            out[str(key)] = resolved_container(value)
        return out
    if OmegaConf.is_list(node):
        return [resolved_container(item) for item in node]
    return node


def fingerprint(experiment: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of :func:`experiment_of`'s result."""
    text = json.dumps(experiment, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


_MISSING = "<absent>"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ: ``[(key, old value, new value)]``, sorted by key.

    The ``config.`` prefix is dropped (``unlearn_passes``, ``search_space.method.adv_lr``)."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    diffs = []
    for key in sorted(set(flat_old) | set(flat_new)):
        before, after = flat_old.get(key, _MISSING), flat_new.get(key, _MISSING)
        if before != after:
            diffs.append((key.removeprefix("config."), before, after))
    return diffs


def describe_differences(diffs: list[tuple[str, Any, Any]], limit: int = 8) -> str:
    """``unlearn_passes: 30 -> 20, search_space.x: ... -> ...`` (at most ``limit`` keys)."""
    shown = [f"{key}: {before!r} -> {after!r}" for key, before, after in diffs[:limit]]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(shown) + more
