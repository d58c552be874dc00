"""The table of a plain multirun grid (Hydra's basic sweeper): one row per run's results.json.

Optuna studies are read from their storage (``tables.py``); a grid such as
``python -m mudman -m attack.lr=1e-3,1e-2 method=mudman,tar`` has no storage, only run dirs,
each with ``results.json`` and ``.hydra/overrides.yaml``. The columns are the overrides that
differ between runs, then what each run measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mudman.record import TrialRecord


@dataclass
class RunRow:
    run_dir: Path
    overrides: dict[str, str]
    record: TrialRecord


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(item.split("=", 1) for item in items if "=" in item)


def read_runs(root: Path) -> list[RunRow]:
    """Every run under ``root`` that wrote a results.json (unfinished runs have none)."""
    rows = []
    for path in sorted(root.rglob("results.json")):
        try:
            record = TrialRecord.read(path)
        except (OSError, ValueError):  # unreadable, or not a JSON object
            continue
        rows.append(RunRow(path.parent, _overrides(path.parent), record))
    return rows


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def runs_table(rows: list[RunRow]) -> str:
    """Markdown: the varying overrides (sorted, numbers numerically), status, objective, the
    relearn-only baseline, forget/retain loss after unlearning and the trial's seconds."""
    keys = sorted({k for r in rows for k in r.overrides})
    varying = [k for k in keys if len({r.overrides.get(k) for r in rows}) > 1 or len(rows) == 1]

    def order(row: RunRow) -> list[tuple[str, float | str]]:
        values = (_number(row.overrides.get(k, "")) for k in varying)
        return [(type(v).__name__, v) for v in values]

    rows = sorted(rows, key=order)
    head = [*varying, "status", "objective", "baseline", "forget after unl.", "retain after unl."]
    lines = ["| " + " | ".join([*head, "seconds"]) + " |", "|" + "---|" * (len(head) + 1)]
    for r in rows:
        rec = r.record
        after = (rec.losses or {}).get("after_unlearning") or {}
        status = rec.status or "-"
        if status == "rejected":
            status = f"rejected ({(rec.rejection and rec.rejection.reason) or '?'})"
        cells = [r.overrides.get(k, "-") for k in varying] + [
            status,
            _fmt(rec.objective),
            _fmt(rec.baseline_objective),
            _fmt(after.get("forget_loss")),
            _fmt(after.get("retain_loss")),
            _fmt((rec.timings or {}).get("total_s")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
