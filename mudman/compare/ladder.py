"""A rate search for a handful of trials: a x``factor`` ladder, then refinement.

Why not Optuna here: at 4-6 trials per method, TPE is still sampling at random (its first 10
trials are random by default) and a log-uniform draw over three decades lands a trial near the
working rate by luck. The working region of an unlearning rate is bounded by the retain budget:
too low changes nothing, too high is rejected. So the search walks a geometric ladder from a
known-sane start up to the first rejection (down to the first completion when the start is
already rejected) while the best rung is the highest tried, steps one rung below when the best
is the lowest tried (the peak may lie below the start), then tries the geometric midpoint
between the best rate and the neighbour on its more promising side. Every step is
deterministic given the outcomes, so a resumed comparison asks for exactly the trials it asked
for before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """One finished trial of the search: ``value`` is None when it was rejected."""

    rate: float
    value: float | None

    @property
    def completed(self) -> bool:
        return self.value is not None


@dataclass
class Ladder:
    """Deterministic rate search; ``maximize`` says which objective value is better."""

    start: float
    factor: float = 3.0
    max_rungs: int = 4
    refinements: int = 1
    maximize: bool = True
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.factor > 1 and self.max_rungs >= 1):
            raise ValueError("need start > 0, factor > 1, max_rungs >= 1")
        if self.refinements < 0:
            raise ValueError("need refinements >= 0")

    def rung_rate(self, rung: int) -> float:
        """The ladder's rate on ``rung`` (0 = the start)."""
        return _six_digits(self.start * self.factor**rung)

    def record(self, rate: float, value: float | None) -> None:
        """Add the outcome of the trial at ``rate`` (``value`` None = rejected)."""
        self.outcomes.append(Outcome(float(rate), value))

    def _rank(self, outcome: Outcome) -> float:
        """Sort key: smaller = better."""
        return -outcome.value if self.maximize else outcome.value

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    @property
    def best(self) -> Outcome | None:
        """The completed outcome with the best value (the lower rate wins a tie)."""
        best = None
        for outcome in sorted(self.outcomes, key=lambda o: o.rate):
            if outcome.completed and (best is None or self._better(outcome.value, best.value)):
                best = outcome
        return best

    def _ladder_outcomes(self) -> dict[int, Outcome]:
        by_rate = {o.rate: o for o in self.outcomes}
        rungs = {}
        for rung in range(-self.max_rungs, self.max_rungs + 1):
            rate = self.rung_rate(rung)
            if rate in by_rate:
                rungs[rung] = by_rate[rate]
        return rungs

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is done."""
        rungs = self._ladder_outcomes()
        tried = {o.rate for o in self.outcomes}
        if 0 not in rungs:
            return self.rung_rate(0)
        n_ladder = len(rungs)
        if n_ladder < self.max_rungs:
            completed = {r: o for r, o in rungs.items() if o.completed}
            top, bottom = max(rungs), min(rungs)
            if not completed:  # all rejected so far: step down
                return self.rung_rate(bottom - 1)
            best_rung = min(completed, key=lambda r: (self._rank(completed[r]), r))
            if best_rung == top:  # still improving upwards: climb to the first rejection
                return self.rung_rate(top + 1)
            if best_rung == bottom:  # the best is the lowest tried: make sure it is no peak
                return self.rung_rate(bottom - 1)
        n_refined = len(self.outcomes) - n_ladder
        best = self.best
        if best is None or n_refined >= self.refinements:
            return None
        candidate = self._refinement(best)
        return candidate if candidate is not None and candidate not in tried else None

    def _refinement(self, best: Outcome) -> float | None:
        """Geometric midpoint between the best rate and its more promising neighbour: the
        rejected or untried rung above (the optimum sits just below the break point), else the
        better-valued completed neighbour."""
        step = math.sqrt(self.factor)
        below = [o for o in self.outcomes if o.rate < best.rate]
        above = [o for o in self.outcomes if o.rate > best.rate]
        lower = max(below, key=lambda o: o.rate) if below else None
        upper = min(above, key=lambda o: o.rate) if above else None
        if upper is None or not upper.completed:
            return _six_digits(best.rate * step) if upper is None else _geo_mid(best, upper)
        if lower is None:
            return _geo_mid(best, upper)
        if not lower.completed or self._better(upper.value, lower.value):
            return _geo_mid(best, upper)
        return _geo_mid(best, lower)


def _six_digits(rate: float) -> float:
    """Rates are kept to 6 significant digits: the same in a directory name, an override and
    the results."""
    return float(f"{rate:.6g}")


def _geo_mid(a: Outcome, b: Outcome) -> float:
    return _six_digits(math.sqrt(a.rate * b.rate))
