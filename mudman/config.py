"""Where the config lives (``CONF_DIR``) and the checks on the composed config that must pass
before any model or dataset is loaded.

Every message names the key, the offending value and what is allowed. The components whose
checks :func:`validate_config` calls are imported inside it: the entry points import this
module for ``CONF_DIR`` when Hydra starts, which must not wait for torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError

if TYPE_CHECKING:
    from mudman.methods import UnlearningMethod

# The config groups (conf/ in the repository checkout; the package is installed editable).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


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


@cache
def _group_defaults(group: str, name: str) -> dict[str, Any]:
    """A config group option's own YAML, merged over the options it lists in ``defaults``."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    merged: dict[str, Any] = {}
    for parent in node.pop("defaults", None) or []:
        if isinstance(parent, str) and parent != "_self_":
            merged.update(_group_defaults(group, parent))
    merged.update(node)
    return merged


def _kind(value: Any) -> str | None:
    """The type family a shipped default stands for (``None``: anything goes)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return None  # strings and nulls: each method checks those values itself


def _fits(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "a number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "a list":
        return isinstance(value, (list, tuple)) or OmegaConf.is_list(value)
    return isinstance(value, dict) or OmegaConf.is_dict(value)


def check_types(node: DictConfig, group: str, name: str) -> None:
    """Wrong types (``method.retain_momentum=abc``) fail with the key, value and type allowed.

    The shipped YAML of the selected option is the schema: a key whose default is a number
    takes a number, a boolean takes true/false. Options without a YAML are not checked here.
    """
    for key, default in _group_defaults(group, name).items():
        kind = _kind(default)
        if kind is None or key not in node or node.get(key) is None:
            continue
        value = node.get(key)
        if not _fits(value, kind):
            raise ConfigError(
                f"{group}.{key}={value!r} has the wrong type; allowed: {kind} (default {default!r})"
            )


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
        kind = _kind(defaults[name])
        if kind is not None and not _fits(value, kind):
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
