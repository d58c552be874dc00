"""The comparison (experiment=compare/...): ladder search, settings, paired gains, end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mudman.compare import shared_overrides
from mudman.compare.driver import Comparison, TrialRun
from mudman.compare.ladder import Ladder
from mudman.compare.plan import Job, read_settings
from mudman.compare.summary import summarize
from mudman.errors import ConfigError
from tests.conftest import CONF, tiny_jsonl_args

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))


def run_ladder(ladder: Ladder, objective) -> list[float]:
    """Drive the ladder against ``objective(rate)`` (None = rejected); the rates it asked for."""
    asked = []
    while (rate := ladder.next_rate()) is not None:
        assert rate not in asked, "the ladder asked for a rate twice"
        asked.append(rate)
        ladder.record(rate, objective(rate))
    return asked


def peaked(best: float, reject_above: float):
    """A synthetic objective: a log-parabola peaking at ``best``, rejected above a threshold."""
    return lambda r: None if r > reject_above else 5.0 - (math.log10(r / best)) ** 2


def test_ladder_climbs_to_the_first_rejection_then_refines_below_it():
    ladder = Ladder(start=1e-4, factor=3, max_rungs=5, refinements=1)
    asked = run_ladder(ladder, peaked(best=1e-3, reject_above=2e-3))
    # 1e-4, 3e-4, 9e-4 complete; 2.7e-3 is rejected; refine between 9e-4 and 2.7e-3
    assert asked == pytest.approx([1e-4, 3e-4, 9e-4, 2.7e-3, math.sqrt(9e-4 * 2.7e-3)], rel=1e-5)
    assert ladder.best.rate == pytest.approx(9e-4)  # closer to the peak than the midpoint


def test_ladder_finds_a_known_best_rate_within_half_a_step():
    for best in (3e-5, 2e-4, 1e-3, 6e-3):
        ladder = Ladder(start=1e-4, factor=3, max_rungs=6, refinements=2)
        run_ladder(ladder, peaked(best=best, reject_above=best * 4))
        assert abs(math.log(ladder.best.rate / best)) <= math.log(3) / 2 + 1e-9, best


def test_ladder_descends_when_the_start_is_rejected():
    ladder = Ladder(start=1e-2, factor=3, max_rungs=4, refinements=1)
    asked = run_ladder(ladder, peaked(best=1e-3, reject_above=2e-3))
    assert asked[:3] == pytest.approx([1e-2, 1e-2 / 3, 1e-2 / 9], rel=1e-5)
    assert ladder.best is not None and ladder.best.rate <= 2e-3


def test_ladder_respects_its_budget_and_reports_no_best_when_all_are_rejected():
    ladder = Ladder(start=1e-2, factor=3, max_rungs=3, refinements=1)
    asked = run_ladder(ladder, lambda r: None)
    assert len(asked) == 3 and ladder.best is None


def test_ladder_minimizes_when_told():
    ladder = Ladder(start=1e-4, factor=3, max_rungs=4, refinements=0, maximize=False)
    run_ladder(ladder, lambda r: (math.log10(r / 3e-4)) ** 2)  # lowest at 3e-4
    assert ladder.best.rate == pytest.approx(3e-4)


def settings_cfg(**compare):
    block = {
        "name": "c",
        "methods": ["mudman", "tar"],
        "rate_key": "method.unlearning_rate",
        "start": {"mudman": 5e-4, "tar": 3e-2},
        "factor": 3,
        "max_rungs": 3,
        "refinements": 1,
        "seeds": [1, 2, 3],
        "workers": 2,
    }
    block.update(compare)
    return OmegaConf.create({"compare": block, "data": {"split_seed": 42}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["mudman", "tarr"]}, "'tarr' is not a method"),
        ({"methods": ["mudman", "baseline"]}, "lists baseline"),
        ({"methods": ["mudman", "mudman"]}, "twice"),
        ({"start": {"mudman": 5e-4}}, "compare.start.tar=None"),
        ({"factor": 1}, "compare.factor=1"),
        ({"seeds": [1, 42]}, "search seed data.split_seed=42"),
        ({"seeds": [1, "2"]}, "compare.seeds="),
        ({"workers": 0}, "compare.workers=0"),
        ({"max_rung": 3}, "compare.max_rung is not a comparison setting"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        read_settings(settings_cfg(**change), METHODS)


def test_shared_overrides_drop_the_comparisons_own_and_refuse_per_trial_keys():
    given = [
        "experiment=compare/smollm2_python",
        "compare.workers=1",
        "+compare.x=1",
        "batch_size=4",
    ]
    assert shared_overrides(given, "method.unlearning_rate") == [
        "experiment=compare/smollm2_python",
        "batch_size=4",
    ]
    for bad in ("method=tar", "seed=3", "data.split_seed=7", "method.unlearning_rate=1e-3"):
        with pytest.raises(ConfigError, match="set per trial by the comparison"):
            shared_overrides([bad], "method.unlearning_rate")


def test_gains_are_paired_per_seed_and_rejected_reruns_are_counted_not_averaged(tmp_path):
    settings = read_settings(settings_cfg(methods=["mudman"], seeds=[1, 2, 3]), METHODS)
    comparison = Comparison(settings, maximize=True)
    runs = [
        TrialRun(Job("mudman", "search", 42, 5e-4), "completed", 4.0, 10, False, tmp_path),
        TrialRun(Job("mudman", "seed", 1, 5e-4), "completed", 4.5, 10, False, tmp_path),
        TrialRun(Job("mudman", "seed", 2, 5e-4), "completed", 3.5, 10, False, tmp_path),
        TrialRun(Job("mudman", "seed", 3, 5e-4), "rejected", None, 5, False, tmp_path),
        TrialRun(Job("baseline", "baseline", 1), "completed", 3.0, 4, False, tmp_path),
        TrialRun(Job("baseline", "baseline", 2), "completed", 3.3, 4, False, tmp_path),
        TrialRun(Job("baseline", "baseline", 3), "completed", 3.1, 4, False, tmp_path),
    ]
    for run in runs:
        comparison.record(run)
    summary = summarize(comparison, maximize=True, objective="forget_loss")
    (mudman,) = summary["methods"]
    assert mudman["gains"] == pytest.approx({1: 1.5, 2: 0.2})
    assert mudman["gain_mean"] == pytest.approx(0.85)
    assert mudman["gain_sem"] == pytest.approx(0.65)  # std(1.5, 0.2) / sqrt(2)
    assert mudman["mean"] == pytest.approx(4.0) and mudman["n_rejected"] == 1
    assert summary["baseline"]["mean"] == pytest.approx(3.1333333)
    low = summarize(comparison, maximize=False, objective="mc_accuracy")["methods"][0]
    assert low["gains"] == pytest.approx({1: -1.5, 2: -0.2})  # lower is better: baseline - value


def test_the_split_seed_changes_the_eval_batches_and_42_keeps_todays(compose):
    from mudman.data.batching import build_trial_data
    from mudman.models.tiny import byte_tokenizer

    cfg = compose()
    built = {
        seed: build_trial_data(cfg.data, byte_tokenizer(), 32, 4, None, split_seed=seed)
        for seed in (1, 2, 42)
    }
    assert not torch.equal(built[1].forget_eval, built[2].forget_eval)
    assert not torch.equal(built[1].retain_eval, built[2].retain_eval)
    default = build_trial_data(cfg.data, byte_tokenizer(), 32, 4, None)  # data.split_seed: 42
    assert torch.equal(default.forget_eval, built[42].forget_eval)
    with pytest.raises(ConfigError, match=r"data\.split_seed=-1"):
        build_trial_data(compose("data.split_seed=-1").data, byte_tokenizer(), 32, 4, None)


@pytest.mark.parametrize("preset", ["compare/smollm2_python", "compare/smollm2_pile_bio"])
def test_the_comparison_presets_compose_and_check_every_method(preset):
    from hydra import compose, initialize_config_dir

    from mudman.compare import method_fingerprints

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"])
        settings = read_settings(cfg, METHODS)
        extended = ["compare.methods=[mudman,no_masking,tar,no_normalization,no_meta_learning]"]
        bigger = read_settings(
            compose("config", overrides=[f"experiment={preset}", *extended]), METHODS
        )
        prints = method_fingerprints([f"experiment={preset}"], bigger, validate=False, inputs=False)
    assert settings.methods == ("mudman", "no_masking", "tar")
    assert cfg.model.name == "smollm2-135m" and cfg.unlearn_passes == 60
    assert set(prints) == {*bigger.methods, "baseline"} and len(set(prints.values())) == 6


def test_the_house_comparison_preset_composes_and_checks_every_method():
    """compare/house_python: the house-model comparison (120 + 60 passes, batch 16 x 100) with
    every MUDMAN-family method and TAR it can extend to, each config validated."""
    from hydra import compose, initialize_config_dir

    from mudman.compare import method_fingerprints

    preset = "experiment=compare/house_python"
    extended = "compare.methods=[mudman,no_masking,tar,no_normalization,no_meta_learning]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[preset])
        settings = read_settings(cfg, METHODS)
        bigger = read_settings(compose("config", overrides=[preset, extended]), METHODS)
        prints = method_fingerprints([preset], bigger, validate=True, inputs=False)
    assert settings.methods == ("mudman", "no_masking", "tar") and settings.search_seed == 42
    assert cfg.model.name == "house" and cfg.data.name == "python"
    budget = (cfg.unlearn_passes, cfg.relearn_passes, cfg.batch_size, cfg.context_len)
    assert budget == (120, 60, 16, 100)
    assert cfg.method.fork_every_n_loops == 6 and cfg.retain_loss_budget == 0.05
    assert set(prints) == {*bigger.methods, "baseline"} and len(set(prints.values())) == 6


def test_an_edited_data_file_is_another_experiment(text_files, tmp_path):
    """A resumed comparison must not reuse trials computed on the file's old content."""
    from hydra import compose, initialize_config_dir

    from mudman.compare import method_fingerprints

    files = {side: tmp_path / f"{side}.jsonl" for side in ("forget", "retain")}
    for side, path in files.items():
        path.write_text(text_files[side].read_text())
    overrides = ["experiment=compare/smollm2_python", *tiny_jsonl_args(files)]
    overrides.append("compare.methods=[mudman]")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        settings = read_settings(compose("config", overrides=overrides), METHODS)
        before = method_fingerprints(overrides, settings, validate=False)
        files["forget"].write_text(files["forget"].read_text() + '{"text": "def added(): pass"}\n')
        after = method_fingerprints(overrides, settings, validate=False)
    assert before["mudman"] != after["mudman"] and before["baseline"] != after["baseline"]


