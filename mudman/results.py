"""Writing and showing a trial's results."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(record: dict[str, Any], path: Path) -> None:
    """Write via a temp file + rename, so a kill never leaves a half-written results.json.

    ``mkstemp`` creates files readable by the owner only; restore the usual umask-based mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


OBJECTIVE_MEANINGS = {"forget_loss": " (min forget loss during relearning)"}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(record: dict[str, Any]) -> str:
    """A short human summary: losses per phase, the objective and the baseline."""
    losses = record.get("losses", {})
    rows = [("phase", "forget loss", "retain loss")]
    for phase in ("initial", "after_unlearning", "after_relearning"):
        if phase in losses:
            values = losses[phase]
            rows.append(
                (
                    phase.replace("_", " "),
                    _fmt(values.get("forget_loss")),
                    _fmt(values.get("retain_loss")),
                )
            )
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    lines.append(f"retain loss limit (initial + budget): {_fmt(record.get('retain_loss_limit'))}")
    if record["status"] == "rejected":
        lines.append(
            f"REJECTED: {record['rejection']['reason']} "
            f"(after {record['rejection']['passes']} passes)"
        )
    evaluations = record.get("evaluations") or []
    if evaluations:
        keys = list(evaluations[0][1])
        lines.append("multiple-choice evaluations (passes: " + ", ".join(keys) + "):")
        for passes, values in evaluations:
            lines.append(f"  {passes:>5}: " + "  ".join(_fmt(values.get(k)) for k in keys))
    better = "higher" if record.get("direction", "maximize") == "maximize" else "lower"
    if record["status"] != "rejected":
        for name, value in (record.get("objectives") or {"objective": record["objective"]}).items():
            meaning = OBJECTIVE_MEANINGS.get(name, "")
            lines.append(f"objective {name}{meaning}: {_fmt(value)}")
        lines[-1] += f" ({better} = more robust unlearning)"
    if record.get("baseline"):
        base = record["baseline"]["objective"]
        line = f"baseline (same relearning, no unlearning): {_fmt(base)}"
        if record["objective"] is not None:
            line += f"   gain over baseline: {record['objective'] - base:+.4f}"
        lines.append(line)
    timings = record.get("timings", {})
    lines.append(
        "time: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in timings.items())
    )
    return "\n".join(lines)
