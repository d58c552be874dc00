"""A launched trial's outcome, as the study is told it: read back from its ``results.json``.

The record (mudman/record.py) decides which of its fields the Optuna trial stores; a failed
job's traceback is kept (redacted) so the summary and the report can say what broke.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from mudman.record import TrialRecord
from mudman.redaction import redact, redact_text
from mudman.sweeping.runner import TrialOutcome


def trial_attrs(record: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """The results.json fields stored on the Optuna trial (JSON-safe, no config copy)."""
    return TrialRecord.from_json(record).optuna_attrs(run_dir)


def outcome_of(result: JobReturn, directions: list[str]) -> TrialOutcome:
    """What a Hydra job returned: failed (with its traceback), rejected or completed (with
    the value, or values of a multi-objective study, and the record's attrs)."""
    if result.status == JobStatus.FAILED:
        err = result._return_value
        error_type = type(err).__name__
        error = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        del err, result  # the traceback holds the trial's tensors: let them go
        return TrialOutcome("failed", error=redact_text(error), error_type=error_type)
    run_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
    record = TrialRecord.read(run_dir / "results.json")
    status = "rejected" if record.status == "rejected" else "completed"
    value = record.optimized_values(len(directions))
    return TrialOutcome(status, value, redact(record.optuna_attrs(run_dir)))
