"""Weights & Biases tracking that degrades to a warning instead of killing a run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mudman.tracking.base import Tracker

log = logging.getLogger(__name__)


class WandbTracker(Tracker):
    """One W&B run per trial; ``mode: offline`` (default) writes under the run directory."""

    def __init__(self, cfg: DictConfig, config: dict, run_dir: Path) -> None:
        self.run = None
        self._warned = False
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            sweep = config.get("sweep") or {}
            study, number = sweep.get("study_name"), sweep.get("trial_number")
            is_baseline = (config.get("method") or {}).get("algorithm") == "baseline"
            self.run = wandb.init(
                project=cfg.project,
                entity=cfg.get("entity"),
                # in a sweep: one run per trial, grouped by study; trial numbers never repeat
                group=study or cfg.get("group"),
                job_type="baseline" if is_baseline else cfg.get("job_type"),
                name=cfg.get("run_name") or (f"{study}-trial{number:05d}" if study else None),
                tags=list(cfg.get("tags") or []),
                mode=cfg.mode,
                dir=str(run_dir),
                config=config,
                reinit="finish_previous",
            )
        except Exception as err:  # wandb raises many types (network, auth, disk)
            self._warn(f"W&B disabled for this run: {type(err).__name__}: {err}")

    def _warn(self, message: str) -> None:
        if not self._warned:
            log.warning(message)
            self._warned = True

    def _safely(self, action, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            action(*args, **kwargs)
        except Exception as err:
            self._warn(f"W&B call failed, run continues without it: {type(err).__name__}: {err}")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._safely(self.run.log if self.run else None, metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self._safely(self.run.summary.update, values)

    def finish(self, failed: bool = False) -> None:
        self._safely(self.run.finish if self.run else None, exit_code=1 if failed else 0)
        self.run = None
