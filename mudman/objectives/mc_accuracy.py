"""The WMDP study's objective: multiple-choice accuracy after relearning (minimize), with a guard.

Every ``eval_every_passes`` unlearning passes both tasks are scored; the trial is pruned when
the guard (general capability, the paper's MMLU without bio/health subjects at temperature 1)
drops below its untouched-model value minus ``guard_allowance`` (1 pp in the paper). After the
relearning attack, the target (WMDP-bio, temperature 0 accuracy) is the objective. With
``multi_objective`` the study optimizes (guard after unlearning, maximize) and (target after
relearning, minimize) and reports a Pareto front.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mudman.cache_keys import cache_key, config_json
from mudman.data.batching import tokenizer_fingerprint
from mudman.data.digests import read_cached_json
from mudman.errors import ConfigError, TrialRejected
from mudman.evaluation.evaluator import MultipleChoiceEvaluator
from mudman.evaluation.metrics import metric_names
from mudman.evaluation.questions import check_scoring
from mudman.evaluation.tasks import load_task
from mudman.objectives.base import OBJECTIVES, Objective
from mudman.results import write_json_atomic

ROLES = ("target", "guard")
_TASKS: dict[str, Any] = {}  # loaded and tokenized once per process: a sweep worker reuses
_EVALUATORS: dict[str, Any] = {}


def _task(spec: DictConfig, cache_dir: str | None, role: str):
    key = json.dumps([OmegaConf.to_container(spec, resolve=True), cache_dir], sort_keys=True)
    if key not in _TASKS:
        _TASKS[key] = load_task(spec, cache_dir, key=f"objective.{role}")
    return _TASKS[key]


def _evaluator(
    spec: DictConfig, tokenizer, device: torch.device, cache_dir, batch_size: int, role: str
):
    key = cache_key(config_json(spec), tokenizer_fingerprint(tokenizer), device, batch_size)
    if key not in _EVALUATORS:
        task = _task(spec, cache_dir, role)
        _EVALUATORS[key] = MultipleChoiceEvaluator(task, tokenizer, device, batch_size)
    return _EVALUATORS[key]


@OBJECTIVES.register("mc_accuracy")
class MultipleChoiceAccuracy(Objective):
    def validate(self) -> None:
        super().validate()
        c = self.cfg
        for role in ROLES:
            if not isinstance(c.get(role), DictConfig):
                raise ConfigError(
                    f"objective.{role} is not set; pick a task from conf/eval/, e.g. "
                    f"eval@objective.{role}=mmlu_no_bio"
                )
        for key, role in (("metric", "target"), ("guard_metric", "guard")):
            scoring = check_scoring(c[role].get("scoring", "letters"), f"objective.{role}.scoring")
            allowed = metric_names(scoring)
            if c.get(key) not in allowed:
                raise ConfigError(
                    f"objective.{key}={c.get(key)!r} for objective.{role}={c[role].get('name')} "
                    f"(scoring {scoring}); allowed: {', '.join(allowed)}"
                )
        every = c.get("eval_every_passes")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"objective.eval_every_passes={every!r} must be an integer >= 1")
        allowance = c.get("guard_allowance")
        if not isinstance(allowance, (int, float)) or isinstance(allowance, bool) or allowance < 0:
            raise ConfigError(f"objective.guard_allowance={allowance!r} must be a number >= 0")
        base = c.get("guard_base")
        if base is not None and not (isinstance(base, (int, float)) and 0 <= base <= 1):
            raise ConfigError(f"objective.guard_base={base!r}: null (measure) or in [0, 1]")
        self.probe_every_passes = every
        self.guard_limit: float | None = None

    @property
    def names(self) -> list[str]:
        target = f"{self.cfg.target.name}_{self.cfg.metric}_after_relearning"
        if not self.cfg.get("multi_objective"):
            return [target]
        return [f"{self.cfg.guard.name}_{self.cfg.guard_metric}_after_unlearning", target]

    @property
    def directions(self) -> list[str]:
        if not self.cfg.get("multi_objective"):
            return [str(self.cfg.direction)]
        return ["maximize", str(self.cfg.direction)]

    def prepare(
        self,
        tokenizer,
        device: torch.device,
        cache_dir: str | None,
        untouched_key: str | None = None,
    ) -> None:
        self.start_cache = None
        if cache_dir and untouched_key:
            digest = cache_key(untouched_key, config_json(self.cfg), length=20)
            self.start_cache = Path(cache_dir).expanduser() / "baselines" / f"mc-{digest}.json"
        batch = int(self.cfg.get("batch_size", 16))
        self.evaluators = {
            role: _evaluator(self.cfg[role], tokenizer, device, cache_dir, batch, role)
            for role in ROLES
        }

    def check_inputs(self, cache_dir: str | None) -> None:
        """Both task files load, parse and pass their filters: bad input fails before a model
        loads (the loaded tasks are kept for the trial)."""
        for role in ROLES:
            _task(self.cfg[role], cache_dir, role)

    def measure(self, model) -> dict[str, float]:
        """Both metrics of both tasks, named ``<role>/<metric>``."""
        return {
            f"{role}/{metric}": value
            for role, evaluator in self.evaluators.items()
            for metric, value in evaluator(model).items()
        }

    def start(self, model) -> dict[str, float]:
        """Both tasks on the untouched model: measured once, then read from the cache."""
        values = read_cached_json(self.start_cache) if self.start_cache is not None else None
        if values is None:
            values = self.measure(model)
            if self.start_cache is not None:
                write_json_atomic(values, self.start_cache)
        self.history = [(0, values)]
        base = self.cfg.get("guard_base")
        base = values[f"guard/{self.cfg.guard_metric}"] if base is None else float(base)
        self.guard_limit = base - float(self.cfg.guard_allowance)
        return values

    def probe(self, model, passes: int) -> dict[str, float]:
        values = self.measure(model)
        self.history.append((passes, values))
        guard = values[f"guard/{self.cfg.guard_metric}"]
        if self.guard_limit is not None and guard < self.guard_limit:
            raise TrialRejected(
                f"guard {self.cfg.guard.name} {self.cfg.guard_metric} {guard:.4f} < "
                f"limit {self.guard_limit:.4f}",
                passes,
                values,
            )
        return values

    def score(self, model, relearn_curve: list[tuple[int, float]]) -> dict[str, float]:
        values = self.measure(model)
        return {"objective": values[f"target/{self.cfg.metric}"], **values}

    def values(self, record: dict[str, Any]) -> list[float]:
        if not self.cfg.get("multi_objective"):
            return [record["objective"]]
        after_unlearning = self.history[-1][1]
        return [after_unlearning[f"guard/{self.cfg.guard_metric}"], record["objective"]]
