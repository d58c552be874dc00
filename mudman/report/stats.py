"""Per-study statistics as the paper reports them: mean and SEM of the last N valid trials."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState


@dataclass
class StudyStats:
    name: str
    model: str | None
    data: str | None
    method: str | None
    direction: str
    n_complete: int
    n_pruned: int
    n_failed: int
    n_running: int
    last_n: int
    mean: float | None
    sem: float | None
    best_value: float | None
    best_params: dict[str, Any] = field(default_factory=dict)
    baseline: float | None = None
    edge_warnings: list[str] = field(default_factory=list)


def mean_sem(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error (sample std / sqrt(n)); SEM is None below two values."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def edge_warnings(trial: optuna.trial.FrozenTrial, margin: float = 0.05) -> list[str]:
    """Parameters of the best trial within ``margin`` of their range's edge (log-aware)."""
    warnings = []
    for key, dist in trial.distributions.items():
        if not isinstance(
            dist, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)
        ):
            continue
        low, high, value = dist.low, dist.high, trial.params[key]
        if dist.log:
            low, high, value = math.log(low), math.log(high), math.log(value)
        if high <= low:
            continue
        position = (value - low) / (high - low)
        if position < margin or position > 1 - margin:
            side = "lower" if position < margin else "upper"
            warnings.append(
                f"{key}={trial.params[key]:.4g} sits at the {side} edge of "
                f"[{dist.low:.3g}, {dist.high:.3g}]: widen the range"
            )
    return warnings


def study_stats(study: optuna.Study, last_n: int = 30) -> StudyStats:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    complete = by_state[TrialState.COMPLETE]
    mean, sem = mean_sem([t.value for t in complete[-last_n:]])
    config = study.user_attrs.get("config") or {}
    best = None
    if complete:
        best = (max if study.direction.name == "MAXIMIZE" else min)(complete, key=lambda t: t.value)
    baselines = [t.user_attrs.get("baseline_objective") for t in complete]
    baselines = [b for b in baselines if b is not None]
    return StudyStats(
        name=study.study_name,
        model=(config.get("model") or {}).get("name"),
        data=(config.get("data") or {}).get("name"),
        method=(config.get("method") or {}).get("name"),
        direction=study.direction.name.lower(),
        n_complete=len(complete),
        n_pruned=len(by_state[TrialState.PRUNED]),
        n_failed=len(by_state[TrialState.FAIL]),
        n_running=len(by_state[TrialState.RUNNING]),
        last_n=min(last_n, len(complete)),
        mean=mean,
        sem=sem,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        baseline=baselines[0] if baselines else None,
        edge_warnings=edge_warnings(best) if best else [],
    )
