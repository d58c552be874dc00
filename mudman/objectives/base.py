"""An objective: optional probes during unlearning, and the score(s) after relearning.

The paper has two: the ablations maximize the lowest forget loss the relearning attack reaches
(``forget_loss``); the WMDP study minimizes multiple-choice accuracy on the hazardous-knowledge
proxy after relearning, while a capability guard prunes trials that lose general ability
(``mc_accuracy``). Each is one registered class and one YAML in ``conf/objective/``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mudman.errors import ConfigError
from mudman.registry import Registry

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
DIRECTIONS = ("maximize", "minimize")


class Objective(ABC):
    """Reads its own ``objective:`` config block; ``values`` are what Optuna optimizes."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.history: list[tuple[int, dict[str, float]]] = []  # (passes, measurements)

    def validate(self) -> None:
        """Raise ``ConfigError`` for bad settings (called before any model loads)."""
        if self.cfg.get("direction") not in DIRECTIONS:
            raise ConfigError(
                f"objective.direction={self.cfg.get('direction')!r}; allowed: "
                + ", ".join(DIRECTIONS)
            )

    @property
    def names(self) -> list[str]:
        """One name per optimized value (several for a multi-objective study)."""
        return [str(self.cfg.name)]

    @property
    def directions(self) -> list[str]:
        return [str(self.cfg.direction)]

    def check_inputs(self, cache_dir: str | None) -> None:  # noqa: B027 - optional hook
        """Load and check any files scoring needs (before a model loads; see preflight)."""

    def prepare(  # noqa: B027 - optional hook
        self,
        tokenizer,
        device: torch.device,
        cache_dir: str | None,
        untouched_key: str | None = None,
    ) -> None:
        """Build whatever scoring needs once per trial (tokenized evaluation sets).

        ``untouched_key`` identifies the untouched model's setup (model, data, dtype, device):
        measurements of the untouched model may be cached under it, as they never change.
        """

    def start(self, model: nn.Module) -> dict[str, float]:
        """Measure the untouched model (logged at pass 0); may set the guard's base."""
        return {}

    probe_every_passes: int | None = None

    def probe(self, model: nn.Module, passes: int) -> dict[str, float]:
        """Periodic measurement during unlearning; raises ``TrialRejected`` to prune."""
        return {}

    @abstractmethod
    def score(self, model: nn.Module, relearn_curve: list[tuple[int, float]]) -> dict[str, float]:
        """Measurements after relearning; ``"objective"`` is the primary value."""

    def values(self, record: dict[str, Any]) -> list[float]:
        """The optimized values of a completed trial, in the order of ``names``."""
        return [record["objective"]]


def build_objective(cfg: DictConfig) -> Objective:
    """Instantiate and validate the objective named by ``objective.name``."""
    objective = OBJECTIVES.get(cfg.name, "objective.name")(cfg)
    objective.validate()
    return objective
