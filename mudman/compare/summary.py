"""A comparison's result: per method its search, its best rate, and mean ± SEM over seeds.

Gains are paired: on each seed, the method's objective minus the baseline's on the same data
(sign flipped for a minimized objective, so positive = more robust), then mean ± SEM of those
differences. A re-run that was rejected or failed counts in the trial columns and not in the
means; the table says how many seeds each mean is over.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mudman.compare.driver import Comparison
from mudman.report.stats import mean_sem


@dataclass
class MethodResult:
    method: str
    search: list[dict[str, Any]] = field(default_factory=list)  # rate, status, value, seconds
    best_rate: float | None = None
    seed_values: dict[int, float | None] = field(default_factory=dict)
    mean: float | None = None
    sem: float | None = None
    gains: dict[int, float] = field(default_factory=dict)
    gain_mean: float | None = None
    gain_sem: float | None = None
    n_trials: int = 0
    n_rejected: int = 0
    n_failed: int = 0
    seconds: float = 0.0


def _gain(value: float, baseline: float, maximize: bool) -> float:
    return value - baseline if maximize else baseline - value


def summarize(comparison: Comparison, maximize: bool, objective: str) -> dict[str, Any]:
    """Everything the table, the figure and comparison.json show, from the trials run."""
    runs = sorted(comparison.runs, key=lambda r: (r.job.stage, r.job.seed, r.job.rate or 0))
    baseline = {r.job.seed: r.value for r in runs if r.job.stage == "baseline"}
    base_values = [v for v in baseline.values() if v is not None]
    base_mean, base_sem = mean_sem(base_values)
    results = []
    for method in comparison.settings.methods:
        mine = [r for r in runs if r.job.method == method]
        result = MethodResult(method, best_rate=comparison.best_rate(method))
        result.search = [
            {
                "rate": r.job.rate,
                "status": r.status,
                "value": r.value,
                "seconds": r.seconds,
                "detail": r.detail,
            }
            for r in sorted((r for r in mine if r.job.stage == "search"), key=lambda r: r.job.rate)
        ]
        seeded = [r for r in mine if r.job.stage == "seed"]
        result.seed_values = {r.job.seed: r.value for r in seeded}
        result.mean, result.sem = mean_sem(
            [v for v in result.seed_values.values() if v is not None]
        )
        result.gains = {
            seed: _gain(value, baseline[seed], maximize)
            for seed, value in result.seed_values.items()
            if value is not None and baseline.get(seed) is not None
        }
        result.gain_mean, result.gain_sem = mean_sem(list(result.gains.values()))
        result.n_trials = len(mine)
        result.n_rejected = sum(r.status == "rejected" for r in mine)
        result.n_failed = sum(r.status == "failed" for r in mine)
        result.seconds = round(sum(r.seconds for r in mine), 1)
        results.append(result)
    base_runs = [r for r in runs if r.job.stage == "baseline"]
    return {
        "name": comparison.settings.name,
        "objective": objective,
        "direction": "maximize" if maximize else "minimize",
        "seeds": list(comparison.settings.seeds),
        "search_seed": comparison.settings.search_seed,
        "rate_key": comparison.settings.rate_key,
        "methods": [asdict(r) for r in results],
        "baseline": {
            "seed_values": baseline,
            "mean": base_mean,
            "sem": base_sem,
            "n_failed": sum(r.status == "failed" for r in base_runs),
            "seconds": round(sum(r.seconds for r in base_runs), 1),
        },
        "trials": [
            {
                **{k: v for k, v in asdict(r.job).items()},
                "status": r.status,
                "value": r.value,
                "seconds": r.seconds,
                "reused": r.reused,
                "directory": str(r.directory),
                "detail": r.detail,
            }
            for r in runs
        ],
    }


def _pm(mean: float | None, sem: float | None, signed: bool = False) -> str:
    if mean is None:
        return "-"
    mean = round(mean, 4) + 0.0  # no "-0.0000" for a difference below the last digit
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text + (f" ± {sem:.4f}" if sem is not None else "")


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Header + one row per method + the baseline row (the markdown and console tables)."""
    n_seeds = len(summary["seeds"])
    rows = [
        [
            "method",
            "best rate",
            "search (rate: value)",
            "objective, mean ± SEM",
            "gain over baseline ± SEM",
            "seeds",
            "trials (rejected, failed)",
            "trial s",
        ]
    ]
    for m in summary["methods"]:
        search = ", ".join(
            f"{s['rate']:.3g}: {s['value']:.3f}"
            if s["value"] is not None
            else f"{s['rate']:.3g}: {s['status']}"
            for s in m["search"]
        )
        done = sum(v is not None for v in m["seed_values"].values())
        rows.append(
            [
                m["method"],
                "none completed" if m["best_rate"] is None else f"{m['best_rate']:.3g}",
                search or "-",
                _pm(m["mean"], m["sem"]),
                _pm(m["gain_mean"], m["gain_sem"], signed=True),
                f"{done}/{n_seeds}",
                f"{m['n_trials']} ({m['n_rejected']}, {m['n_failed']})",
                f"{m['seconds']:.0f}",
            ]
        )
    base = summary["baseline"]
    done = sum(v is not None for v in base["seed_values"].values())
    rows.append(
        [
            "baseline (relearn only)",
            "-",
            "-",
            _pm(base["mean"], base["sem"]),
            "0 (reference)",
            f"{done}/{n_seeds}",
            f"{len(base['seed_values'])} (0, {base['n_failed']})",
            f"{base['seconds']:.0f}",
        ]
    )
    return rows


