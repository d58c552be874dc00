"""Sweep workers as submitit jobs: ``hydra/launcher=submitit_slurm`` (or ``submitit_local``).

Hydra's submitit launcher, used as is, would submit every *trial* as its own job and wait for it
before asking the study for the next one: one trial at a time, each through the queue. Here the
launcher places the sweep's *workers* instead: ``hydra.sweeper.n_jobs`` jobs (a SLURM job array,
or local processes), each one the same normal worker that ``n_jobs`` starts on one machine
(``python -m mudman`` with its own ``worker_id``, hence its own sampler seed, heartbeats, the
study lock and exact totals), running its trials in-process with Hydra's basic launcher. The
launcher's own keys (``timeout_min``, ``partition``, ``gpus_per_node``, ``mem_gb``, ...) size
each worker job, mapped onto the executor exactly as the plugin maps them.

submitit and ``hydra-submitit-launcher`` are optional (``pip install -e '.[cluster]'``) and are
imported only when such a launcher is selected.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError
from mudman.redaction import redact_text
from mudman.sweeping import summary
from mudman.sweeping.runner import SweepInterrupted, WorkersFailed, log_survivors
from mudman.sweeping.storage import make_storage

log = logging.getLogger(__name__)

PLUGIN_MODULE = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"
EXECUTORS = {"LocalLauncher": "local", "SlurmLauncher": "slurm"}
# The plugin's keys shared by all executors (its BaseQueueConf); submitit takes them unprefixed,
# every other key as ``<executor>_<key>`` (slurm_partition, ...), the plugin's own mapping.
BASE_KEYS = frozenset(
    {
        "submitit_folder",
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
)
INIT_KEYS = frozenset({"max_num_timeout"})  # executor constructor arguments, not parameters
# Arguments of the parent's command line that a worker must not inherit: it runs its trials
# in-process (basic launcher), as one worker, in its own sweep directory.
_PARENT_ONLY = (
    "hydra/launcher=",
    "hydra.launcher.",
    "+hydra.launcher.",
    "++hydra.launcher.",
    "hydra.sweeper.n_jobs=",
    "hydra.sweeper.worker_id=",
    "hydra.sweep.dir=",
)
_PR_SET_PDEATHSIG = 1


def submitit_executor(config: DictConfig) -> str | None:
    """``"local"`` / ``"slurm"`` when the selected launcher is the submitit plugin's, else None."""
    launcher = config.hydra.get("launcher")
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    module, _, name = target.rpartition(".")
    if module != PLUGIN_MODULE:
        return None
    if name not in EXECUTORS:
        raise ConfigError(
            f"hydra.launcher._target_={target!r} is not supported; allowed: "
            + ", ".join(f"{PLUGIN_MODULE}.{n}" for n in EXECUTORS)
        )
    return EXECUTORS[name]


def executor_arguments(executor: str, launcher: dict[str, Any]) -> tuple[dict, dict]:
    """-> (constructor arguments, ``update_parameters`` arguments) of submitit's AutoExecutor,
    from the resolved ``hydra.launcher`` node, keyed as the plugin keys them."""
    params = {k: v for k, v in launcher.items() if k != "_target_"}
    for key in ("nodes", "tasks_per_node"):
        if int(params.get(key) or 1) != 1:
            raise ConfigError(
                f"hydra.launcher.{key}={params[key]}: each sweep worker is one job of one task; "
                "allowed: 1 (set hydra.sweeper.n_jobs=N for N workers)"
            )
    init = {"folder": params.pop("submitit_folder")}
    for key in INIT_KEYS & params.keys():
        init[f"{executor}_{key}"] = params.pop(key)
    update = {k if k in BASE_KEYS else f"{executor}_{k}": v for k, v in params.items()}
    return init, update


