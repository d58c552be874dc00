"""Hydra multirun -> one Optuna study per grid cell, trials launched through Hydra's launcher.

Command-line overrides are split three ways:
- plain comma lists (``method=mudman,no_masking``) are *grid axes*: each combination is a cell
  with its own study (name, search space and trial count come from that cell's composed config);
- functional sweeps (``interval``, ``tag(log, ...)``, ``int(...)``, ``choice(...)``, ``range``)
  add to / replace the cell's ``hydra.sweeper.params`` search space;
- everything else is passed to every trial unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError
from mudman.preflight import check_data, check_model, check_objective
from mudman.redaction import mask_url, redact, redact_text, url_password
from mudman.sweeping import summary
from mudman.sweeping.fingerprint import experiment_of, fingerprint
from mudman.sweeping.provenance import git_state
from mudman.sweeping.runner import (
    StudySpec,
    SweepInterrupted,
    TrialOutcome,
    WorkersFailed,
    check_worker_exits,
    open_study,
    run_study,
)
from mudman.sweeping.space import check_space, parse_space
from mudman.sweeping.storage import make_storage
from mudman.sweeping.submitit_workers import submit_workers, submitit_executor
from mudman.sweeping.validation import (
    check_space_size,
    check_sweeper,
    check_trial_count,
    study_name_for,
)

log = logging.getLogger(__name__)

TRIAL_ATTRS = (
    "status",
    "objective",
    "objectives",
    "rejection",
    "losses",
    "passes",
    "timings",
    "baseline",
    "worst_attack",
)


def split_arguments(arguments: list[str]) -> tuple[list[list[str]], list[str], list[str]]:
    """-> (grid axes as lists of ``key=value``, search-space overrides, fixed overrides)."""
    parser = OverridesParser.create()
    grid, search, fixed = [], [], []
    for text, override in zip(arguments, parser.parse_overrides(arguments), strict=True):
        value = override.value() if override.is_sweep_override() else None
        if isinstance(value, ChoiceSweep) and value.simple_form:
            key = override.get_key_element()
            grid.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        elif override.is_sweep_override():
            search.append(text)
        else:
            fixed.append(text)
    return grid, search, fixed


def trial_attrs(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The results.json fields stored on the Optuna trial (JSON-safe, no config copy)."""
    attrs = {k: record.get(k) for k in TRIAL_ATTRS if record.get(k) is not None}
    if record.get("attacks"):  # each attack's value (its curve stays in results.json)
        attrs["attack_values"] = {a["label"]: a.get("value") for a in record["attacks"]}
    if isinstance(attrs.get("baseline"), dict):
        baseline = attrs.pop("baseline")
        attrs["baseline_objective"] = baseline.get("objective")
        if baseline.get("attacks"):
            attrs["baseline_attack_values"] = {
                a["label"]: a.get("value") for a in baseline["attacks"]
            }
    if record.get("rejection"):
        attrs["rejection_reason"] = record["rejection"]["reason"]
    attrs["run_dir"] = str(run_dir)
    return json.loads(json.dumps(attrs, default=str))


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


def study_directions(cell_cfg: DictConfig) -> list[str]:
    """The objective's directions; ``hydra.sweeper.direction``, if set, must agree with them."""
    from mudman.objectives import build_objective

    directions = build_objective(cell_cfg.objective).directions
    wanted = cell_cfg.hydra.sweeper.get("direction")
    if wanted is not None:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        if wanted != directions:
            raise ConfigError(
                f"hydra.sweeper.direction={wanted} contradicts objective={cell_cfg.objective.name}"
                f", which optimizes {directions}; leave hydra.sweeper.direction null"
            )
    return directions


@dataclass
class CellPlan:
    """One grid cell, composed, validated and preflighted: ready to open and run its study."""

    label: str  # "grid cell 2/3 (method=tar)", or "" for a sweep of one study
    overrides: list[str]
    cfg: DictConfig
    spec: StudySpec
    heartbeat_interval: float


