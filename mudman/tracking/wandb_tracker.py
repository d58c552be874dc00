"""Weights & Biases tracking that degrades to a warning instead of killing a run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mudman.redaction import redact, redact_text
from mudman.tracking.base import Tracker

log = logging.getLogger(__name__)


_ONLINE_FAILED: list[str] = []  # this process could not reach W&B online: the reason


class WandbTracker(Tracker):
    """One W&B run per trial; ``mode: offline`` (default) writes under the run directory.

    W&B never stops a run: when ``mode: online`` cannot reach the server (down, no login, bad
    entity), the run is logged offline under the run dir instead (``wandb sync`` it later), and
    later trials in the same process go offline straight away instead of waiting for the
    timeout again. Any other failure disables W&B for the run. Either is said once.
    """

    def __init__(self, cfg: DictConfig, config: dict, run_dir: Path) -> None:
        self.run = None
        self._warned = False
        config = redact(config)  # never send tokens or passwords to W&B
        mode = cfg.mode
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            sweep = config.get("sweep") or {}
            study, number = sweep.get("study_name"), sweep.get("trial_number")
            is_baseline = (config.get("method") or {}).get("algorithm") == "baseline"
            kwargs = dict(
                project=cfg.project,
                entity=cfg.get("entity"),
                # in a sweep: one run per trial, grouped by study; trial numbers never repeat
                group=study or cfg.get("group"),
                job_type="baseline" if is_baseline else cfg.get("job_type"),
                name=cfg.get("run_name") or (f"{study}-trial{number:05d}" if study else None),
                tags=list(cfg.get("tags") or []),
                dir=str(run_dir),
                config=config,
                reinit="finish_previous",
            )
            if mode == "online" and _ONLINE_FAILED:
                mode = "offline"
                log.info("W&B offline for this trial: online failed before (%s)", _ONLINE_FAILED[0])
            try:
                self.run = wandb.init(mode=mode, **kwargs)
            except Exception as err:
                if mode != "online":
                    raise
                first_line = str(err).splitlines()[0] if str(err) else ""
                reason = f"{type(err).__name__}: {redact_text(first_line)}"
                _ONLINE_FAILED.append(reason)
                self.run = wandb.init(mode="offline", **kwargs)
                self._warn(
                    f"W&B online unreachable ({reason}); logging offline under {run_dir}/wandb "
                    "instead (upload later with `wandb sync`); offline for the rest of this process"
                )
        except Exception as err:  # wandb raises many types (network, auth, disk, settings)
            self._warn(
                f"W&B disabled for this run (logger.mode={mode!r}, logger.entity="
                f"{cfg.get('entity')!r}): {type(err).__name__}: {redact_text(str(err))}"
            )

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
            self._warn(
                f"W&B call failed, run continues without it: {type(err).__name__}: "
                f"{redact_text(str(err))}"
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._safely(self.run.log if self.run else None, metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self._safely(self.run.summary.update, values)

    def finish(self, failed: bool = False) -> None:
        self._safely(self.run.finish if self.run else None, exit_code=1 if failed else 0)
        self.run = None
