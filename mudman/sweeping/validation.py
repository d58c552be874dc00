"""The sweeper's own keys, checked before any storage is touched or study created.

Each message names the key, the value and what is allowed: a typo in ``n_trials`` must not
become an empty study that exits 0, nor a ``grace_period`` below the heartbeat interval turn
every healthy trial into an "orphan" that is redone.
"""

from __future__ import annotations

import re
from typing import Any

from mudman.errors import ConfigError

#: study names become ``sweep.study_name=<name>`` overrides and run-dir names: no spaces, no
#: slashes, no characters Hydra's override grammar reads as syntax
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
FINGERPRINT_TOKEN = "{fingerprint}"


def _integer(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"hydra.sweeper.{key}={value!r}; allowed: an integer >= {low}")
    return value


def _number(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"hydra.sweeper.{key}={value!r}; allowed: a number in [{low}, {high}]")
    return float(value)


def check_study_name(name: Any) -> str:
    """Letters, digits and ``._+-`` (``{fingerprint}`` is replaced before this check)."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise ConfigError(
            f"hydra.sweeper.study_name={name!r}; allowed: 1-200 ASCII letters, digits and "
            "'._+-', starting with a letter or digit (no spaces, '/', or other characters), "
            f"optionally with {FINGERPRINT_TOKEN} for the experiment's fingerprint"
        )
    return name


def study_name_for(template: Any, fingerprint: str) -> str:
    """The study's name: ``{fingerprint}`` replaced by the experiment's first 8 hex digits
    (each experiment then gets a study of its own), then checked."""
    return check_study_name(str(template).replace(FINGERPRINT_TOKEN, fingerprint[:8]))


def check_sweeper(sweeper: Any) -> None:
    """``n_trials``, ``n_jobs``, ``worker_id``, ``max_failure_rate``, ``heartbeat_interval``,
    ``grace_period`` (at least twice the heartbeat interval), ``allow_config_change``."""
    _integer("n_trials", sweeper.get("n_trials"), 1)
    _integer("n_jobs", sweeper.get("n_jobs", 1), 1)
    _integer("worker_id", sweeper.get("worker_id") or 0, 0)
    _number("max_failure_rate", sweeper.get("max_failure_rate"), 0.0, 1.0)
    beat = _integer("heartbeat_interval", sweeper.get("heartbeat_interval"), 1)
    grace = sweeper.get("grace_period")
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 2 * beat:
        raise ConfigError(
            f"hydra.sweeper.grace_period={grace!r} with heartbeat_interval={beat}; allowed: an "
            f"integer >= 2 * heartbeat_interval = {2 * beat} (seconds without a heartbeat before "
            "a running trial counts as orphaned: shorter marks healthy trials as orphans)"
        )
    allow = sweeper.get("allow_config_change", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"hydra.sweeper.allow_config_change={allow!r}; allowed: true or false")


def check_trial_count(n_trials: int, params: dict[str, Any], has_distribution: bool) -> None:
    """A search space whose entries are all fixed values cannot give ``n_trials`` samples."""
    if params and not has_distribution and n_trials > 1:
        raise ConfigError(
            f"hydra.sweeper.n_trials={n_trials} but hydra.sweeper.params={params} holds no "
            "distribution, so every trial would be the same; allowed: n_trials=1, or at least "
            "one entry such as interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), "
            "choice(a, b) or range(a, b, step)"
        )


def distinct_parameter_sets(space: dict[str, Any]) -> int | None:
    """How many distinct parameter sets a space holds (``None``: unbounded, a float range)."""
    import optuna

    total = 1
    for dist in space.values():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            total *= len(dist.choices)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            total *= (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, optuna.distributions.FloatDistribution):
            if dist.step is None:
                return None
            total *= round((dist.high - dist.low) / dist.step) + 1
    return total


def check_space_size(n_trials: int, space: dict[str, Any]) -> None:
    """Every valid trial is a distinct sample: a finite space must hold ``n_trials`` of them."""
    size = distinct_parameter_sets(space)
    if size is not None and size < n_trials:
        raise ConfigError(
            f"hydra.sweeper.n_trials={n_trials}, but hydra.sweeper.params holds only {size} "
            f"distinct parameter sets and no set is evaluated twice; allowed: n_trials <= {size},"
            " or a wider search space"
        )


def study_directions(cell_cfg: Any) -> list[str]:
    """The objective's directions; ``hydra.sweeper.direction``, if set, must agree with them."""
    from mudman.objectives import build_objective

    directions = build_objective(cell_cfg.objective).directions
    wanted = cell_cfg.hydra.sweeper.get("direction")
    if wanted is not None:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        if wanted != directions:
            raise ConfigError(
                f"hydra.sweeper.direction={wanted} contradicts objective={cell_cfg.objective.name}"
                f", which optimizes {directions}; leave hydra.sweeper.direction null"
            )
    return directions
