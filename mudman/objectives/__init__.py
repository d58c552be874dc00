"""What a trial is scored on (``conf/objective/``): forget loss, or multiple-choice accuracy."""

from mudman.objectives.base import OBJECTIVES, Objective, build_objective
from mudman.objectives.forget_loss import ForgetLoss
from mudman.objectives.mc_accuracy import MultipleChoiceAccuracy

__all__ = ["OBJECTIVES", "ForgetLoss", "MultipleChoiceAccuracy", "Objective", "build_objective"]
