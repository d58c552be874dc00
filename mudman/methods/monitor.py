"""Pass accounting and the periodic check that rejects a trial.

Methods report every forward or backward pass they make; every ``eval_every_passes`` the
monitor evaluates forget/retain loss on the fixed batches and raises ``TrialRejected`` if the
retain loss left its budget or anything stopped being finite. Probes (the objective's periodic
multiple-choice evaluations) run on their own period and may reject too. With a pause budget
(the paper's appendix F.2 rule), ``paused`` is true while the last evaluated retain loss is
above ``initial + pause_budget``: methods then skip their unlearning update but keep retaining.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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
        probes: Sequence[tuple[int, Callable[[int], object]]] = (),
        pause_budget: float | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.eval_every_passes = eval_every_passes
        self.retain_limit = initial_retain_loss + retain_budget
        self.pause_limit = None if pause_budget is None else initial_retain_loss + pause_budget
        self.on_eval = on_eval
        self.probes = list(probes)  # (every_passes, probe(passes)); a probe may reject
        self.passes = 0
        self.paused = False
        self.paused_loops = 0
        self.history: list[tuple[int, dict[str, float]]] = []
        self.probed_at: list[int] = []

    def count(self, n_passes: int) -> None:
        """Record passes; evaluate and probe once for every boundary that was crossed."""
        before = self.passes
        self.passes += n_passes
        if self.passes // self.eval_every_passes > before // self.eval_every_passes:
            self.check()
        for every, probe in self.probes:
            if self.passes // every > before // every:
                self.probed_at.append(self.passes)
                probe(self.passes)

    def finish(self) -> None:
        """Judge the final weights if the last boundary did not fall on the last pass."""
        if not self.history or self.history[-1][0] != self.passes:
            self.check()
        if self.probes and (not self.probed_at or self.probed_at[-1] != self.passes):
            self.probed_at.append(self.passes)
            for _, probe in self.probes:
                probe(self.passes)

    def skip_unlearning(self) -> bool:
        """True while paused (appendix F.2); counts the loops whose unlearning step is skipped."""
        if self.paused:
            self.paused_loops += 1
        return self.paused

    def check(self) -> dict[str, float]:
        """Evaluate now; reject the trial on a broken budget or a non-finite loss."""
        losses = self.evaluate()
        self.history.append((self.passes, losses))
        if self.on_eval is not None:
            self.on_eval(self.passes, losses)
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrialRejected("non-finite loss", self.passes, losses)
        self.paused = self.pause_limit is not None and losses["retain_loss"] > self.pause_limit
        if losses["retain_loss"] > self.retain_limit:
            raise TrialRejected(
                f"retain loss {losses['retain_loss']:.4f} > budget limit {self.retain_limit:.4f}",
                self.passes,
                losses,
            )
        return losses
