"""Writing a trial's results atomically, and showing them (the schema: mudman/record.py)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mudman.record import TrialRecord


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (thread-safe)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # briefly set (restrictive, never looser) and restore
    os.umask(mask)
    return mask


def write_json_atomic(record: dict[str, Any], path: Path) -> None:
    """Write via a temp file + fsync + rename: a kill or crash never leaves a partial file.

    Readers see the old file or the new one, never a mix. ``mkstemp`` creates files readable by
    the owner only; the usual umask-based mode is restored. A failed write (disk full) removes
    its temp file and re-raises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def process_memory() -> dict[str, float | None]:
    """This process's resident memory now and at its peak (MiB): a sweep's memory must stay flat."""
    import resource

    try:  # Linux; elsewhere only the peak is known
        with open("/proc/self/statm") as handle:
            rss = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        rss = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"rss_mb": None if rss is None else round(rss, 1), "peak_rss_mb": round(peak, 1)}


OBJECTIVE_MEANINGS = {"forget_loss": " (min forget loss during relearning)"}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _gain(value: float | None, base: float | None, better: str) -> float | None:
    if value is None or base is None:
        return None
    return value - base if better == "higher" else base - value


def attack_lines(record: TrialRecord, better: str) -> list[str]:
    """One line per attack of a suite: its value, the baseline's under the same attack and the
    gain; the worst case (the objective) is marked."""
    baseline = record.baseline_attack_values
    attacks = record.attacks or []
    rows = [("attack", "value", "baseline", "gain", "")]
    for entry in attacks:
        base = baseline.get(entry["label"])
        gain = _gain(entry.get("value"), base, better)
        worst = "<- worst case" if entry["label"] == record.worst_attack else ""
        rows.append(
            (
                entry["label"],
                _fmt(entry.get("value")),
                _fmt(base),
                "-" if gain is None else f"{gain:+.4f}",
                worst,
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        f"attacks ({len(attacks)}, each from the same unlearned weights, "
        f"{attacks[0].get('passes', '?')} passes each; the objective is the "
        "worst case):"
    ]
    lines += ["  " + "  ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return lines


def format_table(results: dict[str, Any]) -> str:
    """A short human summary of a results record: losses per phase, the objective and the
    baseline."""
    record = TrialRecord.from_json(results)
    losses = record.losses or {}
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
    lines.append(f"retain loss limit (initial + budget): {_fmt(record.retain_loss_limit)}")
    if record.status == "rejected":
        lines.append(
            f"REJECTED: {record.rejection.reason} (after {record.rejection.passes} passes)"
        )
    evaluations = record.evaluations or []
    if evaluations:
        keys = list(evaluations[0][1])
        lines.append("multiple-choice evaluations (passes: " + ", ".join(keys) + "):")
        for passes, values in evaluations:
            lines.append(f"  {passes:>5}: " + "  ".join(_fmt(values.get(k)) for k in keys))
    better = "higher" if (record.direction or "maximize") == "maximize" else "lower"
    if record.status != "rejected":
        for name, value in (record.objectives or {"objective": record.objective}).items():
            meaning = OBJECTIVE_MEANINGS.get(name, "")
            lines.append(f"objective {name}{meaning}: {_fmt(value)}")
        lines[-1] += f" ({better} = more robust unlearning)"
    attacks = record.attacks or []
    if len(attacks) > 1:
        lines.extend(attack_lines(record, better))
    if record.baseline:
        base = record.baseline_objective
        several = len(attacks) > 1 or len(record.baseline.get("attacks") or []) > 1
        same = "same attacks, worst case" if several else "same relearning"
        line = f"baseline ({same}, no unlearning): {_fmt(base)}"
        if record.objective is not None:
            gain = record.objective - base if better == "higher" else base - record.objective
            line += f"   gain over baseline: {gain:+.4f} (positive = more robust)"
        lines.append(line)
    timings = record.timings or {}
    lines.append(
        "time: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in timings.items())
    )
    return "\n".join(lines)