def markdown_table(summary: dict[str, Any]) -> str:
    rows = table_rows(summary)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def console_table(summary: dict[str, Any]) -> str:
    rows = table_rows(summary)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _colour(gain: float | None) -> str:
    if gain is None:
        return "lightgrey"
    return "tab:blue" if gain >= 0 else "tab:red"


def figure(summary: dict[str, Any], path: Path) -> Path | None:
    """Gain over the baseline per method, mean ± SEM over seeds, N on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    if not methods:
        return None
    n_seeds = len(summary["seeds"])
    fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(methods) + 1.6))
    names = [m["method"] for m in methods][::-1]
    gains = [m["gain_mean"] if m["gain_mean"] is not None else 0.0 for m in methods][::-1]
    sems = [m["gain_sem"] or 0.0 for m in methods][::-1]
    colors = [
        "lightgrey"
        if m["gain_mean"] is None
        else ("tab:blue" if m["gain_mean"] >= 0 else "tab:red")
        for m in methods
    ][::-1]
    ax.barh(names, gains, xerr=sems, color=colors, capsize=4)
    ax.axvline(0.0, color="black", linewidth=1)
    span = max([abs(g) + s for g, s in zip(gains, sems, strict=True)] + [1e-3])
    for y, m in enumerate(methods[::-1]):
        n = len(m["gains"])
        if m["gain_mean"] is None:
            rates = [t["rate"] for t in m["search"]]
            label = (
                "no completed re-run"
                if m["best_rate"] is not None
                else f"no rate completed ({m['n_rejected']} rejected, rates "
                f"{min(rates, default=0):.2g} to {max(rates, default=0):.2g})"
            )
        else:
            sem = "" if m["gain_sem"] is None else f" ± {m['gain_sem']:.3f}"
            gain = round(m["gain_mean"], 3) + 0.0
            label = f"{gain:+.3f}{sem}  (N={n}/{n_seeds}, rate {m['best_rate']:.2g})"
        right = max(gains[y] + sems[y], 0.0)  # labels right of the bar or of the zero line
        ax.text(right + 0.02 * span, y, label, va="center", ha="left", fontsize=8)
    low = min(0.0, *(g - s for g, s in zip(gains, sems, strict=True)))
    high = max(0.0, *(g + s for g, s in zip(gains, sems, strict=True)))
    ax.set_xlim(low - 0.1 * span, high + 0.9 * span)
    unit = " (nats)" if summary.get("objective") == "forget_loss" else ""
    ax.set_xlabel(
        f"gain over the relearn-only baseline{unit}, mean ± SEM over {n_seeds} data seeds\n"
        "0 = baseline; positive = more robust (more unlearning survives the attack)"
    )
    ax.set_title(f"{summary['name']}: each method at its best rate", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
