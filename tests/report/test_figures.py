"""The report's figures plot the right numbers: gains over the baseline with SEM, N and pruned
counts per bar, every variant shown, pruned trials and the baseline on every per-study plot.

Studies are synthetic (in-memory Optuna storage, trials with the user attrs the sweeper writes:
``baseline_objective``, ``rejection_reason``); the checks read the matplotlib artists."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
from matplotlib.container import ErrorbarContainer
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from mudman.report.__main__ import main as report_main
from mudman.report.figures import (
    baseline_by_study,
    comparison_panels,
    draw_comparison,
    draw_history,
    draw_pareto,
    draw_slice,
    study_points,
)
from mudman.report.stats import mean_sem, study_stats

optuna.logging.set_verbosity(optuna.logging.WARNING)

RATE = FloatDistribution(1e-5, 1e-2, log=True)
FORK = IntDistribution(6, 42)
MC = {"name": "mc_accuracy", "metric": "accuracy", "target": {"name": "wmdp_bio"}}


def _study(method, values, *, baseline=None, pruned=0, failed=0, storage=None, objective=None):
    """A study as the sweeper leaves it: config attr, COMPLETE trials with distinct
    parameters (and ``baseline_objective`` when given), PRUNED ones with parameters and a
    reason, crashed ones (FAIL)."""
    config = {"model": {"name": "house"}, "data": {"name": "python"}, "method": {"name": method}}
    if objective:
        config["objective"] = objective
    direction = "minimize" if objective else "maximize"
    study = optuna.create_study(
        study_name=f"ablation-house-python-{method}", storage=storage, direction=direction
    )
    study.set_user_attr("config", config)
    attrs = {} if baseline is None else {"baseline_objective": baseline}
    params = {"method.unlearning_rate": RATE, "method.fork_every_n_loops": FORK}
    for i, value in enumerate(values):
        study.add_trial(
            create_trial(
                params={
                    "method.unlearning_rate": 1e-4 * (i + 1),
                    "method.fork_every_n_loops": 6 + i,
                },
                distributions=params if method != "baseline" else {},
                value=value,
                user_attrs={**attrs, "status": "completed"},
            )
            if method != "baseline"
            else create_trial(value=value, user_attrs={"status": "completed"})
        )
    for i in range(pruned):
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params={"method.unlearning_rate": 5e-3 + 1e-4 * i, "method.fork_every_n_loops": 40},
                distributions=params,
                user_attrs={**attrs, "rejection_reason": "retain loss over budget"},
            )
        )
    for _ in range(failed):
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"failure": "crash"}))
    return study


def _panel_of(studies, last_n=30):
    return comparison_panels([study_stats(s, last_n) for s in studies])


def test_comparison_bars_are_gains_over_the_baseline_study_with_sem_and_counts():
    mudman = [3.40, 3.46, 3.52]
    masking = [3.371, 3.373]
    studies = [
        _study("baseline", [3.366]),
        _study("no_masking", masking, baseline=3.366, pruned=5),
        _study("mudman", mudman, baseline=3.366, pruned=1, failed=2),
        _study("tar", [], baseline=3.366, pruned=3),  # no valid trial: shown, not dropped
    ]
    (panel,) = _panel_of(studies)
    assert panel.gain and panel.baseline == 3.366 and "baseline" in panel.baseline_source
    assert [b.method for b in panel.bars] == ["mudman", "no_masking", "tar"]  # MUDMAN first
    by = {b.method: b for b in panel.bars}
    mean, sem = mean_sem(mudman)
    assert by["mudman"].value == pytest.approx(mean - 3.366)
    assert by["mudman"].sem == pytest.approx(sem)
    assert by["no_masking"].value == pytest.approx(np.mean(masking) - 3.366)
    assert by["tar"].value is None
    assert by["mudman"].counts() == "N=3, 1 pruned, 2 failed"
    assert by["no_masking"].counts() == "N=2, 5 pruned"
    label = panel.axis_label()
    assert "higher = more robust" in label and "value - baseline" in label

    fig = draw_comparison([panel], last_n=30)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([mean - 3.366, np.mean(masking) - 3.366])  # bars = gains
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    caps = bars.lines[2][0].get_segments()
    half_widths = [(seg[1][0] - seg[0][0]) / 2 for seg in caps]
    assert half_widths == pytest.approx([sem, mean_sem(masking)[1]])  # error bars = SEM
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)  # baseline = zero line
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mudman", "no_masking", "tar"]
    texts = [t.get_text() for t in ax.texts]
    assert f"+{mean - 3.366:.3f} ± {sem:.3f}   N=3, 1 pruned, 2 failed" in texts
    assert "no completed trial" in texts and "N=0, 3 pruned" in texts
    assert "3.366" in ax.get_title(loc="left")
    assert ax.get_legend() is None  # nothing drawn over the bars
    plt.close(fig)


def test_without_a_baseline_study_the_trials_recorded_baseline_is_used():
    (panel,) = _panel_of([_study("mudman", [3.5, 3.6], baseline=3.4)])
    assert panel.baseline == 3.4 and panel.baseline_source == "recorded by the trials"
    assert panel.bars[0].value == pytest.approx(0.15)


def test_without_any_baseline_raw_values_on_a_zoomed_axis_say_so():
    (panel,) = _panel_of([_study("mudman", [3.50, 3.52]), _study("tar", [3.40, 3.41])])
    assert not panel.gain and panel.baseline is None
    assert [b.value for b in panel.bars] == pytest.approx([3.51, 3.405])
    assert "raw values: no relearn-only baseline" in panel.axis_label()
    fig = draw_comparison([panel], last_n=30)
    low, high = fig.axes[0].get_xlim()
    assert 3.3 < low < 3.40 and 3.52 < high < 3.6  # zoomed around the values, not from 0
    assert not fig.axes[0].patches  # points with error bars, no bars from an arbitrary edge
    plt.close(fig)


def test_mc_accuracy_gain_is_baseline_minus_value():
    (panel,) = _panel_of([_study("mudman", [0.40, 0.50], baseline=0.6, objective=MC)])
    assert panel.direction == "minimize"
    assert panel.bars[0].value == pytest.approx(0.15)
    assert "baseline - value" in panel.axis_label()
    assert "wmdp_bio accuracy after relearning" in panel.axis_label()


def test_the_n_of_each_bar_is_the_trials_it_averages():
    (panel,) = _panel_of([_study("mudman", [1.0, 2.0, 3.0, 4.0], baseline=0.0)], last_n=3)
    assert panel.bars[0].n_used == 3 and panel.bars[0].value == pytest.approx(3.0)


def test_slice_plot_shows_pruned_trials_the_baseline_and_log_axes():
    study = _study("mudman", [3.40, 3.46, 3.52], baseline=3.366, pruned=2, failed=1)
    points = study_points(study, study_stats(study))
    assert len(points.complete) == 3 and len(points.pruned) == 2 and points.baseline == 3.366
    fig = draw_slice(points)
    fork, rate = fig.axes[0], fig.axes[1]  # parameters sorted by name
    assert rate.get_title() == "method.unlearning_rate" and rate.get_xscale() == "log"
    assert fork.get_title() == "method.fork_every_n_loops" and fork.get_xscale() == "linear"
    done, cut = rate.collections[:2]
    assert list(done.get_offsets()[:, 0]) == pytest.approx([1e-4, 2e-4, 3e-4])
    assert list(done.get_offsets()[:, 1]) == pytest.approx([3.40, 3.46, 3.52])
    assert list(cut.get_offsets()[:, 0]) == pytest.approx([5e-3, 5.1e-3])  # pruned, present
    assert max(cut.get_offsets()[:, 1]) < 3.366  # below every value and the baseline
    assert rate.get_ylim()[0] < min(cut.get_offsets()[:, 1])  # inside the axes
    assert any(list(line.get_ydata()) == [3.366, 3.366] for line in rate.lines)
    assert "higher = more robust" in fork.get_ylabel()
    assert "forget loss after relearning, nats" in fork.get_ylabel()
    title = fig._suptitle.get_text()
    assert "ablation-house-python-mudman" in title and "2 pruned, 1 failed" in title
    colourbar = fig.axes[-1]
    ticks = colourbar.get_yticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(text.startswith("pruned (2)") for text in legend)
    assert any(text.startswith("relearn-only baseline 3.366") for text in legend)
    plt.close(fig)


def test_history_plot_places_pruned_trials_by_number_and_draws_the_best_so_far():
    study = _study("mudman", [3.46, 3.40, 3.52], baseline=3.366, pruned=1)
    fig = draw_history(study_points(study, study_stats(study)))
    ax = fig.axes[0]
    done, cut = ax.collections[:2]
    assert list(done.get_offsets()[:, 0]) == [0, 1, 2]
    assert list(cut.get_offsets()[:, 0]) == [3]
    best = next(line for line in ax.lines if line.get_label() == "best so far")
    assert list(best.get_ydata()) == pytest.approx([3.46, 3.46, 3.52])
    plt.close(fig)


def test_a_study_without_recorded_baseline_plots_the_comparisons(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    studies = [_study("baseline", [3.3], storage=url), _study("mudman", [3.4, 3.5], storage=url)]
    rows = [study_stats(s) for s in studies]
    fallback = baseline_by_study(rows)
    assert fallback == {
        "ablation-house-python-mudman": (3.3, "study ablation-house-python-baseline")
    }
    points = study_points(studies[1], rows[1], fallback["ablation-house-python-mudman"])
    assert points.baseline == 3.3
    out = tmp_path / "report"
    assert report_main(["--storage", url, "--out", str(out)]) == 0
    assert (out / "figure2.png").stat().st_size > 10_000
    assert (out / "ablation-house-python-mudman" / "slice.png").exists()
    assert (out / "ablation-house-python-mudman" / "history.png").exists()


def test_pareto_plot_has_the_baseline_and_counts_pruned_trials():
    config = {"model": {"name": "house"}, "data": {"name": "pile_bio"}, "method": {"name": "m"}}
    study = optuna.create_study(study_name="wmdp-mo", directions=["maximize", "minimize"])
    study.set_user_attr("config", {**config, "objective": MC})
    names = {"mmlu_accuracy_after_unlearning": 0, "wmdp_bio_accuracy_after_relearning": 0}
    for lr, values in ((1e-3, [0.5, 0.3]), (1e-4, [0.6, 0.4]), (1e-2, [0.4, 0.5])):
        study.add_trial(
            create_trial(
                params={"method.unlearning_rate": lr},
                distributions={"method.unlearning_rate": RATE},
                values=values,
                user_attrs={"objectives": names, "baseline_objective": 0.55},
            )
        )
    study.add_trial(create_trial(state=TrialState.PRUNED))
    fig = draw_pareto(study, study_points(study, study_stats(study)))
    ax = fig.axes[0]
    assert list(ax.collections[0].get_offsets()[:, 1]) == pytest.approx([0.3, 0.4, 0.5])
    assert any(list(line.get_ydata()) == [0.55, 0.55] for line in ax.lines)
    assert ax.get_ylabel() == "wmdp_bio_accuracy_after_relearning (lower = better)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "pruned (1): no values" in legend and "Pareto front (2)" in legend
    plt.close(fig)
