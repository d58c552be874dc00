"""The report from storage alone, and the paper's sweep presets composing cleanly."""

from __future__ import annotations

import json

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mudman.config import validate_config
from mudman.report.__main__ import main as report_main
from mudman.report.stats import mean_sem, study_stats
from mudman.sweeping.space import parse_space
from tests.conftest import CONF

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fake_study(url, method, values, baseline=2.0, pruned=1, edge=False):
    config = {"model": {"name": "house"}, "data": {"name": "python"}, "method": {"name": method}}
    study = optuna.create_study(
        study_name=f"ablation-house-python-{method}", storage=url, direction="maximize"
    )
    study.set_user_attr("config", config)
    dist = optuna.distributions.FloatDistribution(1e-7, 1e-1, log=True)
    for i, value in enumerate(values):
        lr = 0.099 if edge and i == len(values) - 1 else 1e-4 * (i + 1)  # distinct samples
        trial = optuna.trial.create_trial(
            params={"method.unlearning_rate": lr},
            distributions={"method.unlearning_rate": dist},
            value=value,
            user_attrs={"baseline_objective": baseline},
        )
        study.add_trial(trial)
    for _ in range(pruned):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


def test_mean_and_standard_error():
    mean, sem = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and sem == pytest.approx(1.2909944 / 2)
    assert mean_sem([5.0]) == (5.0, None) and mean_sem([]) == (None, None)


