"""Checks on the composed config that must pass before any model or dataset is loaded.

Every message names the key, the offending value and what is allowed.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mudman.attack.relearning import check_relearn_passes
from mudman.errors import ConfigError
from mudman.methods import UnlearningMethod, build_method
from mudman.models.loading import DTYPES
from mudman.models.targets import validate_target_patterns
from mudman.objectives import build_objective


def _int(cfg: DictConfig, key: str, minimum: int) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


def _positive(cfg: DictConfig, key: str) -> float:
    value = cfg.get(key) if "." not in key else _select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a number > 0")
    return float(value)


def _select(cfg: DictConfig, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if node is not None else None
    return node


def validate_config(cfg: DictConfig) -> UnlearningMethod:
    """Validate everything checkable without loading; return the built method."""
    _int(cfg, "batch_size", 1)
    context_len = _int(cfg, "context_len", 2)
    max_context = cfg.model.get("max_context")
    if max_context and context_len > max_context:
        raise ConfigError(
            f"context_len={context_len} is longer than model {cfg.model.name}'s "
            f"max_context={max_context}"
        )
    _int(cfg, "eval_every_passes", 1)
    _int(cfg, "seed", 0)
    _positive(cfg, "retain_loss_budget")
    _positive(cfg, "attack.lr")
    check_relearn_passes(_int(cfg, "relearn_passes", 2))
    if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r} is not allowed; allowed: auto, {', '.join(DTYPES)}")
    if cfg.model.get("dtype") not in DTYPES:
        raise ConfigError(f"model.dtype={cfg.model.get('dtype')!r}; allowed: {', '.join(DTYPES)}")
    validate_target_patterns(cfg.target_modules)
    sources = [k for k in ("offline", "hub", "local") if cfg.data.forget.get(k) is not None]
    if cfg.data.source not in sources:
        raise ConfigError(
            f"data.source={cfg.data.source!r} is not available for data={cfg.data.name}; "
            f"allowed: {', '.join(sources)}"
        )
    method = build_method(cfg.method)
    method.n_loops(_int(cfg, "unlearn_passes", 0))
    _check_retain_pause(cfg, method)
    if not isinstance(cfg.attack.get("alternate_retain", False), bool):
        raise ConfigError(
            f"attack.alternate_retain={cfg.attack.get('alternate_retain')!r}; allowed: true, false"
        )
    build_objective(cfg.objective)
    return method


def _check_retain_pause(cfg: DictConfig, method: UnlearningMethod) -> None:
    """The appendix F.2 pause rule needs a soft limit below the hard one and a method that
    can skip its unlearning step."""
    pause = cfg.get("retain_pause_budget")
    if pause is None:
        return
    if isinstance(pause, bool) or not isinstance(pause, (int, float)):
        raise ConfigError(f"retain_pause_budget={pause!r} must be null or a number")
    if not 0 < pause < cfg.retain_loss_budget:
        raise ConfigError(
            f"retain_pause_budget={pause!r} must be > 0 and below retain_loss_budget="
            f"{cfg.retain_loss_budget} (pause above the soft limit, reject above the hard one)"
        )
    if not method.supports_retain_pause:
        raise ConfigError(
            f"retain_pause_budget={pause!r} is not supported by method={cfg.method.name} "
            f"(algorithm {cfg.method.algorithm}); allowed: null, or a MUDMAN-family method"
        )
