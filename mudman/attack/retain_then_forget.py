"""``attack=retain_then_forget``: first ``retain_fraction`` of the steps on the retain stream,
then the rest on the forget stream, SGD on every parameter (TAR's red-teaming includes such
"benign fine-tuning first" adversaries: a retain warm-up can undo what unlearning tied to the
retain distribution, e.g. Disruption Masking's agreement with the retain gradient). Forget loss
is measured through both phases; the objective sees the whole curve."""

from __future__ import annotations

import torch

from mudman.attack.base import (
    ATTACKS,
    FORGET,
    RETAIN,
    Attack,
    _number,
    check_relearn_passes,
    require_attack,
)
from mudman.errors import ConfigError


@ATTACKS.register("retain_then_forget")
class RetainThenForgetAttack(Attack):
    def retain_steps(self, n_steps: int) -> int:
        return round(float(self.cfg.retain_fraction) * n_steps)

    def validate(self, relearn_passes: int) -> None:
        super().validate(relearn_passes)
        key, fraction = f"{self.key}.retain_fraction", self.cfg.get("retain_fraction")
        require_attack(key, _number(fraction) and 0 < fraction < 1, fraction, "a number in (0, 1)")
        n_steps = check_relearn_passes(relearn_passes)
        retain = self.retain_steps(n_steps)
        if not 1 <= retain <= n_steps - 1:
            raise ConfigError(
                f"{key}={fraction!r} gives {retain} retain steps of the {n_steps} steps "
                f"relearn_passes={relearn_passes} buys; allowed: a fraction leaving at least "
                "one retain and one forget step"
            )

    def schedule(self, n_steps: int) -> list[str]:
        retain = self.retain_steps(n_steps)
        return [RETAIN] * retain + [FORGET] * (n_steps - retain)

    def optimizer(self, params):
        return torch.optim.SGD(params, lr=self.cfg.lr)
