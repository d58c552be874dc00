"""One study is one experiment, and every valid trial is a distinct sample (issue 12, items 1-3).

Resumes, re-runs and concurrent commands never evaluate a parameter set the study already
holds; a study opened with another experiment is refused before any trial; the recorded
config is never rewritten; the report counts distinct samples only.
"""

from __future__ import annotations

import multiprocessing
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.report.stats import study_stats
from mudman.sweeping.fingerprint import experiment_of, fingerprint
from mudman.sweeping.plan import seeded_samplers
from mudman.sweeping.runner import StudySpec, TrialOutcome, open_study, run_study
from mudman.sweeping.space import parse_space
from mudman.sweeping.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"x": "interval(0, 1)", "k": "int(interval(1, 5))"}


def spec(url, n_trials, sampler_for=None, experiment=None, **kw):
    """A study spec; without ``sampler_for`` every process replays one seeded sequence, as
    mudman's sweeper did before (seed 42 + worker id in every process)."""
    return StudySpec(
        name="s",
        storage_url=url,
        storage=make_storage(url, 1, 2),
        directions=["maximize"],
        n_trials=n_trials,
        space=parse_space(SPACE),
        sampler=optuna.samplers.RandomSampler(seed=0),
        sampler_for=sampler_for,
        poll_seconds=0.1,
        experiment=experiment,
        fingerprint=fingerprint(experiment) if experiment is not None else None,
        **kw,
    )


def complete_params(url):
    study = optuna.load_study(study_name="s", storage=url)
    return [tuple(sorted(t.params.items())) for t in study.trials if t.state == TrialState.COMPLETE]


def value_of(overrides, number):
    return TrialOutcome("completed", float(number))


