"""The worker loop of one study: exact trial totals, pruning, failures, orphans, resume.

Semantics (see README "Sweeps"):
- ``n_trials`` is the study's total of *valid outcomes* (COMPLETE + PRUNED). Re-running the same
  command after a kill runs only what is missing; several workers on one storage share the work.
- A rejected trial (retain budget, non-finite loss) is told as PRUNED, so samplers treat it as a
  bad region; a crashing trial is told as FAIL with its traceback logged, and the loop goes on
  until more than ``max_failure_rate`` of finished trials failed.
- A trial left RUNNING by a killed worker stops sending heartbeats; after ``grace_period`` it is
  marked FAIL and re-enqueued with the same parameters (redone once per kill, up to 3 times).
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.redaction import redact_text
from mudman.sweeping.space import suggest_overrides
from mudman.sweeping.storage import study_lock

log = logging.getLogger(__name__)

VALID = (TrialState.COMPLETE, TrialState.PRUNED)
OOM_ERRORS = ("MemoryError", "OutOfMemoryError")  # host; torch.OutOfMemoryError (CUDA, MPS)


@dataclass
class TrialOutcome:
    """What one launched trial reported back."""

    status: str  # completed | rejected | failed
    value: float | list[float] | None = None  # a list for a multi-objective study
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None  # exception class name of a crash (MemoryError, ...)


TrialFn = Callable[[list[str], int], TrialOutcome]


@dataclass
class StudySpec:
    name: str
    storage_url: str
    storage: optuna.storages.BaseStorage
    directions: list[str]  # one per objective value (two for a multi-objective study)
    n_trials: int
    space: dict[str, Any]
    sampler: optuna.samplers.BaseSampler
    max_failure_rate: float = 0.25
    attrs: dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = 2.0


def open_study(spec: StudySpec) -> optuna.Study:
    bad = [d for d in spec.directions if d not in ("maximize", "minimize")]
    if bad or not spec.directions:
        raise ConfigError(
            f"hydra.sweeper.direction={spec.directions!r}; allowed: maximize, minimize"
        )
    study = optuna.create_study(
        study_name=spec.name,
        storage=spec.storage,
        sampler=spec.sampler,
        directions=spec.directions,
        load_if_exists=True,
    )
    existing = [d.name.lower() for d in study.directions]
    if existing != spec.directions:
        raise ConfigError(
            f"study {spec.name!r} exists with directions {existing}, but this run optimizes "
            f"{spec.directions} (objective or hydra.sweeper.direction changed: use a new "
            "hydra.sweeper.study_name)"
        )
    for key, value in spec.attrs.items():
        study.set_user_attr(key, value)
    return study


def _heartbeat(
    storage: optuna.storages.BaseStorage,
    trial: optuna.Trial,
    stop: threading.Event,
    interval: float,
) -> None:
    trial_id = trial._trial_id  # the storage-wide id that heartbeats are keyed by
    while not stop.wait(interval):
        storage.record_heartbeat(trial_id)


def _counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def _next_trial(study: optuna.Study, spec: StudySpec) -> optuna.Trial | bool | None:
    """Under the study lock: a new trial, ``None`` when the study is full, ``False`` to wait."""
    with study_lock(spec.storage_url, spec.name):
        optuna.storages.fail_stale_trials(study)  # orphans -> FAIL, re-enqueued as WAITING
        counts = _counts(study)
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        running = counts[TrialState.RUNNING]
        if done + running >= spec.n_trials:
            return False if running and done < spec.n_trials else None
        trial = study.ask()
        # a first heartbeat at once: a worker killed before its first beat must still be
        # recognisable as an orphan (trials without any heartbeat are never marked stale)
        spec.storage.record_heartbeat(trial._trial_id)
        return trial


def _check_failure_rate(study: optuna.Study, spec: StudySpec) -> None:
    counts = _counts(study)
    crashed = sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.user_attrs.get("failure") == "crash"
    )
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + crashed
    if crashed >= 2 and crashed > spec.max_failure_rate * finished:
        raise RuntimeError(
            f"study {spec.name!r}: {crashed} of {finished} trials crashed, more than "
            f"hydra.sweeper.max_failure_rate={spec.max_failure_rate}; see the tracebacks above"
        )


def run_study(spec: StudySpec, trial_fn: TrialFn, heartbeat_interval: float = 10.0) -> optuna.Study:
    """Fill the study up to ``spec.n_trials`` valid trials, sharing it with any other workers."""
    study = open_study(spec)
    while True:
        trial = _next_trial(study, spec)
        if trial is None:
            break
        if trial is False:  # others are still running the last trials: wait, maybe redo orphans
            time.sleep(spec.poll_seconds)
            continue
        overrides = suggest_overrides(trial, spec.space)
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(spec.storage, trial, stop, heartbeat_interval), daemon=True
        )
        beat.start()
        try:
            outcome = trial_fn(overrides, trial.number)
        except Exception as err:  # the launcher itself failed: still a crash of this trial
            outcome = TrialOutcome(
                "failed",
                error=redact_text(f"{type(err).__name__}: {err}"),
                error_type=type(err).__name__,
            )
        finally:
            stop.set()
            beat.join()
        release_memory(collect=outcome.status == "failed")
        _tell(study, trial, outcome)
        _check_failure_rate(study, spec)
    return study


def release_memory(collect: bool) -> None:
    """Between trials: return cached CUDA blocks and, after a crash, collect the cycles its
    traceback holds (frames -> model, activations), so a long sweep in one process keeps its
    memory flat, also after an OOM. A full collection costs ~0.1-0.5 s: only when needed."""
    if collect:
        gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def is_out_of_memory(outcome: TrialOutcome) -> bool:
    """A crash from exhausted host or device memory (``MemoryError``, ``torch.OutOfMemoryError``,
    or a backend's "out of memory" RuntimeError)."""
    return outcome.error_type in OOM_ERRORS or "out of memory" in (outcome.error or "").lower()


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    state = study._storage.get_trial(trial._trial_id).state
    if state.is_finished():
        # its heartbeat went stale while it ran (a frozen node, a suspended job): another
        # worker already failed and re-enqueued it; the redo will report, this one cannot
        log.warning(
            "trial %d finished here but was already marked %s as an orphan; its redo counts",
            trial.number,
            state.name,
        )
        return
    try:
        _tell_state(study, trial, outcome)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        if not study._storage.get_trial(trial._trial_id).state.is_finished():
            raise
        # marked stale by another worker between the check above and this report
        log.warning("trial %d was marked an orphan while reporting; its redo counts", trial.number)


def _tell_state(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    for key, value in outcome.attrs.items():
        trial.set_user_attr(key, value)
    value = outcome.value
    values = value if isinstance(value, list) else [value]
    finite = value is not None and all(v is not None and math.isfinite(v) for v in values)
    if outcome.status == "completed" and finite:
        study.tell(trial, value)
        log.info("trial %d: %s", trial.number, ", ".join(f"{v:.4f}" for v in values))
    elif outcome.status == "rejected" or (outcome.status == "completed" and value is not None):
        reason = outcome.attrs.get("rejection_reason") or f"non-finite objective {value}"
        trial.set_user_attr("rejection_reason", reason)
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d: pruned (%s)", trial.number, reason)
    else:
        reason = "out of memory" if is_out_of_memory(outcome) else "exception"
        trial.set_user_attr("failure", "crash")
        trial.set_user_attr("failure_reason", reason)
        trial.set_user_attr("error_type", outcome.error_type)
        trial.set_user_attr("error", (outcome.error or "")[-4000:])
        study.tell(trial, state=TrialState.FAIL)
        log.error("trial %d crashed (%s):\n%s", trial.number, reason, outcome.error)
