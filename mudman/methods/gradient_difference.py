"""Gradient difference baseline: descend ``unlearning loss(forget) + retain_weight * CE(retain)``.

The classic unlearning baseline (e.g. in the CIR paper): gradient ascent on the forget batch
(``neg_cross_entropy`` by default) plus ordinary training on the retain batch, one plain SGD
step per loop on the targeted weights. 4 passes per loop: a forward and a backward on each
batch (the backward of the summed loss runs through both graphs).
"""

from __future__ import annotations

import torch

from mudman.losses import LOSSES, cross_entropy, get_loss
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs, require


@METHODS.register("gradient_difference")
class GradientDifference(UnlearningMethod):
    def passes_per_loop(self) -> int:
        return 4

    def validate(self) -> None:
        c = self.cfg
        require(c, "lr", isinstance(c.get("lr"), (int, float)) and c.lr > 0, "a number > 0")
        w = c.get("retain_weight")
        require(c, "retain_weight", isinstance(w, (int, float)) and w >= 0, "a number >= 0")
        loss = c.get("unlearning_loss")
        require(c, "unlearning_loss", loss in LOSSES, ", ".join(LOSSES.names()))

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        c = self.cfg
        unlearning_loss = get_loss(c.unlearning_loss, **(c.get("unlearning_loss_kwargs") or {}))
        targets = list(params.values())
        pairs = batch_pairs(data)
        for _ in range(n_loops):
            retain_batch, forget_batch = next(pairs)
            loss = unlearning_loss(model(input_ids=forget_batch).logits, forget_batch)
            loss = loss + c.retain_weight * cross_entropy(
                model(input_ids=retain_batch).logits, retain_batch
            )
            grads = torch.autograd.grad(loss, targets)
            with torch.no_grad():
                for p, g in zip(targets, grads, strict=True):
                    p.sub_(g, alpha=c.lr)
            monitor.count(self.passes_per_loop())
            if progress is not None:
                progress.update(1)