# ------------------------------------------------------------------ 1. resume
def test_a_resume_whose_sampler_replays_its_sequence_never_repeats_a_trial(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    run_study(spec(url, 3), value_of, 0.5)  # killed here, say; then the same command again:
    run_study(spec(url, 6), value_of, 0.5)  # a fresh process, the same seed, same proposals
    params = complete_params(url)
    assert len(params) == 6 and len(set(params)) == 6  # were: trials 3-5 copies of 0-2
    study = optuna.load_study(study_name="s", storage=url)
    repeats = [t for t in study.trials if t.user_attrs.get("failure") == "duplicate"]
    assert repeats and all(t.state == TrialState.FAIL for t in repeats)


def test_seeds_follow_trial_numbers_so_a_resume_continues_the_sequence(tmp_path):
    samplers = seeded_samplers({"_target_": "optuna.samplers.RandomSampler", "seed": 7})
    whole, parts = f"sqlite:///{tmp_path}/whole.db", f"sqlite:///{tmp_path}/parts.db"
    run_study(spec(whole, 6, samplers), value_of, 0.5)
    run_study(spec(parts, 2, samplers), value_of, 0.5)  # killed after 2 trials
    run_study(spec(parts, 6, samplers), value_of, 0.5)  # resumed by a new process
    assert complete_params(parts) == complete_params(whole)  # no replay, no gap
    assert len(set(complete_params(whole))) == 6


def test_tpe_in_the_sweeper_config_uses_constant_liar():
    cfg = OmegaConf.load("conf/hydra/sweeper/mudman_optuna.yaml")
    sampler = seeded_samplers(OmegaConf.to_container(cfg.sweeper.sampler))(3)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._constant_liar


# ------------------------------------------------------------------ 2. concurrency
def _same_command(url, n_trials, out):
    def slow(overrides, number):
        time.sleep(0.05)
        return TrialOutcome("completed", float(number))

    run_study(spec(url, n_trials), slow, 0.5)
    out.put(True)


@pytest.mark.spawns
def test_two_identical_commands_at_once_never_evaluate_one_parameter_set_twice(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    make_storage(url, 1, 2)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_same_command, args=(url, 8, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    params = complete_params(url)
    assert len(params) == 8 and len(set(params)) == 8  # were: 3 sets twice


def test_a_sampler_stuck_on_held_parameters_stops_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    stuck = lambda number: optuna.samplers.RandomSampler(seed=0)  # noqa: E731
    run_study(spec(url, 1, stuck), value_of, 0.5)
    with pytest.raises(RuntimeError, match=r"already holds; the search space is \(nearly\)"):
        run_study(spec(url, 2, stuck, max_duplicate_proposals=3), value_of, 0.5)


# ------------------------------------------------------------------ 3. one study, one experiment
def experiment(unlearn_passes=30, lr="interval(0, 1)"):
    cfg = OmegaConf.create(
        {"unlearn_passes": unlearn_passes, "method": {"name": "mudman"}, "logger": {"x": 1}}
    )
    return experiment_of(cfg, {"method.lr": lr})


def test_run_only_keys_do_not_change_the_fingerprint():
    base = OmegaConf.create({"unlearn_passes": 30, "progress": True, "paths": {"cache_dir": "a"}})
    other = OmegaConf.create({"unlearn_passes": 30, "progress": False, "paths": {"cache_dir": "b"}})
    assert fingerprint(experiment_of(base, {})) == fingerprint(experiment_of(other, {}))
    changed = OmegaConf.create({"unlearn_passes": 20, "progress": True})
    assert fingerprint(experiment_of(base, {})) != fingerprint(experiment_of(changed, {}))
    assert fingerprint(experiment_of(base, {})) != fingerprint(experiment_of(base, {"x": "1"}))
    tables = OmegaConf.create({"unlearn_passes": 30, "search_space": {"tar": {"x": "1"}}})
    assert fingerprint(experiment_of(tables, {})) == fingerprint(experiment_of(base, {}))


def test_a_study_holding_another_experiment_is_refused_and_its_record_kept(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    first = spec(url, 2, experiment=experiment(), attrs={"config": {"unlearn_passes": 30}})
    run_study(first, value_of, 0.5)
    run_study(spec(url, 3, experiment=experiment()), value_of, 0.5)  # same experiment: resume
    new = experiment(20, "interval(0, 2)")
    changed = spec(url, 5, experiment=new, attrs={"config": {"unlearn_passes": 20}})
    with pytest.raises(ConfigError) as err:
        run_study(changed, value_of, 0.5)
    message = str(err.value)
    assert "holds another experiment" in message
    assert "unlearn_passes: 30 -> 20" in message and "search_space.method.lr" in message
    assert "hydra.sweeper.study_name=s-2" in message
    assert "hydra.sweeper.allow_config_change=true" in message
    study = optuna.load_study(study_name="s", storage=url)
    assert len(complete_params(url)) == 3  # nothing ran
    assert study.user_attrs["config"] == {"unlearn_passes": 30}  # never rewritten
    assert study.user_attrs["fingerprint"] == first.fingerprint


def test_continuing_a_changed_experiment_is_explicit_and_recorded(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    run_study(spec(url, 2, experiment=experiment(), attrs={"config": {"a": 1}}), value_of, 0.5)
    changed = spec(url, 4, experiment=experiment(20), allow_config_change=True)
    run_study(changed, value_of, 0.5)
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["config"] == {"a": 1}
    (change,) = study.user_attrs["config_changes"]
    assert change["fingerprint"] == changed.fingerprint and change["first_trial"] == 2
    assert change["differences"][0][0] == "unlearn_passes"
    open_study(spec(url, 4, experiment=experiment(20)))  # accepted once: resumes from now on


def test_a_study_without_fingerprint_but_with_trials_is_not_silently_adopted(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    run_study(spec(url, 1), value_of, 0.5)  # written without an experiment record
    with pytest.raises(ConfigError, match="no experiment fingerprint"):
        open_study(spec(url, 2, experiment=experiment()))


# ------------------------------------------------------------------ the report's N
def test_the_report_counts_each_parameter_set_once(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for x, value in ((0.1, 1.0), (0.2, 2.0), (0.1, 1.0), (0.2, 2.0), (0.3, 6.0)):
        study.enqueue_trial({"x": x})  # a study written by the old sweeper: copies included
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
    stats = study_stats(study, last_n=30)
    assert stats.last_n == 3 and stats.n_repeats == 2
    assert stats.mean == pytest.approx(3.0)
