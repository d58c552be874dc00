"""The tracker interface a trial talks to, so tracking can never break a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig


class Tracker:
    """Receives metrics on one global step axis (passes since the start of unlearning)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log scalar metrics at ``step``."""

    def summary(self, values: dict[str, Any]) -> None:
        """Record final values of the run."""

    def finish(self, failed: bool = False) -> None:
        """Flush and close."""


class NullTracker(Tracker):
    """``logger=none``: tracking disabled."""


def build_tracker(logger_cfg: DictConfig, config: dict, run_dir: Path) -> Tracker:
    """Create the tracker named by ``logger.name`` (``wandb`` or ``none``)."""
    if logger_cfg.name == "none":
        return NullTracker()
    if logger_cfg.name == "wandb":
        from mudman.tracking.wandb_tracker import WandbTracker

        return WandbTracker(logger_cfg, config, run_dir)
    raise ValueError(f"logger.name={logger_cfg.name!r} is not allowed; allowed: wandb, none")
