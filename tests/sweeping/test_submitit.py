"""Sweep workers placed by Hydra's submitit launcher (``submitit_local`` here; SLURM is the same
code path with another executor): real job processes, real SQLite and PostgreSQL studies, and a
worker killed mid-trial whose orphan the other worker redoes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.sweeping.submitit_workers import executor_arguments, worker_command
from tests.conftest import REPO, tiny_sweep_command
from tests.sweeping.test_postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

STUDY = "jsonl-tiny-llama-mudman"


def test_worker_command_drops_the_parents_launcher_and_worker_keys(tmp_path):
    argv = [
        "-m",
        "hydra/sweeper=mudman_optuna",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "++hydra.launcher.mem_gb=8",
        "hydra.sweeper.n_jobs=8",
        "hydra.sweep.dir=/somewhere",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    cmd = worker_command(argv, 3, tmp_path)
    assert cmd[:3] == [sys.executable, "-m", "mudman"]
    assert cmd[3:] == [
        "-m",
        "hydra/sweeper=mudman_optuna",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
        "hydra/launcher=basic",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.worker_id=3",
        f"hydra.sweep.dir={tmp_path}/worker3",
    ]


def test_launcher_keys_map_onto_the_executor_as_the_plugin_maps_them():
    launcher = {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "submitit_folder": "/sweep/.submitit/%j",
        "timeout_min": 240,
        "gpus_per_node": 1,
        "mem_gb": 16,
        "tasks_per_node": 1,
        "partition": "gpu",
        "max_num_timeout": 2,
        "additional_parameters": {"mail-type": "END"},
    }
    init, update = executor_arguments("slurm", launcher)
    assert init == {"folder": "/sweep/.submitit/%j", "slurm_max_num_timeout": 2}
    assert update == {
        "timeout_min": 240,
        "gpus_per_node": 1,
        "mem_gb": 16,
        "tasks_per_node": 1,
        "slurm_partition": "gpu",
        "slurm_additional_parameters": {"mail-type": "END"},
    }
    with pytest.raises(ConfigError, match=r"hydra.launcher.tasks_per_node=4.*allowed: 1"):
        executor_arguments("slurm", {**launcher, "tasks_per_node": 4})


def _sweep_env(tmp_path):
    return {
        **os.environ,
        "WANDB_MODE": "disabled",
        "MUDMAN_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_sweeps():
    """A failing test leaves no sweep running: its whole process group (parent, submitit's
    controllers, workers) is killed at teardown."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _submitit_sweep(tmp_path, text_files, storage, *extra, n_trials=4, n_jobs=2):
    cmd = [
        *tiny_sweep_command(text_files),
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=30",
        "progress=false",
        "unlearn_passes=30",
        "relearn_passes=10",
        "eval_every_passes=10",
        "compare_baseline=false",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_sweep_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, for _no_stray_sweeps
    )
    _STARTED.append(proc)
    return proc


def _completed_by_worker(study, sweep_dir: Path) -> dict[int, list[int]]:
    """Trial numbers per worker, from each completed trial's run directory."""
    by_worker: dict[int, list[int]] = {}
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            run_dir = Path(trial.user_attrs["run_dir"])
            worker = int(run_dir.relative_to(sweep_dir).parts[0].removeprefix("worker"))
            by_worker.setdefault(worker, []).append(trial.number)
            record = json.loads((run_dir / "results.json").read_text())
            assert record["objective"] == trial.value == trial.user_attrs["objective"]
            assert record["config"]["sweep"]["trial_number"] == trial.number
    return by_worker


@pytest.mark.spawns
def test_submitit_local_workers_fill_one_sqlite_study_exactly(tmp_path, text_files):
    storage = f"sqlite:///{tmp_path}/o.db"
    proc = _submitit_sweep(tmp_path, text_files, storage)
    output = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    sweep_dir = tmp_path / "multirun"
    by_worker = _completed_by_worker(study, sweep_dir)
    assert sorted(n for numbers in by_worker.values() for n in numbers) == [0, 1, 2, 3]
    # two distinct jobs ran workers 0 and 1 (each through the basic launcher, in-process)
    for worker in (0, 1):
        assert f"worker {worker} submitted as local job" in output
    assert list((sweep_dir / ".submitit").glob("*/*_0_log.out"))  # submitit's own job logs
    # the parent's own summary, read from the storage, as with n_jobs
    assert (sweep_dir / f"optimization_results.{STUDY}.yaml").is_file()
    for worker, numbers in by_worker.items():  # each trial ran in-process in its worker
        for number in numbers:
            run_dir = sweep_dir / f"worker{worker}" / STUDY / f"trial{number}"
            hydra_cfg = (run_dir / ".hydra" / "hydra.yaml").read_text()
            assert f"worker_id: {worker}" in hydra_cfg and "BasicLauncher" in hydra_cfg
    assert len({tuple(t.params.items()) for t in study.trials}) == 4  # distinct sampler seeds


@pytest.mark.spawns
def test_a_bad_launcher_key_is_one_clear_line(tmp_path, text_files):
    proc = _submitit_sweep(
        tmp_path, text_files, f"sqlite:///{tmp_path}/o.db", "hydra.launcher.tasks_per_node=2"
    )
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output[-3000:]
    assert "hydra.launcher.tasks_per_node=2: each sweep worker is one job of one task" in output
    assert "Traceback" not in output


