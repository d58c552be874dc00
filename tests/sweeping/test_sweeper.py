"""The Optuna sweeper: search-space grammar, pruning, failures, exact totals, resume, workers."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.sweeping.grid import split_arguments
from mudman.sweeping.runner import StudySpec, TrialOutcome, run_study
from mudman.sweeping.space import parse_space
from mudman.sweeping.storage import make_storage, mask_url
from mudman.sweeping.workers import worker_environment
from tests.conftest import REPO, tiny_sweep_command

optuna.logging.set_verbosity(optuna.logging.WARNING)
VALID = (TrialState.COMPLETE, TrialState.PRUNED)


def spec_for(url, n_trials=5, seed=0, grace=2, **kw):
    space = parse_space({"x": "interval(0, 1)", "k": "int(interval(1, 5))"})
    return StudySpec(
        name="s",
        storage_url=url,
        storage=make_storage(url, 1, grace),
        directions=["maximize"],
        n_trials=n_trials,
        space=space,
        sampler=optuna.samplers.RandomSampler(seed=seed),
        sampler_for=lambda number: optuna.samplers.RandomSampler(seed=seed + number),
        poll_seconds=0.2,
        **kw,
    )


def states(url, name="s"):
    study = optuna.load_study(study_name=name, storage=url)
    return [t.state for t in study.trials], study


# ------------------------------------------------------------------ grammar
def test_params_grammar_maps_to_optuna_distributions():
    space = parse_space(
        {
            "a": "tag(log, interval(1e-7, 3e-2))",
            "b": "int(interval(6, 42))",
            "c": "interval(0, 0.99)",
            "d": "choice(x, y)",
            "e": "range(1, 10, 2)",
            "f": "7",
        }
    )
    assert space["a"] == optuna.distributions.FloatDistribution(1e-7, 3e-2, log=True)
    assert space["b"] == optuna.distributions.IntDistribution(6, 42)
    assert space["c"] == optuna.distributions.FloatDistribution(0.0, 0.99)
    assert space["d"] == optuna.distributions.CategoricalDistribution(["x", "y"])
    assert space["e"] == optuna.distributions.IntDistribution(1, 9, step=2)
    assert space["f"] == 7


@pytest.mark.parametrize(
    "expr, message",
    [
        ("interval(1,", "not valid override grammar"),
        ("tag(log, interval(0, 1))", "low > 0 for log"),
        ("interval(3, 1)", "need low < high"),
    ],
)
def test_malformed_params_are_clear_errors(expr, message):
    with pytest.raises(ConfigError, match=rf"hydra.sweeper.params.lr=.*{message}"):
        parse_space({"lr": expr})


def test_arguments_split_into_grid_search_and_fixed():
    grid, search, fixed = split_arguments(
        ["method=mudman,no_masking", "method.adv_lr=tag(log, interval(1e-3, 0.1))", "seed=3"]
    )
    assert grid == [["method=mudman", "method=no_masking"]]
    assert search == ["method.adv_lr=tag(log, interval(1e-3, 0.1))"]
    assert fixed == ["seed=3"]


def test_storage_urls_are_checked_and_passwords_masked():
    assert mask_url("postgresql://me:s3cret@db/x") == "postgresql://me:***@db/x"
    with pytest.raises(ConfigError, match=r"sqlite:///path\.db or postgresql"):
        make_storage("mysql://me:s3cret@db/x", 1, 2)
    with pytest.raises(ConfigError, match=r"is unreachable") as err:
        make_storage("postgresql://me:s3cret@127.0.0.1:9/x", 1, 2)
    assert "s3cret" not in str(err.value)


# ------------------------------------------------------------------ outcomes
def test_rejected_and_nan_trials_are_pruned_and_the_sweep_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    outcomes = iter(
        [
            TrialOutcome("rejected", attrs={"rejection_reason": "retain loss 3.9 > 3.5"}),
            TrialOutcome("completed", float("nan")),
            TrialOutcome("completed", 1.5),
            TrialOutcome("completed", 2.5),
        ]
    )
    run_study(spec_for(url, n_trials=4), lambda overrides, n: next(outcomes), 0.5)
    got, study = states(url)
    assert got == [TrialState.PRUNED, TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["rejection_reason"] == "retain loss 3.9 > 3.5"
    assert "non-finite" in study.trials[1].user_attrs["rejection_reason"]
    assert study.best_value == 2.5


def test_crashing_trials_fail_with_traceback_and_the_sweep_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    calls = iter(range(100))

    def trial_fn(overrides, number):
        if next(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return TrialOutcome("completed", 1.0)

    run_study(spec_for(url, n_trials=3, max_failure_rate=0.5), trial_fn, 0.5)
    got, study = states(url)
    assert got.count(TrialState.COMPLETE) == 3 and got.count(TrialState.FAIL) == 1
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert "CUDA out of memory" in failed.user_attrs["error"]


def test_too_many_crashes_stop_the_study_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    with pytest.raises(RuntimeError, match=r"more than hydra\.sweeper\.max_failure_rate=0\.25"):
        run_study(
            spec_for(url, n_trials=10), lambda o, n: TrialOutcome("failed", error="boom"), 0.5
        )


def test_n_trials_is_the_total_and_resume_runs_only_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    seen = []
    fn = lambda overrides, n: seen.append(n) or TrialOutcome("completed", float(n))  # noqa: E731
    run_study(spec_for(url, n_trials=3), fn, 0.5)
    run_study(spec_for(url, n_trials=3), fn, 0.5)  # same command again: nothing to do
    assert seen == [0, 1, 2]
    run_study(spec_for(url, n_trials=5), fn, 0.5)
    assert seen == [0, 1, 2, 3, 4]


def test_orphaned_running_trial_is_failed_and_redone_with_same_params(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    spec = spec_for(url, n_trials=2, grace=1)
    study = optuna.create_study(study_name="s", storage=spec.storage, direction="maximize")
    orphan = study.ask()  # a worker that died mid-trial: RUNNING, no more heartbeats
    orphan_x = orphan.suggest_float("x", 0, 1)
    orphan.suggest_int("k", 1, 5)
    spec.storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.5)
    params = []
    run_study(spec, lambda o, n: params.append(o) or TrialOutcome("completed", 1.0), 0.5)
    got, study = states(url)
    assert got.count(TrialState.COMPLETE) == 2 and got.count(TrialState.FAIL) == 1
    assert study.trials[0].state == TrialState.FAIL
    assert f"x={orphan_x}" in params[0]  # the redo re-used the orphan's parameters


def test_a_late_report_for_a_trial_already_marked_orphan_is_dropped(tmp_path, caplog):
    from mudman.sweeping.runner import _tell

    url = f"sqlite:///{tmp_path}/o.db"
    spec = spec_for(url, n_trials=1)
    study = optuna.create_study(study_name="s", storage=spec.storage, direction="maximize")
    trial = study.ask()  # a worker froze past grace_period; another one failed its trial:
    spec.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    with caplog.at_level(logging.WARNING):
        _tell(study, trial, TrialOutcome("completed", 1.0, {"objective": 1.0}))  # no crash
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert "already marked FAIL as an orphan" in caplog.text


def _worker(url, seed, out):
    def fn(overrides, number):
        time.sleep(0.05)
        return TrialOutcome("completed", float(number))

    study = run_study(spec_for(url, n_trials=12, seed=seed), fn, 0.5)
    out.put(seed if study else None)


@pytest.mark.spawns
def test_two_workers_share_one_sqlite_study_without_losing_or_duplicating(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    make_storage(url, 1, 2)  # create tables once
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    # the same base seed, as every worker of one sweep has: seeds follow trial numbers
    procs = [ctx.Process(target=_worker, args=(url, 0, out)) for _ in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    got, study = states(url)
    assert got == [TrialState.COMPLETE] * 12
    assert sorted(t.number for t in study.trials) == list(range(12))
    assert len({t.params["x"] for t in study.trials}) == 12


# ------------------------------------------------------------------ random kills
def _results_worker(url, seed, n_trials, runs, busy):
    """A worker whose trials write results.json atomically and then report, like the sweeper.

    While a trial runs, the worker is marked busy (a file named by its pid) and, until the
    parent has done its kills (a ``release`` file), the trial keeps running: every kill lands
    mid-trial and the number of kills does not depend on the machine's speed.
    """
    from mudman.results import write_json_atomic

    rng = random.Random(seed)
    marker, release = Path(busy) / str(os.getpid()), Path(busy).parent / "release"

    def fn(overrides, number):
        marker.touch()
        deadline = time.time() + 60
        while not release.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.25))
        run_dir = Path(runs) / f"trial{number}"
        value = number + 0.5  # tied to the trial: a value reported for the wrong trial shows
        write_json_atomic({"objective": value, "overrides": overrides}, run_dir / "results.json")
        marker.unlink()
        return TrialOutcome("completed", value, {"objective": value, "run_dir": str(run_dir)})

    run_study(spec_for(url, n_trials=n_trials, seed=seed, grace=3), fn, 0.5)


def run_with_random_kills(url, tmp_path, n_workers=4, n_trials=12, kills=4, seed=0):
    """``n_workers`` workers on one study; SIGKILL a random busy one ``kills`` times (each
    replaced, as a cluster re-submits a task); then one clean resume. Returns the kill count."""
    runs, busy = tmp_path / "runs", tmp_path / "busy"
    busy.mkdir()
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(seed)
    seeds = iter(range(100))

    def start():
        proc = ctx.Process(
            target=_results_worker, args=(url, next(seeds), n_trials, str(runs), str(busy))
        )
        proc.start()
        return proc

    workers = [start() for _ in range(n_workers)]
    killed, deadline = 0, time.time() + 120
    while killed < kills and time.time() < deadline:
        pids = {int(p.name) for p in busy.iterdir()}
        victims = [p for p in workers if p.is_alive() and p.pid in pids]
        if not victims:
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0.0, 0.3))
        victim = rng.choice(victims)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        (busy / str(victim.pid)).unlink(missing_ok=True)
        killed += 1
        workers.append(start())
    (tmp_path / "release").touch()  # the rest of the trials may finish now
    for proc in workers:
        proc.join(240)
    assert all(p.exitcode in (0, -signal.SIGKILL) for p in workers), [p.exitcode for p in workers]
    _results_worker(url, 99, n_trials, str(runs), str(busy))  # the clean resume
    return killed


def assert_study_intact(url, n_trials, runs):
    """No lost, duplicated or half-written trials; exact totals; nothing left running."""
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.trials
    states = [t.state for t in trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}, states  # none RUNNING/WAITING
    assert states.count(TrialState.COMPLETE) == n_trials  # exact total, none lost or extra
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for trial in complete:  # value, attrs and results file agree, all whole
        assert trial.value == trial.number + 0.5
        assert trial.user_attrs["objective"] == trial.value
        record = json.loads((Path(trial.user_attrs["run_dir"]) / "results.json").read_text())
        assert record["objective"] == trial.value
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params)  # no trial done twice (an orphan redone once)
    orphans = [t for t in trials if t.state == TrialState.FAIL]
    for orphan in orphans:  # every orphan redone with its parameters (Optuna retries 3 times)
        same = [t for t in trials if t.params == orphan.params]
        assert any(t.state == TrialState.COMPLETE for t in same) or len(same) > 3
    for path in runs.glob("*/results.json"):  # also the killed trials': whole or absent
        json.loads(path.read_text())
    return orphans


@pytest.mark.spawns
def test_four_sqlite_workers_with_random_kills_lose_and_duplicate_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    make_storage(url, 1, 3)
    killed = run_with_random_kills(url, tmp_path)
    orphans = assert_study_intact(url, 12, tmp_path / "runs")
    assert killed == 4 and len(orphans) >= killed  # every kill landed mid-trial


# ------------------------------------------------------------------ through Hydra
def _sweep(tmp_path, text_files, *extra, n_trials=3):
    env = {**os.environ, "WANDB_MODE": "disabled", "MUDMAN_CACHE": str(tmp_path / "cache")}
    cmd = [
        *tiny_sweep_command(text_files),
        "progress=false",
        "unlearn_passes=30",
        "relearn_passes=10",
        "eval_every_passes=10",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.spawns
def test_hydra_sweep_records_results_and_provenance(tmp_path, text_files):
    proc = _sweep(tmp_path, text_files, "method=mudman,no_masking", n_trials=2)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    url = f"sqlite:///{tmp_path}/o.db"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    assert names == ["jsonl-tiny-llama-mudman", "jsonl-tiny-llama-no_masking"]
    study = optuna.load_study(study_name="jsonl-tiny-llama-no_masking", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["config"]["method"]["masking"] is False
    assert len(study.user_attrs["git_commit"]) == 40 and "git_dirty" in study.user_attrs
    attrs = study.trials[0].user_attrs
    assert attrs["objective"] == study.trials[0].value and attrs["status"] == "completed"
    record = json.loads((tmp_path.joinpath(attrs["run_dir"]) / "results.json").read_text())
    assert record["config"]["sweep"]["study_name"] == "jsonl-tiny-llama-no_masking"


@pytest.mark.spawns
def test_killed_sweep_resumes_with_exact_total(tmp_path, text_files):
    url = f"sqlite:///{tmp_path}/o.db"
    extra = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3")
    proc = _sweep(tmp_path, text_files, *extra, n_trials=4)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill -9 once two trials are done and a third is running
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name="jsonl-tiny-llama-mudman", storage=url).trials
        except Exception:
            continue
        if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and any(
            t.state == TrialState.RUNNING for t in trials
        ):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="jsonl-tiny-llama-mudman", storage=url)
    done_before = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert any(t.state == TrialState.RUNNING for t in study.trials)
    output = _sweep(tmp_path, text_files, *extra, n_trials=4).communicate(timeout=300)[0]
    study = optuna.load_study(study_name="jsonl-tiny-llama-mudman", storage=url)
    got = [t.state for t in study.trials]
    assert got.count(TrialState.COMPLETE) == 4, output[-2000:]
    assert got.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in got
    assert all(study.trials[n].state == TrialState.COMPLETE for n in done_before)
    for trial in study.trials:  # results intact: each completed trial's file matches its value
        if trial.state == TrialState.COMPLETE:
            record = json.loads((Path(trial.user_attrs["run_dir"]) / "results.json").read_text())
            assert record["objective"] == trial.value == trial.user_attrs["objective"]
    params = [tuple(sorted(t.params.items())) for t in study.trials if t.state in VALID]
    assert len(set(params)) == 4  # new samples after the resume (was: copies of trials 0-2)

    recorded, n_before = study.user_attrs["config"], len(study.trials)
    # another experiment under the same (default) name: refused before any trial
    output = _sweep(tmp_path, text_files, *extra, "unlearn_passes=20", n_trials=6).communicate(
        timeout=300
    )[0]
    (line,) = [x for x in output.splitlines() if x.startswith("Error:")]
    assert "study 'jsonl-tiny-llama-mudman'" in line and "holds another experiment" in line
    assert "unlearn_passes: 30 -> 20" in line and "allow_config_change=true" in line
    study = optuna.load_study(study_name="jsonl-tiny-llama-mudman", storage=url)
    assert len(study.trials) == n_before and study.user_attrs["config"] == recorded


def test_workers_split_the_cpu_cores_unless_the_user_set_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert worker_environment(4)["OMP_NUM_THREADS"] == "4"
    assert worker_environment(3)["OMP_NUM_THREADS"] == "5"
    assert worker_environment(32)["OMP_NUM_THREADS"] == "1"  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert worker_environment(4)["OMP_NUM_THREADS"] == "7"


@pytest.mark.spawns
def test_n_jobs_spawns_workers_that_fill_one_study_exactly(tmp_path, text_files):
    proc = _sweep(tmp_path, text_files, "hydra.sweeper.n_jobs=2", n_trials=4)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    study = optuna.load_study(
        study_name="jsonl-tiny-llama-mudman", storage=f"sqlite:///{tmp_path}/o.db"
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert (tmp_path / "multirun" / "worker0").is_dir() and (
        tmp_path / "multirun" / "worker1"
    ).is_dir()


def test_worker_exits_warn_per_lost_worker_and_fail_in_one_line_only_when_all_failed(
    tmp_path, caplog
):
    from mudman.sweeping.runner import WorkersFailed, check_worker_exits

    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    for i, path in enumerate(logs):
        path.write_text(f"start {i}\n\nlast line of worker {i}\n")
    with caplog.at_level(logging.WARNING, logger="mudman.sweeping.runner"):
        check_worker_exits([0, 0, 0], logs)
        assert not caplog.records
        check_worker_exits([0, -9, 1], logs)  # the survivor filled every study
    lines = [r.getMessage() for r in caplog.records]
    assert any("worker 1 exited with code -9 (killed by a signal)" in m for m in lines)
    assert any("worker 2 exited with code 1 (crashed)" in m for m in lines)
    assert any("1 of 3 workers finished every study" in m for m in lines)
    with pytest.raises(WorkersFailed, match=r"all 3 sweep workers failed") as err:
        check_worker_exits([-9, 1, 2], logs)
    message = str(err.value)
    assert "\n" not in message and "last line of worker 0" in message
