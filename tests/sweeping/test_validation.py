"""Sweeper and report keys are validated before any study is created (issue 12, item 9), and
every grid cell is composed, validated and preflighted before the first trial (item 7)."""

from __future__ import annotations

import subprocess

import optuna
import pytest

from mudman.errors import ConfigError
from mudman.report.__main__ import main as report_main
from mudman.sweeping.space import parse_space
from mudman.sweeping.validation import (
    check_space_size,
    check_study_name,
    check_sweeper,
    check_trial_count,
    study_name_for,
)
from tests.conftest import REPO, tiny_sweep_command

GOOD = {
    "n_trials": 20,
    "n_jobs": 1,
    "worker_id": 0,
    "max_failure_rate": 0.25,
    "heartbeat_interval": 10,
    "grace_period": 30,
    "allow_config_change": False,
}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("n_trials", "abc", r"hydra.sweeper.n_trials='abc'; allowed: an integer >= 1"),
        ("n_trials", -1, r"n_trials=-1; allowed: an integer >= 1"),
        ("n_trials", 0, r"n_trials=0; allowed"),
        ("n_trials", True, r"n_trials=True; allowed"),
        ("n_jobs", 0, r"hydra.sweeper.n_jobs=0; allowed: an integer >= 1"),
        ("worker_id", -2, r"worker_id=-2; allowed: an integer >= 0"),
        ("max_failure_rate", -1, r"max_failure_rate=-1; allowed: a number in \[0.0, 1.0\]"),
        ("max_failure_rate", 1.5, r"max_failure_rate=1.5; allowed"),
        ("heartbeat_interval", 0, r"heartbeat_interval=0; allowed: an integer >= 1"),
        ("grace_period", 15, r"grace_period=15 with heartbeat_interval=10; allowed: an integer "),
        ("allow_config_change", "yes", r"allow_config_change='yes'; allowed: true or false"),
    ],
)
def test_sweeper_keys_name_key_value_and_allowed(key, value, message):
    with pytest.raises(ConfigError, match=message):
        check_sweeper({**GOOD, key: value})


def test_good_sweeper_keys_pass():
    check_sweeper(GOOD)


@pytest.mark.parametrize("name", ["my study", "a/b", "étude", "x=y", "", "-lead", "a" * 201])
def test_study_names_that_break_overrides_or_paths_are_refused(name):
    with pytest.raises(ConfigError, match=r"hydra.sweeper.study_name=.*allowed: 1-200 ASCII"):
        check_study_name(name)


def test_the_fingerprint_token_gives_each_experiment_its_own_name():
    assert study_name_for("ablation-mudman-{fingerprint}", "0123456789abcdef") == (
        "ablation-mudman-01234567"
    )
    assert study_name_for("plain", "0123456789abcdef") == "plain"
    with pytest.raises(ConfigError, match="study_name='a b-01234567'"):
        study_name_for("a b-{fingerprint}", "0123456789abcdef")


def test_study_names_of_the_presets_pass():
    check_study_name("ablation-pythia-14m-python-no_masking")
    check_study_name("wmdp-llama-3.2-1b-mudman")


def test_fixed_values_only_with_n_trials_above_one_is_refused():
    with pytest.raises(ConfigError, match=r"n_trials=5 but hydra.sweeper.params=.*no distribution"):
        check_trial_count(5, {"method.adv_lr": 0.1}, has_distribution=False)
    check_trial_count(1, {"method.adv_lr": 0.1}, has_distribution=False)
    check_trial_count(20, {}, has_distribution=False)  # no space at all: one trial, logged


def test_a_finite_space_smaller_than_n_trials_is_refused():
    space = parse_space({"k": "int(interval(1, 3))", "c": "choice(a, b)"})
    with pytest.raises(ConfigError, match=r"n_trials=7, but .* only 6 distinct parameter sets"):
        check_space_size(7, space)
    check_space_size(6, space)
    check_space_size(1000, parse_space({"x": "interval(0, 1)"}))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--last", "0"], r"--last 0: allowed: an integer >= 1"),
        (["--last", "-3"], r"--last -3: allowed"),
        (["--studies", "abl(ation"], r"--studies 'abl\(ation' is not a valid regular expression"),
        (["--out", "FILE"], r"--out '.*' is a file; allowed: a folder"),
        (["--out", "FILE/sub"], r"is under a file"),
    ],
)
def test_report_flags_are_checked_before_the_storage_is_opened(tmp_path, capsys, args, message):
    (tmp_path / "FILE").write_text("x")
    args = [a.replace("FILE", str(tmp_path / "FILE")) for a in args]
    with pytest.raises(SystemExit) as exit_:
        report_main(["--storage", f"sqlite:///{tmp_path}/none.db", *args])
    assert exit_.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------ through the CLI
def _cli(tmp_path, text_files, *extra):
    cmd = [
        *tiny_sweep_command(text_files),
        "progress=false",
        "relearn_passes=2",
        "eval_every_passes=10",
        f"paths.cache_dir={tmp_path}/cache",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
        f"hydra.sweep.dir={tmp_path}/multirun",
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


RATE = "method.unlearning_rate=interval(1e-4, 1e-2)"
CASES = {
    "bad-n-trials": (
        ["hydra.sweeper.n_trials=abc"],
        "Error: hydra.sweeper.n_trials='abc'; allowed: an integer >= 1",
    ),
    "misspelled-later-cell": (
        [
            "method=mudman,no_maskin",
            "unlearn_passes=10",
            "method.unlearning_rate=interval(1e-4, 1e-2)",
        ],
        "Error: grid cell 2/2 (method=no_maskin): ",
    ),
    "later-cell-bad-passes": (
        ["method=mudman,tar", "unlearn_passes=20", RATE],
        "Error: grid cell 2/2 (method=tar): unlearn_passes=20 is not divisible",
    ),
    "search-space-not-in-baseline": (
        ["method=mudman,baseline", "unlearn_passes=10", "method.retain_momentum=interval(0, 0.9)"],
        "Error: grid cell 2/2 (method=baseline): hydra.sweeper.params.method.retain_momentum",
    ),
}


@pytest.mark.spawns
def test_bad_keys_and_bad_later_grid_cells_fail_before_any_study_or_trial(tmp_path, text_files):
    procs = {}
    for case, (extra, _) in CASES.items():
        (tmp_path / case).mkdir()
        procs[case] = _cli(tmp_path / case, text_files, *extra)
    for case, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        expected = CASES[case][1]
        assert proc.returncode == 2, (case, err[-2000:])
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(expected), (case, err[-2000:])
        db = tmp_path / case / "o.db"
        if db.exists():  # the schema may exist; no study, no trial
            assert optuna.get_all_study_summaries(f"sqlite:///{db}") == [], case
        assert not list((tmp_path / case).glob("multirun/*/trial*")), case
