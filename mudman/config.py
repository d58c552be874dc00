"""The checks on the composed config that must pass before any model or dataset is loaded.

Every message names the key, the offending value and what is allowed. The components whose
checks :func:`validate_config` calls are imported inside it, so importing this module (as the
entry points do when Hydra starts) does not wait for torch. Where the config lives and how its
YAML serves as defaults: mudman/defaults.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from mudman.defaults import check_types, fits_kind, kind_of
from mudman.errors import ConfigError

if TYPE_CHECKING:
    from mudman.methods import UnlearningMethod


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
    from mudman.attack.base import check_relearn_passes
    from mudman.attack.suite import validate_attacks
    from mudman.data.batching import split_seed_of
    from mudman.methods import build_method
    from mudman.models.loading import DTYPES
    from mudman.models.targets import validate_target_patterns
    from mudman.objectives import build_objective
    from mudman.runtime import check_threads

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
    check_relearn_passes(_int(cfg, "relearn_passes", 2))
    validate_attacks(cfg)  # attack (or every attack_suite entry): mudman/attack/suite.py
    if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r} is not allowed; allowed: auto, {', '.join(DTYPES)}")
    if cfg.model.get("dtype") not in DTYPES:
        raise ConfigError(f"model.dtype={cfg.model.get('dtype')!r}; allowed: {', '.join(DTYPES)}")
    if not isinstance(cfg.get("tf32", True), bool):
        raise ConfigError(f"tf32={cfg.get('tf32')!r}; allowed: true or false (default true)")
    check_threads(cfg.get("threads", "auto"))  # mudman/runtime.py
    for flag in ("trust_remote_code", "allow_pickle"):  # security switches: off unless true
        value = cfg.model.get(flag, False)
        if not isinstance(value, bool):
            raise ConfigError(f"model.{flag}={value!r}; allowed: true or false (default false)")
    validate_target_patterns(cfg.target_modules)
    split_seed_of(cfg.data)
    sources = [k for k in ("offline", "hub", "local") if cfg.data.forget.get(k) is not None]
    if cfg.data.source not in sources:
        raise ConfigError(
            f"data.source={cfg.data.source!r} is not available for data={cfg.data.name}; "
            f"allowed: {', '.join(sources)}"
        )
    check_types(cfg.method, "method", str(cfg.method.get("name")))
    check_loss_kwargs(cfg.method)
    method = build_method(cfg.method)
    method.n_loops(_int(cfg, "unlearn_passes", 0))
    _check_retain_pause(cfg, method)
    build_objective(cfg.objective)
    return method


def check_loss_kwargs(method: DictConfig) -> None:
    """``method.unlearning_loss_kwargs`` (null or a mapping, ``={clip_at: 0.0}`` on the command
    line) may only name keyword arguments of the selected loss, with values of their type: a
    misspelt key would otherwise reach the loss as a TypeError in the middle of a trial."""
    import inspect

    from mudman.losses import LOSSES

    kwargs = method.get("unlearning_loss_kwargs")
    if kwargs is None:
        return
    key = "method.unlearning_loss_kwargs"
    if not (isinstance(kwargs, dict) or OmegaConf.is_dict(kwargs)):
        raise ConfigError(
            f"{key}={kwargs!r} has the wrong type; allowed: a mapping, e.g. {{clip_at: 0.0}}"
        )
    loss = str(method.get("unlearning_loss"))
    signature = inspect.signature(LOSSES.get(loss, "method.unlearning_loss"))
    defaults = {
        name: p.default
        for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    for name, value in kwargs.items():
        if name not in defaults:
            allowed = ", ".join(defaults) or "none (leave it null)"
            raise ConfigError(
                f"{key}.{name}={value!r}: unlearning_loss={loss} has no keyword argument "
                f"{name!r}; allowed: {allowed}"
            )
        kind = kind_of(defaults[name])
        if kind is not None and not fits_kind(value, kind):
            raise ConfigError(
                f"{key}.{name}={value!r} has the wrong type; allowed: {kind} "
                f"(default {defaults[name]!r})"
            )


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
