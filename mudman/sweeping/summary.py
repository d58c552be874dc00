"""What a sweep tells its user: progress while workers run, a summary when it ends.

The summary names, per study, how many trials completed, were pruned (rejected) or failed, the
best value with its parameters, where ``optimization_results.<study>.yaml`` lies, and the report
command to run next. With ``n_jobs > 1`` the parent process polls the storage and logs
"trials done / total" whenever it changed, instead of waiting in silence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mudman.redaction import mask_url

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///outputs/optuna.db"  # the sweeper's and the report's default
_REGEX_SPECIAL = set(".^$*+?{}[]\\|()")


@dataclass
class StudyState:
    """Trial counts of one study (from the storage) and its best result so far."""

    name: str
    n_trials: int | None  # the study's planned total of valid trials (None: not started yet)
    counts: dict[str, int] = field(default_factory=dict)  # COMPLETE, PRUNED, FAIL, RUNNING, ...
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    n_pareto: int | None = None  # multi-objective studies: size of the Pareto front

    @property
    def done(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def route_optuna_logging() -> None:
    """Optuna's own lines ("A new study created ...") through the project's handlers and format
    instead of Optuna's separate ``[I <time>]`` handler."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def study_state(study: Any) -> StudyState:
    """Counts and best trial of an ``optuna.Study`` (a study without a completed trial has none)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    planned = study.user_attrs.get("n_trials")
    state = StudyState(study.study_name, None if planned is None else int(planned), counts)
    if counts.get("COMPLETE"):
        if len(study.directions) > 1:
            state.n_pareto = len(study.best_trials)
        else:
            state.best_value = study.best_value
            state.best_params = dict(study.best_params)
    return state


def load_states(storage: Any, names: Sequence[str]) -> list[StudyState]:
    """The states of ``names`` in ``storage``; a study not created yet counts as empty."""
    import optuna

    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    return [
        study_state(optuna.load_study(study_name=name, storage=storage))
        if name in existing
        else StudyState(name, None)
        for name in names
    ]


def _regex(names: Sequence[str]) -> str:
    escaped = ["".join("\\" + c if c in _REGEX_SPECIAL else c for c in n) for n in names]
    return f"^{escaped[0]}$" if len(escaped) == 1 else f"^({'|'.join(escaped)})$"


def report_command(storage_url: str, names: Sequence[str]) -> str:
    """The ``python -m mudman.report`` command for these studies.

    The storage is left out when the report finds it by itself (the default, or the
    ``MUDMAN_OPTUNA_STORAGE`` it reads too), so a password never appears in the command.
    """
    parts = ["python -m mudman.report"]
    if storage_url not in (DEFAULT_STORAGE, os.environ.get("MUDMAN_OPTUNA_STORAGE")):
        parts.append(f"--storage {mask_url(storage_url)}")
    if names:
        parts.append(f"--studies '{_regex(names)}'")
    return " ".join(parts)


def _fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_lines(
    states: Sequence[StudyState], storage_url: str, results_dir: Path | None
) -> list[str]:
    """The end-of-sweep summary, one log line each."""
    studies = "1 study" if len(states) == 1 else f"{len(states)} studies"
    lines = [f"sweep summary: {studies} in {mask_url(storage_url)}"]
    for s in states:
        total = "?" if s.n_trials is None else s.n_trials
        line = (
            f"  {s.name}: {s.counts.get('COMPLETE', 0)} complete, {s.counts.get('PRUNED', 0)} "
            f"pruned, {s.counts.get('FAIL', 0)} failed ({s.done}/{total} valid)"
        )
        if s.n_pareto is not None:
            line += f"; Pareto front of {s.n_pareto} trials"
        elif s.best_value is not None:
            params = ", ".join(f"{k}={_fmt_value(v)}" for k, v in s.best_params.items())
            line += f"; best {s.best_value:.4f}" + (f" at {params}" if params else "")
        else:
            line += "; no completed trial"
        lines.append(line)
    if results_dir is not None:
        lines.append(f"best values and parameters: {results_dir}/optimization_results.*.yaml")
    lines.append(f"next: {report_command(storage_url, [s.name for s in states])}")
    return lines


def log_summary(states: Sequence[StudyState], storage_url: str, results_dir: Path | None) -> None:
    for line in summary_lines(states, storage_url, results_dir):
        log.info("%s", line)


def progress_line(states: Sequence[StudyState]) -> str:
    """``trials 7/20 (5 complete, 1 pruned, 1 failed, 4 running)`` over all studies."""
    known = [s.n_trials for s in states if s.n_trials is not None]
    total = str(sum(known)) + ("+" if len(known) < len(states) else "") if known else "?"

    def count(key: str) -> int:
        return sum(s.counts.get(key, 0) for s in states)

    done = sum(s.done for s in states)
    return (
        f"trials {done}/{total} ({count('COMPLETE')} complete, {count('PRUNED')} pruned, "
        f"{count('FAIL')} failed, {count('RUNNING')} running)"
        + (f" in {len(states)} studies" if len(states) > 1 else "")
    )


def watch_progress(
    finished: Callable[[], bool],
    read_states: Callable[[], list[StudyState]],
    interval: float = 10.0,
) -> None:
    """Until ``finished()``: every ``interval`` seconds log the progress line when it changed,
    and once more at the end (the final counts, also when the last trial ended between polls).

    A storage that cannot be read for a moment (a worker holds the SQLite write lock) is retried
    at the next poll; the workers are never disturbed by the parent's reads.
    """
    last = None

    def poll() -> None:
        nonlocal last
        try:
            line = progress_line(read_states())
        except Exception as err:  # progress is informative only; the workers decide
            line = f"progress unavailable this time ({type(err).__name__})"
        if line != last:
            log.info("%s", line)
            last = line

    while not finished():
        poll()
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not finished():
            time.sleep(min(0.5, interval))
    poll()


def write_optimization_results(study: Any, sweep_dir: Path) -> None:
    """``optimization_results.<study>.yaml`` in the sweep dir: the best value and parameters
    (or the Pareto front of a multi-objective study), as Hydra's Optuna sweeper writes them."""
    from omegaconf import OmegaConf

    sweep_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"study_name": study.study_name}
    if len(study.directions) > 1:
        results["pareto_front"] = [
            {"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials
        ]
    else:
        try:
            results.update(best_value=study.best_value, best_params=study.best_params)
        except ValueError:
            results["best_value"] = None  # no completed trial yet
    path = sweep_dir / f"optimization_results.{study.study_name}.yaml"
    OmegaConf.save(OmegaConf.create(results), path)


def summarize_from_storage(url: str, names: Sequence[str], sweep_dir: Path) -> None:
    """After the workers: the parent's own optimization_results.<study>.yaml and summary,
    read from the storage."""
    import optuna

    for name in names:
        with contextlib.suppress(KeyError):  # a study no worker created
            write_optimization_results(optuna.load_study(study_name=name, storage=url), sweep_dir)
    log_summary(load_states(url, names), url, sweep_dir)
