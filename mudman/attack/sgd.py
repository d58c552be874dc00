"""``attack=sgd`` (the default): the paper's fixed relearning attack, plain SGD on every
parameter at ``lr`` (the model's ``relearn_lr``), optionally alternating forget and retain steps
(``alternate_retain``, the WMDP study). Its numbers equal the original relearning loop's
bitwise (tests/attack/test_attacks.py)."""

from __future__ import annotations

import torch

from mudman.attack.base import ATTACKS, Attack


@ATTACKS.register("sgd")
class SgdAttack(Attack):
    def optimizer(self, params):
        return torch.optim.SGD(params, lr=self.cfg.lr)
