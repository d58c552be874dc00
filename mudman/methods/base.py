"""What every unlearning method provides: its pass cost per loop, config checks, and a loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from mudman.data.batching import TrialData
from mudman.errors import ConfigError
from mudman.methods.monitor import PassMonitor
from mudman.registry import Registry

METHODS: Registry[type[UnlearningMethod]] = Registry("method")


class UnlearningMethod(ABC):
    """A method reads its own ``method:`` config block and edits the targeted weights in place."""

    supports_retain_pause: bool = False  # honours ``monitor.skip_unlearning()`` (appendix F.2)

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def passes_per_loop(self) -> int:
        """Forward + backward passes one loop costs: the unit the budget is divided into."""

    def validate(self) -> None:  # noqa: B027 - optional hook, most methods check something
        """Raise ``ConfigError`` for bad hyperparameters (called before any model loads)."""

    def n_loops(self, unlearn_passes: int) -> int:
        per_loop = self.passes_per_loop()
        if unlearn_passes % per_loop:
            raise ConfigError(
                f"unlearn_passes={unlearn_passes} is not divisible by the {per_loop} passes one "
                f"loop of method={self.cfg.name} costs; use a multiple of {per_loop}"
            )
        return unlearn_passes // per_loop

    @abstractmethod
    def unlearn(
        self,
        model: nn.Module,
        params: dict[str, nn.Parameter],
        data: TrialData,
        n_loops: int,
        monitor: PassMonitor,
        progress=None,
    ) -> None:
        """Run ``n_loops`` loops, reporting every pass to ``monitor``."""


def batch_pairs(data: TrialData) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(retain, forget) training batches, cycling when a stream runs out."""
    i = 0
    while True:
        yield (
            data.retain_train[i % len(data.retain_train)],
            data.forget_train[i % len(data.forget_train)],
        )
        i += 1


def build_method(method_cfg: DictConfig) -> UnlearningMethod:
    """Instantiate and validate the method named by ``method.name``."""
    method = METHODS.get(method_cfg.algorithm, "method.algorithm")(method_cfg)
    method.validate()
    return method


def require(cfg: DictConfig, key: str, ok: bool, allowed: str) -> None:
    """One-line hyperparameter check with a message naming key, value and what is allowed."""
    if not ok:
        raise ConfigError(f"method.{key}={cfg.get(key)!r} is out of range; allowed: {allowed}")
