"""The report's figures: the comparison (the paper's figure 2) and the per-study plots.

The comparison plots each variant's *gain over the relearn-only baseline* (a bar from the zero
line, SEM error bars), because what decides it are differences of 0.005-0.2 nats on values of
~3: bars of the raw values all look equal. Every bar says how many trials it averages (N) and
how many were pruned or failed, and a variant without a completed trial is written in its row,
not dropped. The per-study plots (appendix F) are drawn here rather than by Optuna's defaults,
which drop pruned trials, label the axis "Objective Value" and give the trial-order colour bar
fractional ticks.

What each figure shows is computed first (``comparison_panels``, ``study_points``) and drawn
second, so that the tests check the plotted numbers, not pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from mudman.report.stats import StudyStats

log = logging.getLogger(__name__)

FIRST = ("mudman",)  # drawn first in each panel; the other variants follow by gain
COLOURS = {"mudman": "tab:blue", "tar": "tab:orange"}
ABLATION_COLOUR = "tab:green"  # no_masking, no_meta_learning, no_normalization, others
PRUNED_STYLE = {"marker": "x", "color": "0.55", "s": 28, "linewidths": 1.2, "zorder": 3}
SAME_BASELINE = 1e-6  # baselines closer than this (absolute) are the same measurement


def _pyplot():
    """pyplot on the file-only Agg backend (chosen here, not at import time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def robust_side(direction: str) -> str:
    """Which way is more robust: the objective's direction (forget loss: maximize)."""
    return "higher" if direction == "maximize" else "lower"


def with_unit(objective: str) -> str:
    """The objective with its unit: losses are in nats (natural-log cross-entropy)."""
    return f"{objective}, nats" if "loss" in objective else objective


def gain_over(value: float, baseline: float, direction: str) -> float:
    """How much more robust than the baseline: value - baseline when the objective is
    maximized (forget loss), baseline - value when it is minimized (mc_accuracy)."""
    return value - baseline if direction == "maximize" else baseline - value


# --- the comparison -----------------------------------------------------------------------


@dataclass
class Bar:
    """One variant (one study) in a comparison panel."""

    method: str
    study: str
    value: float | None  # gain over the baseline, or the raw mean without one; None: no trial
    sem: float | None  # SEM of the study's values (the baseline is one deterministic run)
    n_used: int  # completed trials averaged (the last --last of them)
    n_pruned: int
    n_failed: int
    n_running: int
    baseline: float | None = None  # what this bar's gain is measured against

    def counts(self) -> str:
        """``N=8, 5 pruned`` (+ failed and running when there are any)."""
        parts = [f"N={self.n_used}", f"{self.n_pruned} pruned"]
        if self.n_failed:
            parts.append(f"{self.n_failed} failed")
        if self.n_running:
            parts.append(f"{self.n_running} running")
        return ", ".join(parts)

    def label(self, signed: bool) -> str:
        """What is written beside the bar: the value ± SEM and the counts."""
        if self.value is None:
            return self.counts()  # the row itself says "no completed trial"
        value = f"{self.value:+.3f}" if signed else f"{self.value:.3f}"
        sem = f" ± {self.sem:.3f}" if self.sem is not None else " (N<2: no SEM)"
        return f"{value}{sem}   {self.counts()}"


@dataclass
class Panel:
    """One (data, model, objective) panel of the comparison."""

    data: str
    model: str
    objective: str
    direction: str
    baseline: float | None  # None: no baseline study and no trial recorded one
    baseline_source: str
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def gain(self) -> bool:
        """Bars are gains over a baseline (else raw values on a zoomed axis)."""
        return any(b.baseline is not None for b in self.bars)

    def axis_label(self) -> str:
        side = robust_side(self.direction)
        what = with_unit(self.objective)
        if not self.gain:
            return f"{what} ({side} = more robust)\nraw values: no relearn-only baseline recorded"
        formula = "value - baseline" if self.direction == "maximize" else "baseline - value"
        return (
            f"gain over relearn-only baseline ({formula}): {what}\n"
            "(higher = more robust; 0 = the baseline)"
        )

    def title(self) -> str:
        where = f"{self.model} / {self.data}"
        if self.baseline is None:
            if self.gain:
                return f"{where}\neach bar against its own study's relearn-only baseline"
            return f"{where}\nno relearn-only baseline"
        return (
            f"{where}\nrelearn-only baseline (the zero line): {self.objective} "
            f"= {self.baseline:.4f} ({self.baseline_source})"
        )


def _order(bars: list[Bar]) -> list[Bar]:
    """MUDMAN first, then by value (most robust first), variants without a trial last."""

    def key(bar: Bar) -> tuple[int, float, str]:
        if bar.value is None:
            return (2, 0.0, bar.method)
        return (0 if bar.method in FIRST else 1, -bar.value, bar.method)

    return sorted(bars, key=key)


def comparison_panels(rows: list[StudyStats]) -> list[Panel]:
    """The comparison's numbers: per (data, model, objective), one bar per non-baseline study.

    The baseline is the ``method=baseline`` study's mean in the same panel; without one, the
    ``baseline_objective`` the trials recorded (``compare_baseline=true``); without either, the
    panel shows raw values and says so. A disagreement between the two is written on the panel.
    """
    groups: dict[tuple[str, str, str], list[StudyStats]] = {}
    for row in rows:
        groups.setdefault((row.data or "?", row.model or "?", row.objective), []).append(row)
    panels = []
    for (data, model, objective), members in sorted(groups.items()):
        variants = [r for r in members if r.method != "baseline"]
        if not variants:
            continue  # a baseline alone: nothing to compare (the table lists it)
        panel = _panel(data, model, objective, members, variants)
        panels.append(panel)
    return panels


def _panel(
    data: str, model: str, objective: str, members: list[StudyStats], variants: list[StudyStats]
) -> Panel:
    notes: list[str] = []
    studies = [r for r in members if r.method == "baseline"]
    measured = [r for r in studies if r.mean is not None]
    for r in studies:
        if r.mean is None:
            notes.append(f"baseline study {r.name} has no completed trial")
    if len(measured) > 1:
        notes.append(
            "several baseline studies: " + ", ".join(f"{r.name}={r.mean:.4g}" for r in measured)
        )
    direction = variants[0].direction
    baseline = source = None
    if measured:
        baseline, source = measured[0].mean, f"study {measured[0].name}"
    recorded = sorted({v for r in variants for v in (r.baseline_values or [])})
    if baseline is None and recorded:
        if recorded[-1] - recorded[0] <= SAME_BASELINE:
            baseline, source = recorded[0], "recorded by the trials"
        else:
            notes.append(
                f"trials recorded different baselines ({recorded[0]:.4g} to {recorded[-1]:.4g}):"
                " each bar is measured against its own study's"
            )
    elif baseline is not None:
        off = [v for v in recorded if abs(v - baseline) > SAME_BASELINE]
        if off:
            notes.append(
                f"trials recorded baseline {', '.join(f'{v:.4g}' for v in off)} != {source}: "
                "the studies may not share one experiment"
            )
    bars = []
    for r in variants:
        against = baseline
        if against is None and r.baseline_values:
            against = r.baseline_values[0] if len(set(r.baseline_values)) == 1 else None
            if against is None:
                notes.append(f"{r.name}: its trials recorded several baselines; raw value shown")
        value = r.mean
        if value is not None and against is not None:
            value = gain_over(value, against, r.direction)
        bars.append(
            Bar(
                method=r.method or r.name,
                study=r.name,
                value=value,
                sem=r.sem,
                n_used=r.last_n,
                n_pruned=r.n_pruned,
                n_failed=r.n_failed,
                n_running=r.n_running,
                baseline=against,
            )
        )
    measured_bars = [b for b in bars if b.value is not None]
    if len({b.baseline is None for b in measured_bars}) > 1:
        # gains and raw values on one axis would mislead: show raw values for all
        notes.append("not every study has a baseline: raw values shown")
        for bar, r in zip(bars, variants, strict=True):
            bar.value, bar.baseline = r.mean, None
    if len({r.direction for r in variants}) > 1:
        notes.append("the studies optimize different directions")
    return Panel(
        data=data,
        model=model,
        objective=objective,
        direction=direction,
        baseline=baseline,
        baseline_source=source or "none",
        bars=_order(bars),
        notes=notes,
    )


def _colour(method: str) -> str:
    return COLOURS.get(method, ABLATION_COLOUR)


def _limits(values: list[tuple[float, float]], include_zero: bool) -> tuple[float, float]:
    """x range covering every value ± SEM (and 0 for gains), padded by 8%."""
    lows = [v - e for v, e in values] + ([0.0] if include_zero else [])
    highs = [v + e for v, e in values] + ([0.0] if include_zero else [])
    if not lows:
        return (-1.0, 1.0)
    low, high = min(lows), max(highs)
    pad = (high - low) * 0.08 or max(abs(high), 1e-3) * 0.05
    return low - pad, high + pad


def draw_comparison(panels: list[Panel], last_n: int):
    """The comparison figure (returned open; ``bar_chart`` saves and closes it)."""
    plt = _pyplot()
    from matplotlib.transforms import blended_transform_factory

    heights = [1.5 + 0.42 * len(p.bars) + 0.18 * len(p.notes) for p in panels] or [1.5]
    fig, axes = plt.subplots(
        len(heights),
        1,
        squeeze=False,
        figsize=(8.5, sum(heights) + 0.6),
        gridspec_kw={"height_ratios": heights},
    )
    for ax, panel in zip(axes[:, 0], panels, strict=False):
        ys = list(range(len(panel.bars)))
        drawn = [(y, b) for y, b in zip(ys, panel.bars, strict=True) if b.value is not None]
        values = [(b.value, b.sem or 0.0) for _, b in drawn]
        kwargs = {"capsize": 4, "ecolor": "black", "error_kw": {"elinewidth": 1}}
        if panel.gain:
            ax.barh(
                [y for y, _ in drawn],
                [b.value for _, b in drawn],
                xerr=[b.sem or 0.0 for _, b in drawn],
                color=[_colour(b.method) for _, b in drawn],
                height=0.6,
                **kwargs,
            )
            ax.axvline(0.0, color="black", linewidth=1.2, zorder=4)
        else:
            for y, b in drawn:
                ax.errorbar(
                    b.value, y, xerr=b.sem or 0.0, fmt="o", color=_colour(b.method), capsize=4
                )
        ax.set_xlim(*_limits(values, include_zero=panel.gain))
        ax.set_ylim(len(ys) - 0.4, -0.6)  # first bar on top
        ax.set_yticks(ys, [b.method for b in panel.bars])
        ax.grid(axis="x", color="0.88", linewidth=0.8)
        ax.set_axisbelow(True)
        beside = blended_transform_factory(ax.transAxes, ax.transData)
        for y, bar in zip(ys, panel.bars, strict=True):
            ax.text(1.02, y, bar.label(panel.gain), transform=beside, va="center", fontsize=8)
            if bar.value is None:  # in the empty row, clear of the zero line
                ax.annotate(
                    "no completed trial",
                    xy=(0.0 if panel.gain else ax.get_xlim()[0], y),
                    xytext=(5, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    style="italic",
                    color="tab:red",
                )
        ax.set_title(panel.title(), fontsize=9, loc="left")
        ax.set_xlabel(panel.axis_label(), fontsize=8)
        ax.tick_params(labelsize=8)
        if panel.notes:  # under the axis label, wherever layout puts it
            ax.annotate(
                "\n".join(f"note: {n}" for n in panel.notes),
                xy=(0.0, 0.0),
                xycoords=ax.xaxis.label,
                xytext=(0, -3),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color="tab:red",
            )
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no study besides baselines", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.suptitle(
        "Robustness to the relearning attack: mean ± SEM over each study's last "
        f"(up to {last_n}) completed trials",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def bar_chart(rows: list[StudyStats], path: Path, last_n: int) -> Path:
    """The comparison figure (``figure2.png``): gain over the relearn-only baseline per
    variant with SEM, N and pruned counts, one panel per (data, model)."""
    plt = _pyplot()
    fig = draw_comparison(comparison_panels(rows), last_n)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def baseline_by_study(rows: list[StudyStats]) -> dict[str, tuple[float, str]]:
    """For each study, the comparison's baseline (value, where it came from): what its
    per-study plots draw when its own trials recorded none."""
    found = {}
    for panel in comparison_panels(rows):
        if panel.baseline is not None:
            for bar in panel.bars:
                found[bar.study] = (panel.baseline, panel.baseline_source)
    return found


# --- per-study plots ----------------------------------------------------------------------


@dataclass
class ParamAxis:
    name: str
    log: bool
    choices: list[Any] | None  # a categorical parameter's choices (x = their index)

    def x(self, value: Any) -> float:
        if self.choices is not None:
            return float(self.choices.index(value))
        return float(value)


@dataclass
class StudyPoints:
    """What the per-study plots show: every valid trial, pruned ones included."""

    name: str
    objective: str
    direction: str
    baseline: float | None
    baseline_source: str
    params: list[ParamAxis]
    complete: list[tuple[int, dict[str, Any], float]]  # (number, params, primary value)
    pruned: list[tuple[int, dict[str, Any]]]  # (number, params)
    n_failed: int
    n_running: int
    value_names: list[str] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)  # all values (multi-objective)
    directions: list[str] = field(default_factory=list)

    def title(self) -> str:
        counts = (
            f"{len(self.complete)} completed, {len(self.pruned)} pruned, {self.n_failed} failed"
        )
        if self.n_running:
            counts += f", {self.n_running} running"
        return f"{self.name}\n{counts}"

    def objective_label(self) -> str:
        return f"{with_unit(self.objective)}\n({robust_side(self.direction)} = more robust)"

    def baseline_label(self) -> str:
        return f"relearn-only baseline {self.baseline:.4f} ({self.baseline_source})"


def study_points(
    study: optuna.Study, stats: StudyStats, fallback: tuple[float, str] | None = None
) -> StudyPoints:
    """Completed and pruned trials with their parameters, and the baseline: the one the
    study's trials recorded, else ``fallback`` (the comparison panel's)."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    distributions: dict[str, Any] = {}
    for trial in complete + pruned:
        for key, dist in trial.distributions.items():
            distributions.setdefault(key, dist)
    params = [
        ParamAxis(
            name,
            bool(getattr(dist, "log", False)),
            list(dist.choices) if isinstance(dist, CategoricalDistribution) else None,
        )
        for name, dist in sorted(distributions.items())
    ]
    baseline, source = None, "none"
    if stats.baseline_values:
        baseline, source = stats.baseline_values[0], "recorded by the trials"
    elif fallback is not None:
        baseline, source = fallback
    return StudyPoints(
        name=study.study_name,
        objective=stats.objective,
        direction=stats.direction,
        baseline=baseline,
        baseline_source=source,
        params=params,
        complete=[(t.number, dict(t.params), t.values[-1]) for t in complete],
        pruned=[(t.number, dict(t.params)) for t in pruned],
        n_failed=stats.n_failed,
        n_running=stats.n_running,
        value_names=list(stats.value_names),
        values=[list(t.values) for t in complete],
        directions=[d.name.lower() for d in study.directions],
    )


def _pruned_band(ax, xs: list[float], direction: str) -> None:
    """Pruned trials have no value: grey crosses in a shaded band added beyond the less
    robust end of the y axis, apart from every value and from the baseline line. Call it
    after the values and the baseline are drawn (it extends their y range)."""
    if not xs:
        return
    low, high = ax.get_ylim()
    depth = 0.14 * ((high - low) or 1.0)
    band = (low - depth, low) if direction == "maximize" else (high, high + depth)
    ax.set_ylim(min(low, band[0]), max(high, band[1]))
    ax.axhspan(*band, color="0.93", linewidth=0, zorder=0)
    ax.scatter(xs, [(band[0] + band[1]) / 2] * len(xs), **PRUNED_STYLE)


def _trial_colourbar(fig, mappable, axes) -> None:
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(mappable, ax=axes, pad=0.02)
    bar.set_label("trial number (order run)")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()


def _legend(fig, handles: list) -> None:
    """Below the plots, never over the data."""
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), 2),
        fontsize=8,
        frameon=False,
    )


def _pruned_handle(points: StudyPoints):
    from matplotlib.lines import Line2D

    edge = "bottom" if points.direction == "maximize" else "top"
    where = f"in the grey band at the {edge}" if points.pruned else "none"
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="x",
        color=PRUNED_STYLE["color"],
        label=f"pruned ({len(points.pruned)}): no value; {where}",
    )


def _baseline_line(ax, points: StudyPoints):
    if points.baseline is None:
        return None
    return ax.axhline(
        points.baseline, color="black", linestyle="--", linewidth=1, label=points.baseline_label()
    )


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _short_log(value: float, _position: Any = None) -> str:
    """``3e-4`` rather than matplotlib's ``3 x 10^-4`` minor labels, which run together."""
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = value / 10**exponent
    return f"{mantissa:.2g}e{exponent}"


def _fit_x(ax, xs: list[float], param: ParamAxis) -> None:
    """x limits covering completed *and* pruned trials (pruned ones, drawn in axes
    coordinates for y, do not move matplotlib's autoscaling), padded 5%; log ticks that
    fit."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if param.choices is not None:
        ax.set_xlim(-0.5, len(param.choices) - 0.5)
        return
    xs = [x for x in xs if not param.log or x > 0]
    if not xs:
        return
    low, high = min(xs), max(xs)
    if param.log:
        span = math.log10(high / low) if high > low else 0.0
        pad = 10 ** (0.05 * span if span else 0.1)
        ax.set_xlim(low / pad, high * pad)
        decades = span + 0.2
        subs = (1.0, 2.0, 5.0) if decades < 1.2 else (1.0, 3.0) if decades < 2.5 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(_short_log))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        pad = (high - low) * 0.05 or max(abs(high) * 0.05, 0.5)
        ax.set_xlim(low - pad, high + pad)


def draw_slice(points: StudyPoints):
    """The objective against each searched parameter (one panel each, titled by its name; log
    x for log-distributed ones), coloured by trial number, pruned trials as grey crosses at
    a band beyond the less robust end, the baseline as a dashed line."""
    plt = _pyplot()

    n = len(points.params)
    columns = min(n, 3)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(
        rows, columns, squeeze=False, figsize=(3.6 * columns + 1.2, 3.0 * rows + 0.9)
    )
    numbers = [number for number, _, _ in points.complete] + [n for n, _ in points.pruned]
    vmax = max(numbers, default=1)
    mappable = None
    for index, ax in enumerate(axes.flat):
        if index >= n:
            ax.set_axis_off()
            continue
        param = points.params[index]
        shown = [(num, p, v) for num, p, v in points.complete if param.name in p]
        mappable = ax.scatter(
            [param.x(p[param.name]) for _, p, _ in shown],
            [v for _, _, v in shown],
            c=[num for num, _, _ in shown],
            cmap="viridis",
            vmin=0,
            vmax=max(vmax, 1),
            s=26,
            edgecolors="black",
            linewidths=0.3,
            zorder=3,
        )
        cut = [p for _, p in points.pruned if param.name in p]
        _baseline_line(ax, points)
        _pruned_band(ax, [param.x(p[param.name]) for p in cut], points.direction)
        if param.log:
            ax.set_xscale("log")
        _fit_x(
            ax,
            [param.x(p[param.name]) for _, p, _ in shown] + [param.x(p[param.name]) for p in cut],
            param,
        )
        if param.choices is not None:
            ax.set_xticks(range(len(param.choices)), [str(c) for c in param.choices])
        ax.set_title(param.name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(color="0.9", linewidth=0.8)
        if index % columns == 0:
            ax.set_ylabel(points.objective_label(), fontsize=8)
    fig.suptitle(points.title(), fontsize=10)
    fig.tight_layout()
    if mappable is not None:
        _trial_colourbar(fig, mappable, axes.ravel().tolist())
    handles = [_pruned_handle(points)]
    line = axes.flat[0].get_lines()
    handles += [h for h in line if h.get_label().startswith("relearn-only")][:1]
    _legend(fig, handles)
    return fig


def draw_history(points: StudyPoints):
    """The objective by trial number, the best so far as a step line, pruned trials as grey
    crosses in a band beyond the less robust end, the baseline as a dashed line."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    numbers = [num for num, _, _ in points.complete]
    values = [v for _, _, v in points.complete]
    ax.scatter(numbers, values, color="tab:blue", s=22, zorder=3, label="completed trial")
    pick = max if points.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    if numbers:
        ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    _baseline_line(ax, points)
    _pruned_band(ax, [num for num, _ in points.pruned], points.direction)
    every = numbers + [num for num, _ in points.pruned]
    ax.set_xlim(min(every) - 0.5, max(every) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(points.objective_label(), fontsize=8)
    ax.set_title(points.title(), fontsize=9)
    ax.grid(color="0.9", linewidth=0.8)
    handles, _ = ax.get_legend_handles_labels()
    fig.tight_layout()
    _legend(fig, [*handles, _pruned_handle(points)])
    return fig


def importances_plot(study: optuna.Study, points: StudyPoints, path: Path) -> Path | None:
    """Optuna's default parameter importances (PED-ANOVA) of the completed trials, as bars
    named by parameter; None (logged) when Optuna cannot assess them."""
    plt = _pyplot()
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as err:
        log.warning("%s: no importances plot: %s", points.name, err)
        return None
    names = list(importances)[::-1]
    few = len(points.complete) < 10
    fig, ax = plt.subplots(figsize=(6.0, 0.6 + 0.35 * len(names) + 1.0))
    ax.barh(names, [importances[n] for n in names], color="tab:blue", height=0.6)
    for y, name in enumerate(names):
        ax.text(importances[name], y, f" {importances[name]:.2f}", va="center", fontsize=8)
    ax.set_xlabel(
        f"importance for {points.objective} (Optuna's default evaluator;\n"
        f"{len(points.complete)} completed trials, pruned ones not used)"
        + ("\nfewer than 10 trials: these importances are mostly noise" if few else ""),
        fontsize=8,
    )
    ax.set_xlim(0, max(importances.values(), default=1) * 1.2 or 1)
    ax.tick_params(labelsize=8)
    ax.set_title(points.title(), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def study_plots(
    study: optuna.Study,
    directory: Path,
    baseline: tuple[float, str] | None = None,
    stats: StudyStats | None = None,
) -> list[Path]:
    """Appendix-F plots of one study: ``slice.png``, ``history.png`` and ``importances.png``
    (when more than one parameter was searched), or ``pareto.png`` for a two-objective study.
    ``baseline`` is drawn when the study's own trials recorded none (the comparison's)."""
    from mudman.report.stats import study_stats

    stats = stats or study_stats(study)
    points = study_points(study, stats, baseline)
    if not points.complete or len(points.complete) + len(points.pruned) < 2:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    if len(study.directions) > 1:
        return [_save(draw_pareto(study, points), directory / "pareto.png")]
    if not points.params:
        return []
    made = [
        _save(draw_slice(points), directory / "slice.png"),
        _save(draw_history(points), directory / "history.png"),
    ]
    if len(points.params) > 1 and len(points.complete) >= 4:
        path = importances_plot(study, points, directory / "importances.png")
        if path is not None:
            made.append(path)
    return made


def _side(direction: str) -> str:
    return "higher = better" if direction == "maximize" else "lower = better"


def draw_pareto(study: optuna.Study, points: StudyPoints):
    """All completed trials of a two-objective study coloured by trial number, the Pareto
    front joined by a line, the baseline of the primary (last) value as a dashed line."""
    plt = _pyplot()
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    names = points.value_names or [f"value {i}" for i in range(len(points.directions))]
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    dots = ax.scatter(
        [v[0] for v in points.values],
        [v[-1] for v in points.values],
        c=[num for num, _, _ in points.complete],
        cmap="viridis",
        vmin=0,
        s=24,
        edgecolors="black",
        linewidths=0.3,
        zorder=3,
    )
    ax.plot(
        [t.values[0] for t in front],
        [t.values[-1] for t in front],
        "o-",
        color="tab:red",
        mfc="none",
        markersize=9,
        label=f"Pareto front ({len(front)})",
    )
    _baseline_line(ax, points)
    ax.set_xlabel(f"{names[0]} ({_side(points.directions[0])})", fontsize=8)
    ax.set_ylabel(f"{names[-1]} ({_side(points.directions[-1])})", fontsize=8)
    ax.set_title(points.title(), fontsize=9)
    ax.grid(color="0.9", linewidth=0.8)
    handles, _ = ax.get_legend_handles_labels()
    if points.pruned:  # pruned trials have no values: counted, not placed
        from matplotlib.lines import Line2D

        handles.append(
            Line2D([], [], linestyle="none", label=f"pruned ({len(points.pruned)}): no values")
        )
    fig.tight_layout()
    _trial_colourbar(fig, dots, ax)
    _legend(fig, handles)
    return fig
