"""Which weights an unlearning update may touch, and how: appendix D.3-D.4 alternatives.

* Disruption percentiles: instead of sign-agreement masking, keep only the ``percentile`` % of
  weights whose estimated retain disruption per unit of unlearning (``D_i / |g_i|``) is lowest.
* Retain aggregation: Disruption Masking sums retain gradients, so helpful and harmful effects
  cancel. ``absolute`` aggregates |g| (helpful effects count as disruption); ``scaled_helpful``
  (the paper's compromise) keeps them but scales them down by ``helpful_scale`` in [0, 1).
  Positive and negative parts are accumulated separately (P, N, same momentum as the signed
  accumulator); for a weight the update would increase, D = P - h N, for one it would decrease,
  D = N - h P, with h = 1 (signed: D = +-acc), -1 (absolute) or ``helpful_scale``.
* Only shrinking weights: drop update entries that would grow |w| and stop the others at 0.
* Forget momentum: a decaying accumulator of unlearning gradients (like the retain one).
"""

from __future__ import annotations

import torch

HELPFUL_SCALE = {"signed": 1.0, "absolute": -1.0}


class SplitRetainAccumulator:
    """Momentum averages of the positive and negative parts of the retain gradients."""

    def __init__(self, base: dict[str, torch.Tensor], momentum: float, helpful_scale: float):
        self.momentum, self.h = momentum, helpful_scale
        self.pos = {n: torch.zeros_like(w) for n, w in base.items()}
        self.neg = {n: torch.zeros_like(w) for n, w in base.items()}

    def accumulate(self, name: str, grad: torch.Tensor) -> None:
        m = self.momentum
        self.pos[name].mul_(m).add_(grad.clamp(min=0), alpha=1 - m)
        self.neg[name].mul_(m).add_((-grad).clamp(min=0), alpha=1 - m)

    def disruption(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        """Estimated retain-loss increase per unit step of ``w -= grad`` (per weight)."""
        p, n = self.pos[name], self.neg[name]
        increases = grad < 0  # w -= grad raises w where grad < 0
        return torch.where(increases, p - self.h * n, n - self.h * p)


def signed_disruption(acc: dict[str, torch.Tensor]):
    """Disruption estimate from the signed accumulator: +acc for increases, -acc for decreases."""
    return lambda name, grad: torch.where(grad < 0, acc[name], -acc[name])


def keep_least_disruptive_(grads: dict, disruption, percentile: float) -> None:
    """Zero all but the ``percentile`` % of weights (over all targets) with the lowest
    disruption per unit of unlearning gradient, ``D_i / |g_i|``; zero gradients never count."""
    ratios = {n: disruption(n, g) / g.abs() for n, g in grads.items()}  # inf/nan where g == 0
    flat = torch.cat([r.flatten() for r in ratios.values()])
    flat = torch.where(torch.isnan(flat), torch.inf, flat)
    n_keep = round(flat.numel() * percentile / 100)
    if n_keep == 0:
        for g in grads.values():
            g.zero_()
        return
    threshold = flat.kthvalue(n_keep).values
    for n, g in grads.items():
        g.mul_(ratios[n].nan_to_num(nan=torch.inf) <= threshold)


def only_shrinking_(update: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Restrict ``weight -= update`` to moves towards 0 that stop at 0: |w| never grows."""
    shrinks = torch.sign(update) == torch.sign(weight)
    return torch.where(shrinks, torch.minimum(update.abs(), weight.abs()) * torch.sign(weight), 0)


class ForgetMomentum:
    """Decaying accumulator of unlearning gradients ("forget momentum", appendix D.4)."""

    def __init__(self, base: dict[str, torch.Tensor], momentum: float):
        self.momentum = momentum
        self.acc = {n: torch.zeros_like(w) for n, w in base.items()}

    def __call__(self, grads: dict) -> dict:
        for n, g in grads.items():
            self.acc[n].mul_(self.momentum).add_(g, alpha=1 - self.momentum)
        return {n: a.clone() for n, a in self.acc.items()}
