"""Robustness curves: how each method's unlearning holds up as the attack gets stronger.

Reads trials' ``results.json`` (run dirs, files, or a sweep / multirun dir searched
recursively), picks per method its best completed trial or its last N, and draws
- ``robustness_curves.png``: forget loss on the eval batch vs attack passes, one line per
  attack, one panel per picked trial, the relearn-only baseline under the same attack dashed;
- ``robustness_gain.png``: gain over the baseline (same attack, same lr) vs attack learning
  rate, one panel per attack kind, one line per method (mean ± SEM over the picked trials), so
  one sees at which attack strength each method's lead vanishes (the zero line);
- ``robustness.md``: the numbers behind both.
``python -m mudman.report --robustness PATH... [--pick best|last] [--last N] [--out DIR]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mudman.record import TrialRecord
from mudman.report.stats import mean_sem


@dataclass
class Picked:
    """One trial chosen for the figures."""

    path: Path
    record: TrialRecord

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config or {}

    @property
    def method(self) -> str:
        return str((self.config.get("method") or {}).get("name", "?"))

    @property
    def direction(self) -> str:
        return str(self.record.direction or "maximize")

    @property
    def name(self) -> str:
        return self.path.parent.name

    @property
    def attacks(self) -> list[dict[str, Any]]:
        return self.record.attacks or []

    @property
    def baseline_attacks(self) -> dict[str, dict[str, Any]]:
        base = self.record.baseline or {}
        return {a["label"]: a for a in base.get("attacks") or []}


def find_results(paths: list[Path]) -> list[Path]:
    """results.json files: given directly, in a given run dir, or anywhere under a given dir."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif (path / "results.json").is_file():
            found.append(path / "results.json")
        elif path.is_dir():
            found.extend(sorted(path.rglob("results.json")))
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found))


def _order(item: Picked) -> tuple:
    """Trial order: the sweeper's trial number when recorded, else the path (natural sort)."""
    number = (item.config.get("sweep") or {}).get("trial_number")
    parts = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(item.path))]
    return (number if isinstance(number, int) else -1, [(type(p).__name__, p) for p in parts])


def pick_trials(paths: list[Path], pick: str = "best", last_n: int = 1) -> list[Picked]:
    """Per method: its best completed trial (by the objective's direction) or its last N
    completed ones. Trials without an ``attacks`` record (written before attack suites) or not
    completed are skipped."""
    by_method: dict[str, list[Picked]] = {}
    for path in find_results(paths):
        try:
            record = TrialRecord.read(path)
        except (OSError, ValueError):
            continue
        item = Picked(path, record)
        if record.status != "completed" or not item.attacks:
            continue
        by_method.setdefault(item.method, []).append(item)
    chosen: list[Picked] = []
    for method in sorted(by_method):
        items = sorted(by_method[method], key=_order)
        if pick == "best":
            better = max if items[0].direction == "maximize" else min
            chosen.append(better(items, key=lambda i: i.record.objective))
        else:
            chosen.extend(items[-last_n:])
    return chosen


def gain(value: float | None, base: float | None, direction: str) -> float | None:
    """How much more robust than the baseline under the same attack (positive = better)."""
    if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
        return None
    return value - base if direction == "maximize" else base - value


def curve_series(chosen: list[Picked]) -> list[dict[str, Any]]:
    """Figure 1's lines: per picked trial and attack, the trial's and the baseline's curves."""
    series = []
    for item in chosen:
        for attack in item.attacks:
            base = item.baseline_attacks.get(attack["label"])
            series.append(
                {
                    "trial": item.name,
                    "method": item.method,
                    "attack": attack["label"],
                    "curve": [tuple(p) for p in attack["curve"]],
                    "baseline_curve": [tuple(p) for p in base["curve"]] if base else None,
                }
            )
    return series


def gain_series(
    chosen: list[Picked],
) -> dict[str, dict[str, list[tuple[float, float, float | None, int]]]]:
    """Figure 2's points: ``{attack kind: {method: [(lr, mean gain, SEM, n), ...]}}``, lr sorted;
    a method's trials are pooled per (attack kind, lr, other settings alike)."""
    pooled: dict[tuple[str, str, float], list[float]] = {}
    for item in chosen:
        if item.method == "baseline":
            continue
        for attack in item.attacks:
            base = item.baseline_attacks.get(attack["label"])
            value = gain(attack.get("value"), base.get("value") if base else None, item.direction)
            if value is None:
                continue
            lr = float(attack["settings"]["lr"])
            kind = attack["label"].split(" lr=")[0] + _rest(attack["label"])
            pooled.setdefault((kind, item.method, lr), []).append(value)
    out: dict[str, dict[str, list[tuple[float, float, float | None, int]]]] = {}
    for (kind, method, lr), values in sorted(pooled.items()):
        mean, sem = mean_sem(values)
        out.setdefault(kind, {}).setdefault(method, []).append((lr, mean, sem, len(values)))
    return out


def _rest(label: str) -> str:
    """The settings after ``lr=...`` in a label (``rank=4``), without a ``#2`` duplicate mark."""
    tail = label.split(" lr=", 1)[1].split(" ", 1) if " lr=" in label else [""]
    rest = tail[1] if len(tail) > 1 else ""
    rest = re.sub(r"\s*#\d+$", "", rest)
    return f" {rest}" if rest else ""


