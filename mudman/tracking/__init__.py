"""Experiment tracking: Weights & Biases (offline by default) or nothing.

``base`` holds the interface a trial talks to, ``wandb_tracker`` the W&B implementation (``wandb``
itself is imported only when a W&B run starts); :func:`build_tracker` picks one by name.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mudman.tracking.base import NullTracker, Tracker
from mudman.tracking.wandb_tracker import WandbTracker

__all__ = ["NullTracker", "Tracker", "WandbTracker", "build_tracker"]


def build_tracker(logger_cfg: DictConfig, config: dict, run_dir: Path) -> Tracker:
    """Create the tracker named by ``logger.name`` (``wandb`` or ``none``)."""
    if logger_cfg.name == "none":
        return NullTracker()
    if logger_cfg.name == "wandb":
        return WandbTracker(logger_cfg, config, run_dir)
    raise ValueError(f"logger.name={logger_cfg.name!r} is not allowed; allowed: wandb, none")
