"""The markdown table of a set of studies."""

from __future__ import annotations

from mudman.report.stats import StudyStats


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[StudyStats]) -> str:
    """One row per study: mean ± SEM of the last N valid trials, best, counts, baseline."""
    lines = [
        "| study | model | data | method | mean ± SEM (last N) | N | best | baseline "
        "| complete | pruned | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean = "-" if r.mean is None else f"{r.mean:.3f} ± {_fmt(r.sem)}"
        lines.append(
            f"| {r.name} | {r.model or '-'} | {r.data or '-'} | {r.method or '-'} | {mean} "
            f"| {r.last_n} | {_fmt(r.best_value)} | {_fmt(r.baseline)} | {r.n_complete} "
            f"| {r.n_pruned} | {r.n_failed} |"
        )
    for r in rows:
        if r.pareto:
            lines += ["", f"Pareto front of {r.name} ({' / '.join(r.value_names)}):", ""]
            lines += ["| trial | " + " | ".join(r.value_names) + " | parameters |"]
            lines += ["|---|" + "---|" * len(r.value_names) + "---|"]
            for point in r.pareto:
                values = " | ".join(_fmt(v, 4) for v in point["values"])
                params = ", ".join(f"{k}={v:.3g}" for k, v in point["params"].items())
                lines.append(f"| {point['number']} | {values} | {params} |")
    repeats = [
        f"- {r.name}: {r.n_repeats} COMPLETE trials repeat an earlier trial's parameters; "
        "N and mean ± SEM count each parameter set once"
        for r in rows
        if r.n_repeats
    ]
    if repeats:
        lines += ["", "Repeated samples (not counted):", *repeats]
    warnings = [f"- {r.name}: {w}" for r in rows for w in r.edge_warnings]
    if warnings:
        lines += ["", "Search-range warnings (best trial at a range edge):", *warnings]
    return "\n".join(lines)
