"""Run a comparison: every trial a ``python -m mudman`` process of its own, a few at a time.

Why processes: a trial is then exactly what a user gets from the same overrides by hand
(results.json, W&B run, the trial's own checks), a crash or out-of-memory kills one trial and
not the comparison, and workers split the cores (``OMP_NUM_THREADS`` = cores / workers).

Resuming: a comparison directory is its identity (``hydra.run.dir``, by default
``outputs/compare/<compare.name>``). A second run into it reuses every trial whose
results.json exists and whose experiment fingerprint is the one this run would run; a trial of
a different experiment there stops the comparison before anything runs, naming the keys that
differ. One lock per directory: two comparisons never write into the same one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mudman.compare.ladder import Ladder
from mudman.compare.plan import CompareSettings, Job
from mudman.errors import ConfigError
from mudman.record import Rejection, TrialRecord
from mudman.results import write_json_atomic

log = logging.getLogger("mudman.compare")


@dataclass
class TrialRun:
    """What one finished (or reused) trial gave."""

    job: Job
    status: str  # completed | rejected | failed
    value: float | None
    seconds: float
    reused: bool
    directory: Path
    detail: str = ""


@contextmanager
def comparison_lock(directory: Path):
    """Hold ``directory/.lock``; a second comparison into the same directory is refused."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / ".lock", "a+")  # noqa: SIM115 - held for the whole comparison
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"{directory} is in use by a running comparison ({holder}); wait for it, or give "
            "this one another directory (compare.name=<new name>)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class TrialLauncher:
    """Starts trial processes with the comparison's shared overrides plus the job's own."""

    def __init__(
        self,
        shared_overrides: list[str],
        settings: CompareSettings,
        directory: Path,
        fingerprints: dict[str, str],
        names_runs: bool = False,
    ) -> None:
        self.shared = shared_overrides
        self.names_runs = names_runs  # the logger takes a run name (W&B): one per trial
        self.settings = settings
        self.directory = directory
        self.fingerprints = fingerprints  # per method: the experiment its trials must have
        self.threads = max(1, (os.cpu_count() or 1) // settings.workers)
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def command(self, job: Job, run_dir: Path) -> list[str]:
        run_name = f"{self.settings.name}-{job.dirname.replace('/', '-')}"
        return [
            sys.executable,
            "-m",
            "mudman",
            *self.shared,
            *job.overrides(self.settings.rate_key),
            "compare=null",
            "compare_baseline=false",  # the baseline runs as its own trial on every seed
            "progress=false",
            f"sweep.study_name={self.settings.name}/{job.method}",
            f"hydra.run.dir='{run_dir}'",  # quoted: a path may hold = or , (override grammar)
            *([f"logger.run_name={run_name}"] if self.names_runs else []),
        ]

    def check_existing(self) -> None:
        """Refuse, before any trial runs, a directory holding trials of another experiment."""
        for stamp in sorted((self.directory / "trials").glob("*/*/job.json")):
            try:
                recorded = json.loads(stamp.read_text())
                method, fingerprint = recorded["job"]["method"], recorded["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise ConfigError(
                    f"{stamp} cannot be read ({err}); move {stamp.parent} away or use another "
                    "compare.name"
                ) from None
            if method in self.fingerprints and fingerprint != self.fingerprints[method]:
                raise ConfigError(
                    f"{stamp.parent} holds a trial of a different experiment (its config "
                    "differs from this run's); use another compare.name, or move the old "
                    "comparison away"
                )

    def reusable(self, job: Job) -> TrialRun | None:
        """The finished trial already in the job's directory, if it is this experiment's."""
        run_dir = self.directory / "trials" / job.dirname
        results, stamp = run_dir / "results.json", run_dir / "job.json"
        if not results.exists():
            return None
        try:
            record = TrialRecord.read(results)
            recorded = json.loads(stamp.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(
                f"{run_dir} holds a results.json that cannot be checked ({err}); move it away "
                "or use another compare.name"
            ) from None
        if recorded != self.fingerprints[job.method]:
            raise ConfigError(
                f"{run_dir} holds a trial of a different experiment (its config differs from "
                "this run's); use another compare.name, or move the old comparison away"
            )
        return outcome_of(job, record, run_dir, reused=True)

    def run(self, job: Job) -> TrialRun:
        """Run the job's trial to the end (or return its earlier result)."""
        reused = self.reusable(job)
        if reused is not None:
            return reused
        run_dir = self.directory / "trials" / job.dirname
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            {"job": job.__dict__, "fingerprint": self.fingerprints[job.method]},
            run_dir / "job.json",
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        start = time.perf_counter()
        with open(run_dir / "trial.log", "w") as out:
            with self._lock:
                if self.stopping:
                    return TrialRun(job, "failed", None, 0.0, False, run_dir, "interrupted")
                proc = subprocess.Popen(
                    self.command(job, run_dir),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches the comparison, which stops them
                )
                self._procs.add(proc)
            code = proc.wait()
            with self._lock:
                self._procs.discard(proc)
        seconds = time.perf_counter() - start
        results = run_dir / "results.json"
        if code == 0 and results.exists():
            return outcome_of(job, TrialRecord.read(results), run_dir, reused=False)
        lines = (run_dir / "trial.log").read_text(errors="replace").strip().splitlines()
        lines = [line for line in lines if line.strip() and "HYDRA_FULL_ERROR" not in line]
        detail = f"exit code {code}: {lines[-1] if lines else 'no output'}"
        return TrialRun(job, "failed", None, round(seconds, 1), False, run_dir, detail)

    def stop_all(self) -> None:
        """Stop every running trial (Ctrl-C): each is told to stop, then killed after 10 s."""
        with self._lock:
            self.stopping = True
            procs = list(self._procs)
        for proc in procs:
            _signal_group(proc, signal.SIGINT)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def outcome_of(job: Job, record: TrialRecord, run_dir: Path, reused: bool) -> TrialRun:
    status = str(record.status)
    value = record.objective if status == "completed" else None
    detail = ""
    if status == "rejected":
        rejection = record.rejection or Rejection()
        reason = "?" if rejection.reason is None else rejection.reason
        passes = "?" if rejection.passes is None else rejection.passes
        detail = f"{reason} after {passes} passes"
    seconds = float((record.timings or {}).get("total_s") or 0.0)
    return TrialRun(job, status, value, seconds, reused, run_dir, detail)


class Comparison:
    """The searches, re-runs and baselines of one comparison, scheduled on ``workers``."""

    def __init__(self, settings: CompareSettings, maximize: bool) -> None:
        self.settings = settings
        self.ladders = {
            m: Ladder(
                settings.start[m],
                settings.factor,
                settings.max_rungs,
                settings.refinements,
                maximize,
            )
            for m in settings.methods
        }
        self.runs: list[TrialRun] = []
        self.searching = set(settings.methods)
        self.failed_methods: set[str] = set()
        self._queued: set[Job] = set()

    def best_rate(self, method: str) -> float | None:
        best = self.ladders[method].best
        return None if best is None else best.rate

    def ready_jobs(self, running: set[Job]) -> list[Job]:
        """Jobs that can start now, searches first (they unlock the rest)."""
        jobs: list[Job] = []
        search_seed = self.settings.search_seed
        for method in self.settings.methods:
            if method not in self.searching or any(j.method == method for j in running):
                continue
            rate = self.ladders[method].next_rate()
            if rate is None:
                self.searching.discard(method)
            else:
                jobs.append(Job(method, "search", search_seed, rate))
        for method in self.settings.methods:
            rate = self.best_rate(method)
            if method in self.searching or method in self.failed_methods or rate is None:
                continue
            jobs += [Job(method, "seed", seed, rate) for seed in self.settings.seeds]
        jobs += [Job("baseline", "baseline", seed) for seed in self.settings.seeds]
        return [j for j in jobs if j not in self._queued and j not in running]

    def mark_queued(self, job: Job) -> None:
        self._queued.add(job)

    def record(self, run: TrialRun) -> None:
        self.runs.append(run)
        if run.job.stage != "search":
            return
        if run.status == "failed":  # a crash is not a rejection: stop this method's search
            self.searching.discard(run.job.method)
            self.failed_methods.add(run.job.method)
        else:
            self.ladders[run.job.method].record(run.job.rate, run.value)


def execute(comparison: Comparison, launcher: TrialLauncher, on_finish) -> None:
    """Run every job until the searches end and all re-runs and baselines are done."""
    running: dict[Future, Job] = {}
    with ThreadPoolExecutor(max_workers=comparison.settings.workers) as pool:
        try:
            while True:
                for job in comparison.ready_jobs(set(running.values())):
                    if len(running) >= comparison.settings.workers:
                        break
                    comparison.mark_queued(job)
                    running[pool.submit(launcher.run, job)] = job
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    run = future.result()  # a ConfigError (foreign trial) stops the comparison
                    comparison.record(run)
                    on_finish(run)
        except BaseException:
            launcher.stop_all()
            raise
