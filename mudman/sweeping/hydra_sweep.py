"""The sweeper behind ``hydra/sweeper=mudman_optuna``: Hydra multirun -> one Optuna study per
grid cell, trials launched through Hydra's launcher.

``sweep`` reads top to bottom: refuse a password in the storage URL, split the command line
into grid, search space and fixed overrides (grid.py), plan every cell (plan.py: validated,
preflighted, its study named by the experiment's fingerprint) and open every study before the
first trial of any; then either hand the studies to workers (workers.py, submitit_workers.py)
or run them here one after the other (runner.py), each trial's outcome read from its
``results.json`` (outcomes.py), and end with the summary (summary.py).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError
from mudman.redaction import mask_url, redact_text
from mudman.sweeping import summary
from mudman.sweeping.grid import grid_cells, naming, split_arguments
from mudman.sweeping.outcomes import outcome_of
from mudman.sweeping.plan import CellPlan, plan_cell
from mudman.sweeping.runner import (
    SweepInterrupted,
    TrialOutcome,
    WorkersFailed,
    open_study,
    run_study,
)
from mudman.sweeping.storage import refuse_literal_password
from mudman.sweeping.submitit_workers import submit_workers, submitit_executor
from mudman.sweeping.validation import check_sweeper
from mudman.sweeping.workers import spawn_workers

log = logging.getLogger(__name__)


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
            raw = OmegaConf.to_container(self.config.hydra.sweeper, resolve=False)
            refuse_literal_password(raw.get("storage"))
            check_sweeper(self.cfg)
            grid, search, fixed = split_arguments(arguments)
            plans = [
                self._plan(label, overrides, search) for label, overrides in grid_cells(grid, fixed)
            ]
            for plan in plans:  # a study holding another experiment is refused here
                with naming(plan.label):
                    open_study(plan.spec)
            names = [p.spec.name for p in plans]
            sweep_dir = Path(self.config.hydra.sweep.dir)
            storage = os.path.expanduser(str(self.cfg.get("storage")))
            executor = submitit_executor(self.config)
            if executor is not None:  # the launcher places the workers, not the trials
                submit_workers(self.config, executor, self.cfg, sys.argv[1:], names)
                summary.summarize_from_storage(storage, names, sweep_dir)
                return []
            if int(self.cfg.get("n_jobs", 1)) > 1:
                spawn_workers(int(self.cfg["n_jobs"]), names, self.cfg, sweep_dir)
                return []
            studies = []
            for plan in plans:
                log.info("%s", plan.label or "single study")
                studies.append(self._run(plan))
            summary.log_summary([summary.study_state(s) for s in studies], storage, sweep_dir)
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

    def _plan(self, label: str, overrides: list[str], search: list[str]) -> CellPlan:
        """Compose the cell's config as Hydra would for its trials, then plan it."""
        with naming(label):
            try:
                cell_cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, overrides
                )
            except ConfigError:
                raise
            except Exception as err:  # Hydra: unknown option, misspelled key, bad grammar
                raise ConfigError(f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
            return plan_cell(label, overrides, cell_cfg, search)

    def _run(self, plan: CellPlan) -> optuna.Study:
        """Run one study here, each trial one Hydra job (its run dir holds results.json)."""
        spec = plan.spec
        log.info(
            "study %s on %s: %d trials, space %s, fingerprint %s",
            spec.name,
            mask_url(spec.storage_url),
            spec.n_trials,
            spec.attrs.get("search_space"),
            (spec.fingerprint or "")[:12],
        )

        def launch(overrides: list[str], number: int) -> TrialOutcome:
            job = [
                *plan.overrides,
                *overrides,
                f"sweep.study_name={spec.name}",
                f"sweep.trial_number={number}",
            ]
            result = self.launcher.launch([job], initial_job_idx=self.job_idx)[0]
            self.job_idx += 1
            return outcome_of(result, spec.directions)

        study = run_study(spec, launch, heartbeat_interval=plan.heartbeat_interval)
        summary.write_optimization_results(study, Path(self.config.hydra.sweep.dir))
        return study
