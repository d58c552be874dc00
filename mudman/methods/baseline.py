"""No unlearning at all: the relearning attack on the untouched model (the paper's baseline)."""

from __future__ import annotations

from mudman.methods.base import METHODS, UnlearningMethod


@METHODS.register("baseline")
class Baseline(UnlearningMethod):
    supports_retain_pause = True  # nothing to pause: study presets may set the rule for all

    def passes_per_loop(self) -> int:
        return 1

    def n_loops(self, unlearn_passes: int) -> int:
        return 0

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        return None