def worker_command(argv: list[str], worker: int, sweep_dir: Path) -> list[str]:
    """The command of worker ``worker``: the parent's arguments as one basic-launcher worker."""
    kept = [a for a in argv if not a.lstrip("~").startswith(_PARENT_ONLY)]
    return [
        sys.executable,
        "-m",
        "mudman",
        *kept,
        "hydra/launcher=basic",
        "hydra.sweeper.n_jobs=1",
        f"hydra.sweeper.worker_id={worker}",
        f"hydra.sweep.dir={sweep_dir}/worker{worker}",
    ]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """The worker dies with its job process (a cancelled or killed job leaves no stray worker;
    its running trial is then an orphan that the other workers, or a resume, redo)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class WorkerJob:
    """What one submitit job runs: the worker command, its output appended to ``log_path``.

    ``cpu_share`` workers share the job's cores (all of them on a local machine, one on a
    cluster node where each job has its own allocation); as with ``n_jobs``, a user's own
    ``OMP_NUM_THREADS`` is kept.
    """

    command: list[str]
    log_path: str
    cwd: str
    cpu_share: int = 1
    _process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __call__(self) -> int:
        env = dict(os.environ)
        if "OMP_NUM_THREADS" not in env:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            env["OMP_NUM_THREADS"] = str(max(1, cores // self.cpu_share))
        with open(self.log_path, "a") as handle:  # a requeued worker continues the same log
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            code = self._process.wait()
        if code:
            tail = Path(self.log_path).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with code {code}; end of {self.log_path}:\n{tail}")
        return code

    def checkpoint(self) -> Any:
        """submitit calls this when the job is pre-empted, or times out with
        ``max_num_timeout`` > 0: stop the worker and requeue the same worker. The new one
        resumes the study; the trial it was running is an orphan, redone with its parameters."""
        from submitit.helpers import DelayedSubmission

        if self._process is not None:
            # a signal handler interrupting Popen.wait: no Popen call here (its lock is held);
            # the job process exits right after this, reaping nothing is fine
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
        return DelayedSubmission(WorkerJob(self.command, self.log_path, self.cwd, self.cpu_share))

    def __getstate__(self) -> dict[str, Any]:  # a running process is not part of the job
        return {**self.__dict__, "_process": None}


def submit_workers(
    config: DictConfig,
    executor: str,
    sweeper: dict[str, Any],
    argv: list[str],
    names: list[str] | None = None,
) -> None:
    """Submit ``hydra.sweeper.n_jobs`` worker jobs, wait for all, report each; fail only if
    none finished.

    A worker exits 0 only once every study of the sweep holds its ``n_trials`` valid trials,
    so one finished worker means the sweep is complete; a worker lost on the way (killed,
    pre-empted, out of time) left at most an orphaned trial, which the others redid.
    """
    import submitit  # installed with the plugin that selected this path

    n_jobs = int(sweeper.get("n_jobs", 1))
    if n_jobs < 1:
        raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs}; allowed: an integer >= 1")
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    init, update = executor_arguments(executor, launcher)
    # the workers share the study: create the schema once, up front (creating it together races)
    make_storage(
        os.path.expanduser(str(sweeper.get("storage"))),
        int(sweeper.get("heartbeat_interval", 10)),
        int(sweeper.get("grace_period", 30)),
    )
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _warn_hidden_gpus(executor, update)
    jobs_exec = submitit.AutoExecutor(cluster=executor, **init)
    jobs_exec.update_parameters(**update)
    workers = [
        WorkerJob(
            command=worker_command(argv, worker, sweep_dir),
            log_path=str(sweep_dir / f"worker{worker}.log"),
            cwd=os.getcwd(),
            cpu_share=n_jobs if executor == "local" else 1,
        )
        for worker in range(n_jobs)
    ]
    jobs = jobs_exec.submit_array(workers)
    for worker, job in enumerate(jobs):
        log.info(
            "worker %d submitted as %s job %s, log: %s",
            worker,
            executor,
            job.job_id,
            workers[worker].log_path,
        )
    url = os.path.expanduser(str(sweeper.get("storage")))
    try:  # the parent shows the studies' progress (trials done / total) while it waits
        summary.watch_progress(
            lambda: all(job.done() for job in jobs),
            lambda: summary.load_states(url, names or []),
            interval=float(sweeper.get("heartbeat_interval", 10)),
        )
    except KeyboardInterrupt:
        if executor == "local":
            for job in jobs:
                job.cancel(check=False)
        ids = " ".join(job.job_id for job in jobs)
        where = (
            "the local jobs were stopped"
            if executor == "local"
            else f"the SLURM jobs keep running (scancel {ids} stops them)"
        )
        raise SweepInterrupted(
            f"interrupted: {where}; their running trials are redone; run the same command to resume"
        ) from None
    failures: dict[int, str] = {}
    for worker, job in enumerate(jobs):
        try:
            job.result()
            log.info("worker %d (job %s) finished", worker, job.job_id)
        except Exception as err:  # killed, pre-empted, timed out or crashed: say which, go on
            failures[worker] = redact_text(f"{type(err).__name__}: {err}")
    for worker, error in failures.items():
        log.warning(
            "worker %d (job %s) did not finish: %s; submitit's logs: %s",
            worker,
            jobs[worker].job_id,
            error.splitlines()[0],
            jobs[worker].paths.stdout.parent,
        )
    if len(failures) == len(jobs):
        first = min(failures)
        raise WorkersFailed(
            f"all {len(jobs)} sweep workers failed; the same command resumes the studies. "
            f"Worker {first}: {failures[first]}"
        )
    log_survivors(len(jobs) - len(failures), len(jobs))


def _warn_hidden_gpus(executor: str, update: dict[str, Any]) -> None:
    """submitit's local executor sets ``CUDA_VISIBLE_DEVICES`` to ``gpus_per_node`` devices:
    unset, its jobs see no GPU and ``device=auto`` would quietly train on the CPU."""
    if executor != "local" or update.get("gpus_per_node"):
        return
    import torch

    if torch.cuda.is_available():
        log.warning(
            "hydra/launcher=submitit_local hides the GPUs from its jobs unless "
            "hydra.launcher.gpus_per_node is set (e.g. hydra.launcher.gpus_per_node=1: every "
            "worker on GPU 0); the workers will run on the CPU"
        )
