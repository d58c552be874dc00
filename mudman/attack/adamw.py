"""``attack=adamw``: full fine-tuning of every parameter with torch's AdamW, the optimizer
fine-tuning attacks usually use (TAR's red-teaming adversaries fine-tune with AdamW). Adam's
step is ~``lr`` per weight whatever the gradient's scale, so its ``lr`` is not the SGD lr: the
default 1e-4 is a common full fine-tuning rate; sweep it in an ``attack_suite``."""

from __future__ import annotations

import torch

from mudman.attack.base import ATTACKS, Attack, _number, require_attack


@ATTACKS.register("adamw")
class AdamWAttack(Attack):
    def validate(self, relearn_passes: int) -> None:
        super().validate(relearn_passes)
        c, key = self.cfg, self.key
        betas = c.get("betas")
        ok = (
            betas is not None
            and len(list(betas)) == 2
            and all(_number(b) and 0 <= b < 1 for b in betas)
        )
        require_attack(f"{key}.betas", ok, betas, "two numbers in [0, 1), e.g. [0.9, 0.999]")
        eps, decay = c.get("eps"), c.get("weight_decay")
        require_attack(f"{key}.eps", _number(eps) and eps > 0, eps, "a number > 0")
        require_attack(f"{key}.weight_decay", _number(decay) and decay >= 0, decay, "a number >= 0")

    def optimizer(self, params):
        c = self.cfg
        return torch.optim.AdamW(
            params,
            lr=c.lr,
            betas=(float(c.betas[0]), float(c.betas[1])),
            eps=float(c.eps),
            weight_decay=float(c.weight_decay),
        )
