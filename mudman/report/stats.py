"""Per-study statistics as the paper reports them: mean and SEM of the last N valid trials."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from mudman.record import TrialRecord


@dataclass
class StudyStats:
    name: str
    model: str | None
    data: str | None
    method: str | None
    direction: str  # of the primary value (the last one in a multi-objective study)
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
    objective: str = "forget loss after relearning"  # what the values are, for axis labels
    value_names: list[str] = field(default_factory=list)  # one per value (multi-objective)
    pareto: list[dict[str, Any]] = field(default_factory=list)  # multi-objective front
    n_repeats: int = 0  # COMPLETE trials repeating an earlier trial's parameters: not counted
    baseline_values: list[float] = field(default_factory=list)  # distinct, as trials recorded


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


def objective_label(config: dict[str, Any]) -> str:
    """What a study's primary value measures, from its stored config."""
    objective = config.get("objective") or {}
    if objective.get("name") == "mc_accuracy":
        target = (objective.get("target") or {}).get("name", "target")
        return f"{target} {objective.get('metric', 'accuracy')} after relearning"
    return "forget loss after relearning"


def distinct_samples(
    trials: list[optuna.trial.FrozenTrial],
) -> tuple[list[optuna.trial.FrozenTrial], int]:
    """The first trial of each parameter set, and how many later ones repeated one.

    A repeat is not an independent sample (a study written before mudman refused them): mean
    and SEM over copies would claim more certainty than the study has."""
    seen, kept = set(), []
    for trial in trials:
        key = tuple(sorted((k, repr(v)) for k, v in trial.params.items()))
        if key in seen and trial.params:
            continue
        seen.add(key)
        kept.append(trial)
    return kept, len(trials) - len(kept)


def study_stats(study: optuna.Study, last_n: int = 30) -> StudyStats:
    """Mean ± SEM of the last N distinct completed trials' primary value (the objective after
    relearning; the last value of a multi-objective study), best trial, counts, Pareto front."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    complete, repeats = distinct_samples(by_state[TrialState.COMPLETE])
    failed = [t for t in by_state[TrialState.FAIL] if t.user_attrs.get("failure") != "duplicate"]
    directions = [d.name.lower() for d in study.directions]
    primary = [t.values[-1] for t in complete]
    mean, sem = mean_sem(primary[-last_n:])
    config = study.user_attrs.get("config") or {}
    best = None
    if complete:
        pick = max if directions[-1] == "maximize" else min
        best = pick(complete, key=lambda t: t.values[-1])
    pareto = []
    if len(directions) > 1 and complete:
        pareto = [
            {"number": t.number, "values": list(t.values), "params": dict(t.params)}
            for t in sorted(study.best_trials, key=lambda t: t.values[0])
        ]
    names = (TrialRecord.from_attrs(complete[0].user_attrs).objectives or {}) if complete else {}
    baselines = [TrialRecord.from_attrs(t.user_attrs).baseline_objective for t in complete]
    baselines = [b for b in baselines if b is not None]
    recorded = [
        TrialRecord.from_attrs(t.user_attrs).baseline_objective
        for t in by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    ]
    return StudyStats(
        name=study.study_name,
        model=(config.get("model") or {}).get("name"),
        data=(config.get("data") or {}).get("name"),
        method=(config.get("method") or {}).get("name"),
        direction=directions[-1],
        n_complete=len(complete),
        n_pruned=len(by_state[TrialState.PRUNED]),
        n_failed=len(failed),
        n_running=len(by_state[TrialState.RUNNING]),
        last_n=min(last_n, len(complete)),
        mean=mean,
        sem=sem,
        best_value=best.values[-1] if best else None,
        best_params=dict(best.params) if best else {},
        baseline=baselines[0] if baselines else None,
        edge_warnings=edge_warnings(best) if best else [],
        objective=objective_label(config),
        value_names=list(names) or [f"value {i}" for i in range(len(directions))],
        pareto=pareto,
        n_repeats=repeats,
        baseline_values=sorted({b for b in recorded if b is not None}),
    )
