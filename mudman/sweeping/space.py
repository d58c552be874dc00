"""Search spaces written in Hydra's override grammar, turned into Optuna distributions.

``tag(log, interval(1e-7, 3e-2))`` -> log-uniform float; ``int(interval(6, 42))`` -> int;
``interval(0, 0.99)`` -> uniform float; ``choice(a, b)`` -> categorical;
``range(1, 10, 2)`` -> stepped int (or float). A plain value fixes the key.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError


def parse_distribution(key: str, expression: str) -> optuna.distributions.BaseDistribution | Any:
    """One ``params:`` entry -> an Optuna distribution (or a fixed value)."""
    parser = OverridesParser.create()
    try:
        override = parser.parse_override(f"{key}={expression}")
    except Exception as err:
        raise ConfigError(
            f"hydra.sweeper.params.{key}={expression!r} is not valid override grammar "
            "(use interval(a,b), tag(log, interval(a,b)), int(interval(a,b)), choice(a,b,...), "
            f"range(a,b,step)): {str(err).splitlines()[0]}"
        ) from err
    value = override.value()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        low, high = value.start, value.end
        if not low < high or (log and low <= 0):
            raise ConfigError(
                f"hydra.sweeper.params.{key}={expression!r}: need low < high (and low > 0 for log)"
            )
        if isinstance(low, int) and isinstance(high, int):
            return optuna.distributions.IntDistribution(low, high, log=log)
        return optuna.distributions.FloatDistribution(float(low), float(high), log=log)
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        last = start + step * math.ceil((stop - start) / step - 1)  # Python range excludes stop
        if all(isinstance(v, int) for v in (start, stop, step)):
            return optuna.distributions.IntDistribution(start, int(last), step=step)
        return optuna.distributions.FloatDistribution(start, last, step=step)
    if override.is_sweep_override():
        raise ConfigError(f"hydra.sweeper.params.{key}={expression!r}: unsupported sweep type")
    return value


def parse_space(params: dict[str, Any] | None) -> dict[str, Any]:
    """All ``params:`` entries; values are distributions or fixed values."""
    if params is not None and not isinstance(params, dict):
        raise ConfigError(
            f"hydra.sweeper.params={params!r} is not a mapping; allowed: key: expression, "
            "e.g. {method.unlearning_rate: 'tag(log, interval(1e-5, 1e-2))'}"
        )
    return {key: parse_distribution(key, str(expr)) for key, expr in (params or {}).items()}


def _suggest(trial: optuna.Trial, key: str, dist: Any) -> Any:
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    return dist  # a fixed value


def suggest_overrides(trial: optuna.Trial, space: dict[str, Any]) -> list[str]:
    """Ask the trial for a value of every distribution; return ``key=value`` overrides."""
    overrides = []
    for key, dist in space.items():
        value = _suggest(trial, key, dist)
        overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    return overrides


_ABSENT = object()


def _ends(dist: Any) -> list[tuple[str, Any]]:
    """The values a distribution can reach at its extremes (every choice of a categorical)."""
    if isinstance(
        dist, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)
    ):
        return [("lower end", dist.low), ("upper end", dist.high)]
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return [("choice", choice) for choice in dist.choices]
    return [("value", dist)]


def check_space(cfg: DictConfig, space: dict[str, Any]) -> None:
    """Fail at study start, not in every trial: each key must exist in the composed config
    (``+key`` adds one), and each range's ends must pass the config checks on their own.

    Only the ends are checked (and each key alone): an interior value can still be refused by
    its trial, e.g. an odd pass count in an integer range.
    """
    from mudman.config import validate_config

    task = OmegaConf.to_container(cfg, resolve=False)  # the task's keys; Hydra's are not checked
    task.pop("hydra", None)
    for key, dist in space.items():
        if key.startswith(("+", "~")):
            continue
        current = OmegaConf.select(cfg, key, default=_ABSENT)
        if current is _ABSENT:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            keys = list(node.keys()) if OmegaConf.is_dict(node) else []
            near = difflib.get_close_matches(leaf, [str(k) for k in keys], n=3)
            hint = (
                f"did you mean {', '.join(f'{parent}.{k}'.lstrip('.') for k in near)}?"
                if near
                else "an existing key, or +key to add one"
            )
            raise ConfigError(
                f"hydra.sweeper.params.{key}: no such key in the config; allowed: {hint}"
            )
        if OmegaConf.is_config(current):
            continue  # a config group (method=choice(a,b)): composed per trial
        trial_cfg = OmegaConf.create(task)
        for end, value in _ends(dist):
            OmegaConf.update(trial_cfg, key, value, merge=False)
            try:
                validate_config(trial_cfg)
            except ConfigError as err:
                raise ConfigError(
                    f"hydra.sweeper.params.{key}: its {end} {value!r} is not allowed: {err}"
                ) from err
