"""Figure 2 of the paper (bars per variant, grouped by dataset and model) and appendix F plots."""

from __future__ import annotations

from pathlib import Path

import optuna

from mudman.report.stats import StudyStats


def _pyplot():
    """pyplot on the file-only Agg backend (chosen here, not at import time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(rows: list[StudyStats], path: Path, last_n: int) -> Path:
    """Horizontal bars (mean of the last N valid trials, SEM error bars), one panel per
    (data, model), with the relearn-only baseline as a dashed line."""
    plt = _pyplot()
    groups: dict[tuple[str, str], list[StudyStats]] = {}
    for row in rows:
        if row.mean is not None and row.method != "baseline":
            groups.setdefault((row.data or "?", row.model or "?"), []).append(row)
    baselines = {(r.data, r.model): r.mean for r in rows if r.method == "baseline"}
    fig, axes = plt.subplots(
        len(groups) or 1,
        1,
        squeeze=False,
        figsize=(
            7,
            1.2 + 0.5 * max((len(v) for v in groups.values()), default=1) * max(len(groups), 1),
        ),
    )
    for ax, ((data, model), members) in zip(axes[:, 0], sorted(groups.items()), strict=False):
        members = sorted(members, key=lambda r: r.method or "")
        ax.barh(
            [r.method for r in members],
            [r.mean for r in members],
            xerr=[r.sem or 0 for r in members],
            color="tab:orange",
            capsize=3,
        )
        baseline = baselines.get((data, model)) or next(
            (r.baseline for r in members if r.baseline is not None), None
        )
        if baseline is not None:
            ax.axvline(baseline, color="black", linestyle="--", label="baseline (relearn only)")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(f"{model} / {data}", fontsize=9)
        ax.set_xlabel(f"{members[0].objective} (mean of last {last_n} valid trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def study_plots(study: optuna.Study, directory: Path) -> list[Path]:
    """Appendix-F plots: objective vs each hyperparameter coloured by trial order,
    optimization history, and importances (when more than one parameter was searched)."""
    from optuna.visualization import matplotlib as ovm

    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return []
    if len(study.directions) > 1:
        return [pareto_plot(study, directory / "pareto.png")]
    made = []
    plots = [("slice.png", ovm.plot_slice), ("history.png", ovm.plot_optimization_history)]
    if len(complete[0].params) > 1 and len(complete) >= 4:
        plots.append(("importances.png", ovm.plot_param_importances))
    for name, plot in plots:
        result = plot(study)
        figure = (result.flat[0] if hasattr(result, "flat") else result).figure
        figure.savefig(directory / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        made.append(directory / name)
    return made


def pareto_plot(study: optuna.Study, path: Path) -> Path:
    """All completed trials of a two-objective study, the Pareto front joined by a line."""
    plt = _pyplot()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    names = list(complete[0].user_attrs.get("objectives") or ["value 0", "value 1"])
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(
        [t.values[0] for t in complete],
        [t.values[1] for t in complete],
        c=[t.number for t in complete],
        cmap="viridis_r",
        s=18,
        label="trials (dark = late)",
    )
    ax.plot(
        [t.values[0] for t in front],
        [t.values[1] for t in front],
        "o-",
        color="tab:red",
        mfc="none",
        label="Pareto front",
    )
    directions = [d.name.lower() for d in study.directions]
    ax.set_xlabel(f"{names[0]} ({directions[0]})")
    ax.set_ylabel(f"{names[1]} ({directions[1]})")
    ax.set_title(study.study_name, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