def test_stats_use_the_last_n_valid_trials_and_flag_range_edges(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    study = _fake_study(url, "mudman", [1.0, 9.0, 3.0, 4.0, 5.0], edge=True)
    stats = study_stats(study, last_n=3)
    assert stats.mean == pytest.approx(4.0) and stats.last_n == 3
    assert stats.n_complete == 5 and stats.n_pruned == 1 and stats.best_value == 9.0
    assert stats.baseline == 2.0
    stats = study_stats(_fake_study(url, "no_masking", [1.0, 2.0, 7.0], edge=True), last_n=30)
    assert stats.edge_warnings and "upper edge" in stats.edge_warnings[0]


def test_multi_objective_study_reports_its_pareto_front(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/mo.db"
    config = {
        "model": {"name": "house"},
        "data": {"name": "pile_bio"},
        "method": {"name": "mudman"},
        "objective": {"name": "mc_accuracy", "metric": "accuracy", "target": {"name": "go"}},
    }
    study = optuna.create_study(
        study_name="wmdp-mo", storage=url, directions=["maximize", "minimize"]
    )
    study.set_user_attr("config", config)
    names = {"guard_after_unlearning": 0, "go_accuracy_after_relearning": 0}
    dist = optuna.distributions.FloatDistribution(1e-7, 1e-1, log=True)
    # (guard, target): (0.5, 0.3) and (0.6, 0.4) are the front; (0.4, 0.5) is dominated
    for lr, values in ((1e-3, [0.5, 0.3]), (1e-4, [0.6, 0.4]), (1e-2, [0.4, 0.5])):
        study.add_trial(
            optuna.trial.create_trial(
                params={"method.unlearning_rate": lr},
                distributions={"method.unlearning_rate": dist},
                values=values,
                user_attrs={"objectives": names},
            )
        )
    stats = study_stats(study, last_n=30)
    assert stats.direction == "minimize" and stats.best_value == 0.3
    assert stats.mean == pytest.approx(0.4)  # of the primary (last) value
    assert [p["number"] for p in stats.pareto] == [0, 1]
    assert stats.objective == "go accuracy after relearning"
    out = tmp_path / "report"
    assert report_main(["--storage", url, "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert (
        "Pareto front of wmdp-mo (guard_after_unlearning / go_accuracy_after_relearning)" in table
    )
    assert "| 0 | 0.5000 | 0.3000 | method.unlearning_rate=0.001 |" in table
    assert (out / "wmdp-mo" / "pareto.png").stat().st_size > 5_000


def test_report_writes_table_and_figures_from_storage(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/o.db"
    _fake_study(url, "mudman", [5.0, 6.0, 7.0])
    _fake_study(url, "no_masking", [3.0, 3.5])
    _fake_study(url, "baseline", [2.0], pruned=0)
    running = _fake_study(url, "tar", [4.0])
    running.ask()  # a study still in progress
    out = tmp_path / "report"
    assert report_main(["--storage", url, "--out", str(out), "--last", "2"]) == 0
    table = (out / "table.md").read_text()
    assert "| ablation-house-python-mudman | house | python | mudman | 6.500 ± 0.500 | 2 |" in table
    assert (out / "figure2.png").stat().st_size > 10_000
    assert (out / "ablation-house-python-mudman" / "slice.png").exists()
    assert "figure 2" in capsys.readouterr().out
    assert report_main(["--storage", url, "--studies", "nothing-like-this", "--out", str(out)]) == 2
    assert "Error: no study matching 'nothing-like-this'" in capsys.readouterr().err


PRESETS = [
    "pythia_python",
    "pythia_pile_bio",
    "smollm_python",
    "smollm_pile_bio",
    "llama_python",
    "llama_pile_bio",
    "house_python",
    "smollm2_python",
]
VARIANTS = ["mudman", "no_masking", "no_meta_learning", "no_normalization", "tar", "baseline"]


@pytest.mark.parametrize("preset", PRESETS)
def test_ablation_presets_compose_with_a_valid_space_per_variant(preset):
    for variant in VARIANTS:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[f"experiment=ablation/{preset}", f"method={variant}"],
                return_hydra_config=True,
            )
        sweeper = cfg.hydra.sweeper
        assert sweeper.study_name == f"ablation-{cfg.model.name}-{cfg.data.name}-{variant}"
        space = parse_space(OmegaConf.to_container(sweeper.params, resolve=True))
        assert ("method.unlearning_rate" in space) == (variant != "baseline")
        if variant == "no_meta_learning":
            assert "method.adv_lr" not in space
        if variant == "tar":  # the paper's TAR inherits the normalized range unless a preset
            ranges = cfg.search_ranges  # gives it its own (the house model does)
            expected = ranges.get("unlearning_rate_tar") or ranges.unlearning_rate
            raw = OmegaConf.to_container(sweeper.params, resolve=True)
            assert raw["method.unlearning_rate"] == expected
            assert ("unlearning_rate_tar" in ranges) == (preset == "house_python")
        validate_config(cfg)  # budgets divide into loops, values in range


@pytest.mark.parametrize("preset", ["wmdp", "wmdp_offline"])
def test_wmdp_presets_compose_with_the_paper_settings(preset):
    for variant in VARIANTS:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[f"experiment={preset}", f"method={variant}"],
                return_hydra_config=True,
            )
        space = parse_space(OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True))
        assert set(space) == (
            set() if variant == "baseline" else {"method.unlearning_rate", "method.retaining_rate"}
        )
        assert cfg.objective.name == "mc_accuracy" and cfg.objective.direction == "minimize"
        assert cfg.attack.alternate_retain is True
        assert cfg.retain_pause_budget < cfg.retain_loss_budget
        assert cfg.method.unlearning_loss == "neg_entropy"
        validate_config(cfg)
    if preset == "wmdp":
        assert (cfg.unlearn_passes, cfg.relearn_passes, cfg.attack.lr) == (480, 240, 3e-4)
        assert cfg.objective.eval_every_passes == 120 and cfg.objective.guard_allowance == 0.01
        assert cfg.model.name == "llama-3.2-1b" and cfg.hydra.sweeper.n_trials == 300
        assert cfg.objective.target.name == "wmdp_bio" and cfg.objective.guard.source == "hub"


def _run_dir(root, name, overrides, record):
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if record is not None:
        (root / name / "results.json").write_text(json.dumps(record))


def test_report_tabulates_a_plain_multirun_grid_by_its_varying_overrides(tmp_path, capsys):
    grid = tmp_path / "multirun"

    def done(objective, forget):
        return {
            "status": "completed",
            "objective": objective,
            "baseline": {"objective": 3.5},
            "losses": {"after_unlearning": {"forget_loss": forget, "retain_loss": 4.7}},
            "timings": {"total_s": 60.0},
        }

    _run_dir(grid, "0", ["model=house", "attack.lr=1e-2"], done(4.0, 7.0))
    _run_dir(grid, "1", ["model=house", "attack.lr=3e-3"], done(4.5, 7.1))
    rejected = {"status": "rejected", "objective": None, "rejection": {"reason": "retain loss"}}
    _run_dir(grid, "2", ["model=house", "attack.lr=1e-1"], rejected)
    _run_dir(grid, "3", ["model=house", "attack.lr=1"], None)  # still running: no results.json
    assert report_main(["--runs", str(grid), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "runs.md").read_text().splitlines()
    assert table[0].startswith("| attack.lr | status | objective | baseline |")  # model is fixed
    assert [line.split(" | ")[0] for line in table[2:]] == ["| 3e-3", "| 1e-2", "| 1e-1"]
    assert table[2] == "| 3e-3 | completed | 4.500 | 3.500 | 7.100 | 4.700 | 60.000 |"
    assert "| 1e-1 | rejected (retain loss) | - | - | - | - | - |" in table
    assert "(3 runs)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        report_main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
