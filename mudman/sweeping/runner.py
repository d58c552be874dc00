"""The worker loop of one study: exact trial totals, pruning, failures, orphans, resume.

Semantics (see README "Sweeps"):
- ``n_trials`` is the study's total of *valid outcomes* (COMPLETE + PRUNED). Re-running the same
  command after a kill runs only what is missing; several workers on one storage share the work.
- A rejected trial (retain budget, non-finite loss) is told as PRUNED, so samplers treat it as a
  bad region; a crashing trial is told as FAIL with its traceback logged, and the loop goes on
  until more than ``max_failure_rate`` of finished trials failed.
- A trial left RUNNING by a killed worker stops sending heartbeats; after ``grace_period`` it is
  marked FAIL and re-enqueued with the same parameters (redone once per kill, up to 3 times).
- Every valid trial is a distinct sample: parameters are suggested under the study lock, with
  the sampler seeded from the trial's number (unique in the study, whatever the number of
  processes or kills), and a parameter set the study already holds (COMPLETE, PRUNED or
  RUNNING) is never evaluated again: that trial is closed as FAIL (``failure: duplicate``)
  and another one is asked for. Only an orphan's deliberate redo re-uses its parameters.
- Ctrl-C (SIGINT) marks the running trial FAIL (``failure: interrupted``) and re-enqueues its
  parameters, so the next run redoes it at once instead of waiting for ``grace_period``.
- The study's recorded experiment (see :mod:`mudman.sweeping.fingerprint`) is written once,
  when the study is created; opening it with another experiment is refused.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.redaction import mask_url, redact_text
from mudman.sweeping.fingerprint import describe_differences, differences
from mudman.sweeping.space import suggest_overrides
from mudman.sweeping.storage import study_lock

log = logging.getLogger(__name__)

VALID = (TrialState.COMPLETE, TrialState.PRUNED)
PROCESS = f"{socket.gethostname()}:{os.getpid()}"
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
    # trial number -> the sampler that proposes it (a seeded one: a resume continues the
    # sequence); None: ``sampler`` proposes every trial
    sampler_for: Callable[[int], optuna.samplers.BaseSampler] | None = None
    experiment: dict[str, Any] | None = None  # what the trials depend on (fingerprint.py)
    fingerprint: str | None = None
    allow_config_change: bool = False  # hydra.sweeper.allow_config_change
    max_duplicate_proposals: int = 50  # then the sampler is stuck: stop with a clear message


class SweepInterrupted(Exception):  # noqa: N818 - an event, not an error
    """Ctrl-C during a trial: the trial is marked for an immediate redo; exit code 130."""


class WorkersFailed(Exception):  # noqa: N818 - reported as one line, not a traceback
    """Every worker of a sweep died or crashed; the storage keeps what they finished (exit 1)."""


def check_worker_exits(codes: list[int], logs: list[Path]) -> None:
    """Warn about each worker that did not exit 0; fail only when none did.

    A worker exits 0 only once its studies hold ``n_trials`` valid trials, so one clean exit
    means every study is full (the survivors redid the orphans of the others).
    """
    failed = [i for i, code in enumerate(codes) if code]
    for worker in failed:
        log.warning(
            "worker %d exited with code %d (%s); its log: %s",
            worker,
            codes[worker],
            "killed by a signal" if codes[worker] < 0 else "crashed",
            logs[worker],
        )
    if failed and len(failed) == len(codes):
        tail = [line for line in logs[0].read_text(errors="replace").splitlines() if line][-3:]
        raise WorkersFailed(
            f"all {len(codes)} sweep workers failed (exit codes {codes}); what they finished "
            f"is in the storage and the same command resumes it. End of {logs[0]}: "
            + " | ".join(tail)
        )
    log_survivors(len(codes) - len(failed), len(codes))


def log_survivors(finished: int, total: int) -> None:
    """When some workers were lost, say that the others completed the studies."""
    if finished < total:
        log.warning(
            "%d of %d workers finished every study (exact totals; trials orphaned by the "
            "others were redone)",
            finished,
            total,
        )


def open_study(spec: StudySpec) -> optuna.Study:
    """Create or load the study; refuse one that holds another experiment (before any trial).

    Under the study lock, so two commands starting at once cannot both record their config.
    """
    bad = [d for d in spec.directions if d not in ("maximize", "minimize")]
    if bad or not spec.directions:
        raise ConfigError(
            f"hydra.sweeper.direction={spec.directions!r}; allowed: maximize, minimize"
        )
    with study_lock(spec.storage_url, spec.name):
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
        _check_experiment(study, spec)
    return study


def _ways_out(spec: StudySpec) -> str:
    return (
        f"either give this experiment its own study (hydra.sweeper.study_name={spec.name}-2, or "
        "put {fingerprint} in the name), or continue this study with the change on purpose "
        "(hydra.sweeper.allow_config_change=true)"
    )


def _check_experiment(study: optuna.Study, spec: StudySpec) -> None:
    """Record the experiment on a new study; on an existing one, compare fingerprints."""
    attrs = study.user_attrs
    stored = attrs.get("fingerprint")
    if spec.fingerprint is None:  # a caller without an experiment (tests of the loop)
        if not attrs:
            for key, value in spec.attrs.items():
                study.set_user_attr(key, value)
        return
    n_trials = len(study.get_trials(deepcopy=False))
    if stored is None and n_trials == 0:  # a new study: its record, written once
        for key, value in spec.attrs.items():
            study.set_user_attr(key, value)
        study.set_user_attr("experiment", spec.experiment)
        study.set_user_attr("fingerprint", spec.fingerprint)
        return
    accepted = [stored, *(c.get("fingerprint") for c in attrs.get("config_changes") or [])]
    if spec.fingerprint in accepted:
        return  # the same experiment (or one already accepted on purpose): resume
    where = f"study {spec.name!r} in {mask_url(spec.storage_url)}"
    if stored is None:
        what = (
            f"{where} holds {n_trials} trials but no experiment fingerprint (recorded by an "
            "older mudman), so it cannot be checked that they ran this experiment"
        )
        diffs: list[tuple[str, Any, Any]] = []
    else:
        diffs = differences(attrs.get("experiment") or {}, spec.experiment or {})
        what = (
            f"{where} holds another experiment (fingerprint {stored[:12]}, this run "
            f"{spec.fingerprint[:12]}); differing keys: {describe_differences(diffs)}"
        )
    if not spec.allow_config_change:
        raise ConfigError(f"{what}; {_ways_out(spec)}")
    changes = list(attrs.get("config_changes") or [])
    changes.append(
        {
            "fingerprint": spec.fingerprint,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "first_trial": n_trials,
            "differences": [[k, repr(a), repr(b)] for k, a, b in diffs],
            "experiment": spec.experiment,
        }
    )
    study.set_user_attr("config_changes", changes)
    if stored is None:
        study.set_user_attr("experiment", spec.experiment)
        study.set_user_attr("fingerprint", spec.fingerprint)
    log.warning("%s; continued (hydra.sweeper.allow_config_change=true)", what)


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


def _held_params(study: optuna.Study, exclude: int) -> dict[tuple, int]:
    """Parameter sets the study holds (COMPLETE, PRUNED, RUNNING) -> the trial holding each."""
    held = {}
    for other in study.get_trials(deepcopy=False, states=(*VALID, TrialState.RUNNING)):
        if other.number != exclude and other.params:
            held.setdefault(params_key(other.params), other.number)
    return held


def params_key(params: dict[str, Any]) -> tuple:
    """A hashable, order-independent form of a trial's parameters."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _next_trial(
    study: optuna.Study, spec: StudySpec
) -> tuple[optuna.Trial, list[str]] | bool | None:
    """Under the study lock: a new trial with its overrides, ``None`` when the study is full,
    ``False`` to wait. Its parameters are suggested here, so concurrent workers (and TPE's
    constant liar) see them, and none repeats a parameter set the study already holds."""
    with study_lock(spec.storage_url, spec.name):
        optuna.storages.fail_stale_trials(study)  # orphans -> FAIL, re-enqueued as WAITING
        for _attempt in range(spec.max_duplicate_proposals):
            counts = _counts(study)
            done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
            running = counts[TrialState.RUNNING]
            if done + running >= spec.n_trials:
                return False if running and done < spec.n_trials else None
            seed_number = sum(counts.values())  # the next trial's number: unique in the study
            if spec.sampler_for is not None:
                study.sampler = spec.sampler_for(seed_number)
            trial = study.ask()
            # a first heartbeat at once: a worker killed before its first beat must still be
            # recognisable as an orphan (trials without any heartbeat are never marked stale)
            spec.storage.record_heartbeat(trial._trial_id)
            overrides = suggest_overrides(trial, spec.space)
            if spec.sampler_for is not None:
                trial.set_user_attr("sampler_seed_offset", seed_number)
            trial.set_user_attr("process", PROCESS)  # who ran it: host and pid
            params = study._storage.get_trial(trial._trial_id).params
            holder = _held_params(study, trial.number).get(params_key(params)) if params else None
            if holder is None:
                return trial, overrides
            trial.set_user_attr("failure", "duplicate")
            trial.set_user_attr("duplicate_of", holder)
            study.tell(trial, state=TrialState.FAIL)
            log.info(
                "trial %d: parameters of trial %d proposed again; asking anew", trial.number, holder
            )
        raise RuntimeError(
            f"study {spec.name!r}: the sampler proposed {spec.max_duplicate_proposals} parameter "
            "sets in a row that the study already holds; the search space is (nearly) exhausted: "
            "widen hydra.sweeper.params or lower hydra.sweeper.n_trials"
        )


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
        trial, overrides = trial
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(spec.storage, trial, stop, heartbeat_interval), daemon=True
        )
        beat.start()
        try:
            outcome = trial_fn(overrides, trial.number)
        except KeyboardInterrupt:
            stop.set()
            _interrupted(study, trial)
            raise SweepInterrupted(
                f"interrupted: trial {trial.number} of study {spec.name!r} is marked for an "
                "immediate redo; run the same command to resume"
            ) from None
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


def _interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C: FAIL the running trial and re-enqueue its parameters for the next run."""
    try:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return
        params = study._storage.get_trial(trial._trial_id).params
        trial.set_user_attr("failure", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        if params:
            study.enqueue_trial(params, user_attrs={"redo_of": trial.number})
    except Exception as err:  # the storage is gone too: the heartbeat grace path remains
        log.warning("could not mark trial %d as interrupted: %s", trial.number, err)


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