@pytest.mark.spawns
def test_a_bad_trial_key_fails_in_the_parent_before_any_job_is_submitted(tmp_path, text_files):
    proc = _submitit_sweep(tmp_path, text_files, f"sqlite:///{tmp_path}/o.db", "batch_size=0")
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output[-3000:]
    assert "batch_size" in output and "Traceback" not in output
    assert "submitted as" not in output and not (tmp_path / "multirun" / ".submitit").exists()


def _worker_pid(worker: int) -> int | None:
    """The pid of worker ``worker``'s ``python -m mudman`` process (a child of its job)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mudman" in args and f"hydra.sweeper.worker_id={worker}".encode() in args:
            return int(proc.name)
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _kill_worker_mid_trial(proc, sweep_dir: Path, worker: int, preempt: bool = False) -> None:
    """SIGKILL worker ``worker`` while one of its trials runs (run dir made, no results yet);
    or, with ``preempt``, send its submitit job the pre-emption signal instead."""
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        running = [
            d
            for d in (sweep_dir / f"worker{worker}" / STUDY).glob("trial*")
            if not (d / "results.json").exists()
        ]
        pid = _worker_pid(worker)
        if running and pid is not None:
            if preempt:  # the job process (the worker's parent) gets submitit's USR signal
                job = _parent(pid)
                if job is None or b"submitit.core._submit" not in _cmdline(job):
                    time.sleep(0.1)
                    continue
                os.kill(job, signal.SIGUSR2)
            else:
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)
    raise AssertionError("worker never started a trial")


def _assert_killed_worker_redone(proc, storage, sweep_dir: Path, n_trials: int) -> None:
    output = proc.communicate(timeout=400)[0]
    # the sweep is complete (the other worker finished every study): success, with a warning
    assert proc.returncode == 0, output[-3000:]
    assert "worker 1 (job" in output and "did not finish" in output
    assert "1 of 2 workers finished every study" in output
    study = optuna.load_study(study_name=STUDY, storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == n_trials, states  # exact total
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    (orphan,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert "failure" not in orphan.user_attrs  # marked stale by heartbeat, not a crash
    redo = [t for t in study.trials if t.params == orphan.params and t.number != orphan.number]
    assert [t.state for t in redo] == [TrialState.COMPLETE]  # redone once, same parameters
    by_worker = _completed_by_worker(study, sweep_dir)
    assert redo[0].number in by_worker[0]  # ... by the surviving worker
    assert sorted(n for numbers in by_worker.values() for n in numbers) == sorted(
        t.number for t in study.trials if t.state == TrialState.COMPLETE
    )


KILL_ARGS = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3")


@pytest.mark.spawns
def test_a_submitit_worker_killed_mid_trial_sqlite(tmp_path, text_files):
    storage = f"sqlite:///{tmp_path}/o.db"
    proc = _submitit_sweep(tmp_path, text_files, storage, *KILL_ARGS, n_trials=4)
    _kill_worker_mid_trial(proc, tmp_path / "multirun", worker=1)
    _assert_killed_worker_redone(proc, storage, tmp_path / "multirun", 4)


@pytest.mark.spawns
def test_a_submitit_worker_killed_mid_trial_postgres(tmp_path, text_files, postgres_url):  # noqa: F811
    proc = _submitit_sweep(tmp_path, text_files, postgres_url, *KILL_ARGS, n_trials=4)
    _kill_worker_mid_trial(proc, tmp_path / "multirun", worker=1)
    _assert_killed_worker_redone(proc, postgres_url, tmp_path / "multirun", 4)


@pytest.mark.spawns
def test_a_preempted_submitit_worker_is_requeued_and_resumes(tmp_path, text_files):
    """Pre-emption (submitit's USR2 to the job): the worker is stopped mid-trial, the job
    requeued, the restarted worker resumes; the orphan is redone and both workers finish."""
    storage = f"sqlite:///{tmp_path}/o.db"
    sweep_dir = tmp_path / "multirun"
    proc = _submitit_sweep(tmp_path, text_files, storage, *KILL_ARGS, n_trials=6)
    _kill_worker_mid_trial(proc, sweep_dir, worker=1, preempt=True)
    output = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "worker 0 (job" in output and "worker 1 (job" in output
    assert "did not finish" not in output  # both workers finished: the requeued one too
    study = optuna.load_study(study_name=STUDY, storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 6 and TrialState.RUNNING not in states, states
    (orphan,) = [t for t in study.trials if t.state == TrialState.FAIL]
    redo = [t for t in study.trials if t.params == orphan.params and t.number != orphan.number]
    assert [t.state for t in redo] == [TrialState.COMPLETE]
    _completed_by_worker(study, sweep_dir)  # results files agree with the study
    log = (sweep_dir / "worker1.log").read_text()
    assert log.count(f"study {STUDY} on ") == 2  # the worker ran twice, into the same log
    submitit_logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_0_log.*"))
    assert "Requeued job" in submitit_logs