def seeded_samplers(sampler_cfg: dict[str, Any]) -> Any:
    """Trial number -> a sampler seeded ``seed + number``, or ``None`` without a seed.

    Trial numbers are unique in a study (they are taken under the study lock), so resumed,
    re-run and concurrent processes never replay one another's proposals, and a resume
    continues the sequence where the killed run stopped.
    """
    if sampler_cfg.get("seed") is None:
        return None
    base = int(sampler_cfg["seed"])
    return lambda number: instantiate({**sampler_cfg, "seed": base + number})


class OptunaGridSweep:
    """The sweeper's logic, kept outside ``hydra_plugins`` so it is plain, testable code."""

    def __init__(self, **cfg: Any) -> None:
        self.cfg = cfg

    def setup(
        self, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        # ask/tell with heartbeats is what we want; Optuna's "experimental" notes are noise here
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        summary.route_optuna_logging()  # Optuna's lines in the project's one log format
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.job_idx = 0

    def sweep(self, arguments: list[str]) -> list[optuna.Study]:
        """Every cell composed, validated, preflighted and its study opened (fingerprint
        compared) before the first trial of any; then the studies run one after the other."""
        try:
            self._refuse_literal_password()
            check_sweeper(self.cfg)
            grid, search, fixed = split_arguments(arguments)
            cells = list(itertools.product(*grid)) or [()]
            plans = [  # errors name the cell (a single study needs no name)
                self._plan_cell(
                    f"grid cell {n}/{len(cells)} ({' '.join(c)})" if len(cells) > 1 else "",
                    [*fixed, *c],
                    search,
                )
                for n, c in enumerate(cells, 1)
            ]
            for plan in plans:  # a study holding another experiment is refused here
                with _naming(plan.label):
                    open_study(plan.spec)
            executor = submitit_executor(self.config)
            if executor is not None:  # the launcher places the workers, not the trials
                names = [p.spec.name for p in plans]
                submit_workers(self.config, executor, self.cfg, sys.argv[1:], names)
                self._summarize_workers(names)
                return []
            if int(self.cfg.get("n_jobs", 1)) > 1:
                self._spawn_workers(int(self.cfg["n_jobs"]), [p.spec.name for p in plans])
                return []
            studies = []
            for plan in plans:
                log.info("%s", plan.label or "single study")
                studies.append(self._run_plan(plan))
            summary.log_summary(
                [summary.study_state(s) for s in studies],
                os.path.expanduser(str(self.cfg.get("storage"))),
                Path(self.config.hydra.sweep.dir),
            )
            return studies
        except ConfigError as err:  # bad input: one clear line, no traceback, exit code 2
            print(f"Error: {redact_text(str(err))}", file=sys.stderr)
            sys.exit(2)
        except SweepInterrupted as err:
            print(str(err), file=sys.stderr)
            sys.exit(130)
        except WorkersFailed as err:
            print(f"Error: {redact_text(str(err))}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:  # outside a trial (preflight, waiting for other workers)
            print(
                "interrupted: no trial was running here; run the same command to resume",
                file=sys.stderr,
            )
            sys.exit(130)

    def _refuse_literal_password(self) -> None:
        """A password typed into the storage URL would be saved by Hydra in every trial's
        ``.hydra/hydra.yaml``; only the environment variable keeps it out of files."""
        raw = OmegaConf.to_container(self.config.hydra.sweeper, resolve=False).get("storage")
        if isinstance(raw, str) and url_password(raw):
            raise ConfigError(
                f"hydra.sweeper.storage={mask_url(raw)!r} holds a password in the config or on "
                "the command line, which Hydra records in every trial's .hydra/hydra.yaml; "
                "allowed: the URL in the environment (MUDMAN_OPTUNA_STORAGE=postgresql://...), "
                "or a URL without password plus PGPASSWORD or ~/.pgpass"
            )

    def _cell_config(self, overrides: list[str]) -> DictConfig:
        loader = self.hydra_context.config_loader
        return loader.load_sweep_config(self.config, overrides)

    def _plan_cell(self, label: str, cell_overrides: list[str], search: list[str]) -> CellPlan:
        with _naming(label):
            try:
                cell_cfg = self._cell_config(cell_overrides)
            except ConfigError:
                raise
            except Exception as err:  # Hydra: unknown option, misspelled key, bad grammar
                raise ConfigError(f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
            return self._plan_composed(label, cell_overrides, cell_cfg, search)

    def _plan_composed(
        self, label: str, cell_overrides: list[str], cell_cfg: DictConfig, search: list[str]
    ) -> CellPlan:
        from mudman.config import validate_config

        sweeper = cell_cfg.hydra.sweeper
        check_sweeper(sweeper)
        params = OmegaConf.to_container(sweeper.params, resolve=True) if sweeper.params else {}
        space = parse_space(params)  # refuses a params: that is not a mapping
        for text in search:
            key, _, expression = text.partition("=")
            params[key] = expression
        space = parse_space(params)
        has_search = any(
            isinstance(d, optuna.distributions.BaseDistribution) for d in space.values()
        )
        check_trial_count(int(sweeper.n_trials), params, has_search)
        n_trials = int(sweeper.n_trials) if has_search else 1
        if not has_search and int(sweeper.n_trials) > 1:
            log.info(
                "%s: no search space, so one trial (hydra.sweeper.n_trials=%d does not apply)",
                label,
                int(sweeper.n_trials),
            )
        check_space_size(n_trials, space)
        validate_config(cell_cfg)  # a bad cell fails here, not in every trial
        directions = study_directions(cell_cfg)
        check_space(cell_cfg, space)  # every key exists; each range's ends pass validation
        experiment = experiment_of(cell_cfg, params)
        digest = fingerprint(experiment)
        name = study_name_for(sweeper.study_name, digest)
        url = os.path.expanduser(str(sweeper.storage))
        storage = make_storage(url, int(sweeper.heartbeat_interval), int(sweeper.grace_period))
        check_model(cell_cfg)  # model config + module tree, then data: still no weights
        check_data(cell_cfg)
        check_objective(cell_cfg)
        sampler_cfg = OmegaConf.to_container(sweeper.sampler, resolve=True)
        resolved = OmegaConf.to_container(cell_cfg, resolve=False)
        resolved.pop("hydra", None)
        spec = StudySpec(
            name=name,
            storage_url=url,
            storage=storage,
            directions=directions,
            n_trials=n_trials,
            space=space,
            sampler=instantiate(sampler_cfg),
            sampler_for=seeded_samplers(sampler_cfg),
            max_failure_rate=float(sweeper.max_failure_rate),
            experiment=redact(experiment),
            fingerprint=digest,
            allow_config_change=bool(sweeper.get("allow_config_change", False)),
            attrs=redact(  # study attrs are read by everyone with access to the storage
                {
                    **git_state(),
                    "config": json.loads(json.dumps(resolved, default=str)),
                    "search_space": params,
                    "n_trials": n_trials,
                }
            ),
        )
        return CellPlan(label, cell_overrides, cell_cfg, spec, float(sweeper.heartbeat_interval))

    def _run_plan(self, plan: CellPlan) -> optuna.Study:
        spec, cell_overrides, directions = plan.spec, plan.overrides, plan.spec.directions
        url = spec.storage_url
        log.info(
            "study %s on %s: %d trials, space %s, fingerprint %s",
            spec.name,
            mask_url(url),
            spec.n_trials,
            spec.attrs.get("search_space"),
            (spec.fingerprint or "")[:12],
        )

        def launch(overrides: list[str], number: int) -> TrialOutcome:
            job = [
                *cell_overrides,
                *overrides,
                f"sweep.study_name={spec.name}",
                f"sweep.trial_number={number}",
            ]
            result = self.launcher.launch([job], initial_job_idx=self.job_idx)[0]
            self.job_idx += 1
            if result.status == JobStatus.FAILED:
                err = result._return_value
                error_type = type(err).__name__
                error = "".join(traceback.format_exception(type(err), err, err.__traceback__))
                del err, result  # the traceback holds the trial's tensors: let them go
                return TrialOutcome("failed", error=redact_text(error), error_type=error_type)
            run_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
            record = json.loads((run_dir / "results.json").read_text())
            status = "rejected" if record["status"] == "rejected" else "completed"
            value = record.get("objective")
            if len(directions) > 1 and record.get("objectives"):
                value = list(record["objectives"].values())
            return TrialOutcome(status, value, redact(trial_attrs(record, run_dir)))

        study = run_study(spec, launch, heartbeat_interval=plan.heartbeat_interval)
        self._write_summary(study)
        return study

    def _write_summary(self, study: optuna.Study) -> None:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {"study_name": study.study_name}
        if len(study.directions) > 1:
            summary["pareto_front"] = [
                {"number": t.number, "values": t.values, "params": t.params}
                for t in study.best_trials
            ]
        else:
            try:
                summary.update(best_value=study.best_value, best_params=study.best_params)
            except ValueError:
                summary["best_value"] = None  # no completed trial yet
        path = sweep_dir / f"optimization_results.{study.study_name}.yaml"
        OmegaConf.save(OmegaConf.create(summary), path)

    def _summarize_workers(self, names: list[str]) -> None:
        """After the workers: the parent's own optimization_results.<study>.yaml and summary,
        read from the storage."""
        url = os.path.expanduser(str(self.cfg.get("storage")))
        for name in names:
            with contextlib.suppress(KeyError):  # a study no worker created
                self._write_summary(optuna.load_study(study_name=name, storage=url))
        summary.log_summary(summary.load_states(url, names), url, Path(self.config.hydra.sweep.dir))

    def _spawn_workers(self, n_jobs: int, names: list[str]) -> None:
        """``n_jobs`` worker processes on the shared storage, each with its own sampler seed;
        ``names`` are the planned studies (the parent's progress and summary read them)."""
        storage = str(self.cfg.get("storage"))
        if not storage.startswith(("sqlite:///", "postgresql")):
            raise ConfigError(
                "hydra.sweeper.n_jobs > 1 needs a shared storage (sqlite or postgresql)"
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        argv = [
            a
            for a in sys.argv[1:]
            if not a.startswith(("hydra.sweeper.n_jobs=", "hydra.sweep.dir="))
        ]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # create the schema once, up front (workers creating it together race)
        make_storage(
            os.path.expanduser(storage),
            int(self.cfg.get("heartbeat_interval", 10)),
            int(self.cfg.get("grace_period", 30)),
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
                procs.append(
                    subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
                )
            log.info("worker %d started (pid %d), log: %s", worker, procs[-1].pid, logs[-1])
        try:
            summary.watch_progress(
                lambda: all(p.poll() is not None for p in procs),
                lambda: summary.load_states(url, names),
                interval=float(self.cfg.get("heartbeat_interval", 10)),
            )
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt:
            stop_workers(procs)
            raise SweepInterrupted(
                f"interrupted: {n_jobs} workers stopped, their running trials marked for an "
                "immediate redo; run the same command to resume"
            ) from None
        self._summarize_workers(names)
        check_worker_exits(codes, logs)


@contextmanager
def _naming(label: str) -> Iterator[None]:
    """Prefix a ConfigError raised inside with the grid cell it belongs to."""
    try:
        yield
    except ConfigError as err:
        if not label or str(err).startswith("grid cell "):
            raise
        raise ConfigError(f"{label}: {err}") from err


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
