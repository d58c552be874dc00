"""The ``hydra/sweeper=mudman_optuna`` (alias ``optuna``) plugin: a thin shell around
mudman.sweeping.

Hydra imports every module of the ``hydra_plugins`` namespace on every run (also a single
trial, ``--cfg job`` or ``--help``) to discover plugins, so this module imports nothing heavy:
Optuna and the sweep logic load only when a sweep starts (Hydra's own plugins do the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hydra.plugins.sweeper import Sweeper

if TYPE_CHECKING:
    from hydra.types import HydraContext, TaskFunction
    from omegaconf import DictConfig


class MudmanOptunaSweeper(Sweeper):
    """Optuna (>= 4) sweeper with pruning, exact resume, shared storage and grids of studies."""

    def __init__(self, **cfg: Any) -> None:
        from mudman.sweeping.hydra_sweep import OptunaGridSweep

        self.impl = OptunaGridSweep(**cfg)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.impl.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)
