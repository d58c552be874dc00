"""The ablations' objective: the lowest forget loss the relearning attack reaches (maximize)."""

from __future__ import annotations

from mudman.objectives.base import OBJECTIVES, Objective


@OBJECTIVES.register("forget_loss")
class ForgetLoss(Objective):
    """min over the relearning curve: the attacker's best moment, as the paper scores it."""

    def score(self, model, relearn_curve: list[tuple[int, float]]) -> dict[str, float]:
        return {"objective": min(loss for _, loss in relearn_curve)}
