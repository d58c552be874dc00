"""Pass accounting and the periodic check that rejects a trial.

Methods report every forward or backward pass they make; every ``eval_every_passes`` the
monitor evaluates forget/retain loss on the fixed batches and raises ``TrialRejected`` if the
retain loss left its budget or anything stopped being finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mudman.errors import TrialRejected


class PassMonitor:
    """Counts passes; evaluates and enforces the retain budget at every evaluation boundary."""

    def __init__(
        self,
        evaluate: Callable[[], dict[str, float]],
        eval_every_passes: int,
        retain_budget: float,
        initial_retain_loss: float,
        on_eval: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.eval_every_passes = eval_every_passes
        self.retain_limit = initial_retain_loss + retain_budget
        self.on_eval = on_eval
        self.passes = 0
        self.history: list[tuple[int, dict[str, float]]] = []

    def count(self, n_passes: int) -> None:
        """Record passes; evaluate once if an evaluation boundary was crossed."""
        before = self.passes // self.eval_every_passes
        self.passes += n_passes
        if self.passes // self.eval_every_passes > before:
            self.check()

    def check(self) -> dict[str, float]:
        """Evaluate now; reject the trial on a broken budget or a non-finite loss."""
        losses = self.evaluate()
        self.history.append((self.passes, losses))
        if self.on_eval is not None:
            self.on_eval(self.passes, losses)
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrialRejected("non-finite loss", self.passes, losses)
        if losses["retain_loss"] > self.retain_limit:
            raise TrialRejected(
                f"retain loss {losses['retain_loss']:.4f} > budget limit {self.retain_limit:.4f}",
                self.passes,
                losses,
            )
        return losses
