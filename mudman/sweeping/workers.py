"""``hydra.sweeper.n_jobs > 1`` on one machine: worker processes sharing the study storage.

Each worker is ``python -m mudman`` with the parent's arguments, ``n_jobs=1`` and its own
``worker_id`` (hence its own sampler seed); the parent shows the studies' progress while they
run and forwards a Ctrl-C. submitit_workers.py places the same workers as cluster jobs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mudman.errors import ConfigError
from mudman.sweeping import summary
from mudman.sweeping.runner import SweepInterrupted, check_worker_exits
from mudman.sweeping.storage import make_storage

log = logging.getLogger(__name__)


def worker_environment(n_jobs: int) -> dict[str, str]:
    """Environment of the worker processes: the CPU cores split between them.

    Every torch process otherwise starts one thread per core, so ``n_jobs`` workers would
    oversubscribe the CPU ``n_jobs`` times over (CPU trials slow down; GPU workers only need a
    thread or two to feed the device). A user's own ``OMP_NUM_THREADS`` is kept.
    """
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        env["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // n_jobs))
    return env


def spawn_workers(
    n_jobs: int, names: Sequence[str], sweeper: dict[str, Any], sweep_dir: Path
) -> None:
    """``n_jobs`` worker processes on the shared storage, each with its own sampler seed;
    ``names`` are the planned studies (the parent's progress and summary read them)."""
    storage = str(sweeper.get("storage"))
    if not storage.startswith(("sqlite:///", "postgresql")):
        raise ConfigError("hydra.sweeper.n_jobs > 1 needs a shared storage (sqlite or postgresql)")
    argv = [
        a for a in sys.argv[1:] if not a.startswith(("hydra.sweeper.n_jobs=", "hydra.sweep.dir="))
    ]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # create the schema once, up front (workers creating it together race)
    make_storage(
        os.path.expanduser(storage),
        int(sweeper.get("heartbeat_interval", 10)),
        int(sweeper.get("grace_period", 30)),
    )
    url = os.path.expanduser(storage)
    env = worker_environment(n_jobs)
    procs, logs = [], []
    for worker in range(n_jobs):
        cmd = [
            sys.executable,
            "-m",
            "mudman",
            *argv,
            "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.worker_id={worker}",
            f"hydra.sweep.dir={sweep_dir}/worker{worker}",
        ]
        logs.append(sweep_dir / f"worker{worker}.log")
        with logs[-1].open("w") as handle:
            procs.append(subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env))
        log.info("worker %d started (pid %d), log: %s", worker, procs[-1].pid, logs[-1])
    try:
        summary.watch_progress(
            lambda: all(p.poll() is not None for p in procs),
            lambda: summary.load_states(url, names),
            interval=float(sweeper.get("heartbeat_interval", 10)),
        )
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop_workers(procs)
        raise SweepInterrupted(
            f"interrupted: {n_jobs} workers stopped, their running trials marked for an "
            "immediate redo; run the same command to resume"
        ) from None
    summary.summarize_from_storage(url, names, sweep_dir)
    check_worker_exits(codes, logs)


def stop_workers(procs: list[subprocess.Popen], wait_s: float = 30.0) -> None:
    """First Ctrl-C: forward SIGINT to every worker (each marks its trial for a redo) and wait
    for them; a second Ctrl-C exits at once."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