def _direction_words(chosen: list[Picked]) -> tuple[str, str]:
    """(what the y axis of figure 1 measures, the gain's unit) from the trials' objective."""
    objective = (chosen[0].config.get("objective") or {}) if chosen else {}
    if objective.get("name") == "mc_accuracy":
        return (
            "forget loss on the eval batch (higher = more robust)",
            "baseline accuracy - accuracy, same attack (higher = more robust)",
        )
    return (
        "forget loss on the eval batch (nats/token; higher = more robust)",
        "gain over the baseline, same attack (nats; higher = more robust)",
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(chosen: list[Picked], path: Path) -> Path:
    """Figure 1: forget loss vs attack passes, one panel per picked trial."""
    plt = _pyplot()
    series = curve_series(chosen)
    panels = list(dict.fromkeys((s["method"], s["trial"]) for s in series))
    labels = list(dict.fromkeys(s["attack"] for s in series))
    colors = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    cols = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(
        rows, cols, squeeze=False, figsize=(max(8.0, 4.6 * cols), 3.4 * rows + 0.8), sharey=True
    )
    ylabel, _ = _direction_words(chosen)
    for ax, (method, trial) in zip(axes.flat, panels, strict=False):
        for s in (s for s in series if (s["method"], s["trial"]) == (method, trial)):
            xs, ys = zip(*s["curve"], strict=True)
            ax.plot(xs, ys, color=colors[s["attack"]], marker="o", ms=3, label=s["attack"])
            if s["baseline_curve"] and method != "baseline":
                bx, by = zip(*s["baseline_curve"], strict=True)
                ax.plot(bx, by, color=colors[s["attack"]], linestyle="--", linewidth=1)
        where = f"run {trial}" if trial.isdigit() else trial
        ax.set_title(
            f"{method} ({where})" if method != "baseline" else "baseline (no unlearning)",
            fontsize=9,
        )
        ax.set_xlabel("attack passes (forward + backward)")
        ax.grid(alpha=0.3)
    fig.supylabel(ylabel, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colors[label], marker="o", ms=3) for label in labels]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--"))
    fig.legend(
        handles,
        [*labels, "dashed: relearn-only baseline, same attack"],
        loc="lower center",
        ncol=min(4, len(labels) + 1),
        fontsize=7,
        frameon=False,
    )
    fig.suptitle(
        "Forget loss under each attack (solid: unlearned model; dashed: baseline)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.07 + 0.02 * (len(labels) // 4), 1, 0.96))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_gains(chosen: list[Picked], path: Path) -> Path:
    """Figure 2: gain over the baseline vs attack lr, one panel per attack kind."""
    plt = _pyplot()
    gains = gain_series(chosen)
    kinds = list(gains) or ["(no attacks with a baseline)"]
    methods = sorted({m for per in gains.values() for m in per})
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(
        1, len(kinds), squeeze=False, figsize=(max(8.0, 4.2 * len(kinds)), 3.8), sharey=True
    )
    _, ylabel = _direction_words(chosen)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for method, points in gains.get(kind, {}).items():
            lrs = [p[0] for p in points]
            means = [p[1] for p in points]
            sems = [p[2] or 0.0 for p in points]
            ax.errorbar(
                lrs,
                means,
                yerr=sems,
                color=colors[method],
                marker="o",
                capsize=3,
                label=f"{method} (n={max(p[3] for p in points)})",
            )
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"attack: {kind}", fontsize=9)
        ax.set_xlabel("attack learning rate (log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel(ylabel.replace(", same attack", ",\nsame attack"), fontsize=8)
    fig.suptitle(
        "Lead over the relearn-only baseline vs attack strength (dashed: no lead left)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def robustness_table(chosen: list[Picked]) -> str:
    """Markdown: per picked trial and attack, its value, the baseline's and the gain."""
    lines = [
        "| method | trial | attack | value | baseline | gain | worst case |",
        "|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for item in chosen:
        for attack in item.attacks:
            base = item.baseline_attacks.get(attack["label"])
            base_value = base.get("value") if base else None
            g = gain(attack.get("value"), base_value, item.direction)
            worst = "yes" if attack["label"] == item.record.worst_attack else ""
            lines.append(
                f"| {item.method} | {item.name} | {attack['label']} | {fmt(attack.get('value'))} "
                f"| {fmt(base_value)} | {'-' if g is None else f'{g:+.4f}'} | {worst} |"
            )
    return "\n".join(lines)


def report(paths: list[Path], out: Path, pick: str = "best", last_n: int = 1) -> list[Path]:
    """Both figures and the table into ``out``; returns their paths."""
    chosen = pick_trials(paths, pick, last_n)
    if not chosen:
        raise ValueError(
            f"no completed trial with an attack record under {', '.join(map(str, paths))}"
        )
    out.mkdir(parents=True, exist_ok=True)
    table = out / "robustness.md"
    table.write_text(robustness_table(chosen) + "\n")
    return [
        plot_curves(chosen, out / "robustness_curves.png"),
        plot_gains(chosen, out / "robustness_gain.png"),
        table,
    ]