def compare_command(text_files, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mudman",
        "experiment=compare/smollm2_python",
        *tiny_jsonl_args(text_files),
        "logger=none",
        "batch_size=4",
        "context_len=32",
        "unlearn_passes=10",
        "relearn_passes=4",
        "eval_every_passes=2",
        "retain_loss_budget=1.0",
        "compare.methods=[mudman]",
        "compare.max_rungs=1",
        "compare.refinements=0",
        "compare.seeds=[1,2]",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


@pytest.mark.spawns
def test_a_comparison_runs_end_to_end_resumes_and_refuses_another_experiment(text_files, tmp_path):
    run_dir = tmp_path / "cmp"
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    first = subprocess.run(
        compare_command(text_files, run_dir, cache), capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((run_dir / "comparison.json").read_text())
    trials = summary["trials"]
    stages = sorted((t["method"], t["stage"], t["seed"]) for t in trials)
    assert stages.count(("baseline", "baseline", 1)) == 1
    assert [s for s in stages if s[1] == "seed"] == [("mudman", "seed", 1), ("mudman", "seed", 2)]
    assert sum(s[1] == "search" for s in stages) == 1  # max_rungs=1, no refinement
    for trial in trials:  # every number is the one in its trial's results.json
        record = json.loads((Path(trial["directory"]) / "results.json").read_text())
        assert record["config"]["data"]["split_seed"] == trial["seed"]
        assert trial["value"] == (record["objective"] if record["status"] == "completed" else None)
    (mudman,) = summary["methods"]
    base = summary["baseline"]["seed_values"]
    for seed, gain in mudman["gains"].items():
        assert gain == pytest.approx(mudman["seed_values"][seed] - base[seed])
    assert (run_dir / "comparison.png").stat().st_size > 0
    assert "gain over baseline" in first.stdout

    again = subprocess.run(
        compare_command(text_files, run_dir, cache), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[reused]") == len(trials)
    assert json.loads((run_dir / "comparison.json").read_text())["methods"] == summary["methods"]

    other = subprocess.run(
        compare_command(text_files, run_dir, cache, "batch_size=2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode == 2
    assert "holds a trial of a different experiment" in other.stdout + other.stderr
