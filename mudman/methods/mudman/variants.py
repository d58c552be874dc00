"""The appendix B/D variants of MUDMAN and its no-meta-learning ablation, one section each.

Each variant is switched on by a key of the ``method:`` block (its YAML in conf/method/ sets
it) and then replaces or wraps one of the loop's four steps (``Steps.retain``, ``.forget``,
``.direction``, ``.update`` in loop.py); with every key at its default nothing here runs and
the loop is Algorithm 1. The adversary variants (LoRA, several adversaries, decay) are the
adversaries themselves: adversaries.py. Normalization variants and ``masking=false`` are
arguments of ``unlearning_direction_`` in direction.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mudman.methods.mudman import direction
from mudman.methods.mudman.settings import MudmanSettings

if TYPE_CHECKING:
    from mudman.methods.mudman.loop import Steps


def plug_in_variants(steps: Steps, s: MudmanSettings, data, monitor) -> None:
    """Replace or wrap the steps of every switched-on variant (order: replacements first)."""
    if not s.meta_learning:
        if s.locate_once:
            locate_once(steps, s, data, monitor)
        else:
            without_adversary(steps)
    if s.forget_momentum:
        forget_momentum(steps, s)
    if s.retain_aggregation != "signed" or s.disruption_percentile is not None:
        disruption_percentiles(steps, s)
    if s.only_shrink:
        only_shrink(steps)
    if s.meta_learning and s.adv_update_scale:
        adversary_follows_base(steps, s)


# ---------------------------------------------------------------- no meta-learning (ablation)
def without_adversary(steps: Steps) -> None:
    """``meta_learning=false``: the unlearning gradient is taken on the base weights."""

    def forget(loop_num: int, forget_batch: torch.Tensor) -> dict:
        direction.use_weights(steps.params, steps.base)
        logits = steps.model(input_ids=forget_batch).logits
        grads = torch.autograd.grad(steps.unlearning_loss(logits, forget_batch), steps.targets)
        return dict(zip(steps.params, grads, strict=True))

    steps.forget = forget


# ---------------------------------------------------------------- locate once (D.5)
def locate_once(steps: Steps, s: MudmanSettings, data, monitor) -> None:
    """``locate_once=true``: no adversary, no per-loop forget pass; the unlearning gradient is
    aggregated over forget batches of the initial model, before any unlearning, and reused
    (masked against the live retain accumulator) every loop."""
    batches = data.forget_train[: s.locate_once_batches]
    located = aggregate_unlearning_gradient(
        steps.model, steps.params, batches, steps.unlearning_loss
    )
    monitor.count(locate_passes(s))
    steps.forget = lambda loop_num, forget_batch: {n: g.clone() for n, g in located.items()}


def aggregate_unlearning_gradient(model, params: dict, batches: list, loss_fn) -> dict:
    """Mean unlearning gradient over ``batches`` at the current weights (2 passes per batch)."""
    targets = list(params.values())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(model(input_ids=batch).logits, batch), targets)
        for n, g in zip(params, grads, strict=True):
            total[n].add_(g, alpha=1 / len(batches))
    return total


def locate_passes(s: MudmanSettings) -> int:
    """Passes charged once, before the first loop, by locate-once (fwd + bwd per batch)."""
    return 2 * s.locate_once_batches if s.locate_once else 0


# ---------------------------------------------------------------- forget momentum (D.4)
def forget_momentum(steps: Steps, s: MudmanSettings) -> None:
    """``forget_momentum > 0``: the step follows a decaying average of unlearning gradients."""
    momentum, forget = ForgetMomentum(steps.base, s.forget_momentum), steps.forget
    steps.forget = lambda loop_num, forget_batch: momentum(forget(loop_num, forget_batch))


class ForgetMomentum:
    """Decaying accumulator of unlearning gradients ("forget momentum", appendix D.4)."""

    def __init__(self, base: dict[str, torch.Tensor], momentum: float):
        self.momentum = momentum
        self.acc = {n: torch.zeros_like(w) for n, w in base.items()}

    def __call__(self, grads: dict) -> dict:
        for n, g in grads.items():
            self.acc[n].mul_(self.momentum).add_(g, alpha=1 - self.momentum)
        return {n: a.clone() for n, a in self.acc.items()}


# ---------------------------------------------------------------- disruption percentiles (D.4)
# Instead of sign-agreement masking (masking=false), keep only the ``disruption_percentile`` %
# of weights whose estimated retain disruption per unit of unlearning, ``D_i / |g_i|``, is
# lowest. Retain aggregation: Disruption Masking sums retain gradients, so helpful and harmful
# effects cancel. ``absolute`` aggregates |g| (helpful effects count as disruption);
# ``scaled_helpful`` (the paper's compromise) keeps them scaled down by ``helpful_scale`` in
# [0, 1). Positive and negative parts are accumulated separately (P, N, same momentum as the
# signed accumulator); for a weight the update would increase, D = P - h N, for one it would
# decrease, D = N - h P, with h = 1 (signed: D = +-acc), -1 (absolute) or ``helpful_scale``.
HELPFUL_SCALE = {"signed": 1.0, "absolute": -1.0}


def disruption_percentiles(steps: Steps, s: MudmanSettings) -> None:
    """Split the retain accumulator (non-signed aggregation) and select by percentile."""
    disruption = signed_disruption(steps.acc)
    if s.retain_aggregation != "signed":
        scale = HELPFUL_SCALE.get(s.retain_aggregation, s.helpful_scale)
        split, retain = SplitRetainAccumulator(steps.base, s.retain_momentum, scale), steps.retain

        def retain_and_split(retain_batch: torch.Tensor) -> tuple:
            grads = retain(retain_batch)
            for n, g in zip(steps.acc, grads, strict=True):
                split.accumulate(n, g)
            return grads

        steps.retain, disruption = retain_and_split, split.disruption

    def least_disruptive(grads: dict) -> None:  # norm before selection, as before masking
        norm = direction.global_norm(grads)
        keep_least_disruptive_(grads, disruption, s.disruption_percentile)
        if s.normalization == "global_post_mask":
            norm = direction.global_norm(grads)
        direction.normalize_(grads, s.normalization, norm, steps.n_elements)

    if s.disruption_percentile is not None:
        steps.direction = least_disruptive


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


# ---------------------------------------------------------------- only shrink (D.3)
def only_shrink(steps: Steps) -> None:
    """``only_shrink=true``: drop update entries that would grow |w|; stop the others at 0."""

    def update(grads: dict) -> list:
        updates = list(grads.values())
        torch._foreach_mul_(updates, steps.s.unlearning_rate)
        updates = [only_shrinking_(u, w) for u, w in zip(updates, steps.base_list, strict=True)]
        torch._foreach_sub_(steps.base_list, updates)
        return updates

    steps.update = update


def only_shrinking_(update: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Restrict ``weight -= update`` to moves towards 0 that stop at 0: |w| never grows."""
    shrinks = torch.sign(update) == torch.sign(weight)
    return torch.where(shrinks, torch.minimum(update.abs(), weight.abs()) * torch.sign(weight), 0)


# ---------------------------------------------------------------- adversary update (D.5)
def adversary_follows_base(steps: Steps, s: MudmanSettings) -> None:
    """``adv_update_scale > 0``: full adversaries also take every base update times the scale."""
    adversaries, retain, update = steps.adversaries, steps.retain, steps.update

    def retain_and_follow(retain_batch: torch.Tensor) -> tuple:
        grads = retain(retain_batch)
        for n, a in steps.acc.items():
            adversaries.follow(n, a, s.retaining_rate)
        return grads

    def update_and_follow(grads: dict) -> list:
        updates = update(grads)
        for n, u in zip(grads, updates, strict=True):
            adversaries.follow(n, u, 1.0)
        return updates

    steps.retain, steps.update = retain_and_follow, update_and_follow
