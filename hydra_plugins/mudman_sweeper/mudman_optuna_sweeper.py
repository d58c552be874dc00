"""The ``hydra/sweeper=mudman_optuna`` plugin: a thin shell around mudman.sweeping."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mudman.sweeping.hydra_sweep import OptunaGridSweep


class MudmanOptunaSweeper(Sweeper):
    """Optuna (>= 4) sweeper with pruning, exact resume, shared storage and grids of studies."""

    def __init__(self, **cfg: Any) -> None:
        self.impl = OptunaGridSweep(**cfg)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.impl.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)
