"""Small builders shared by the method tests: random batches, a never-rejecting monitor,
and the targeted-parameter setup the trial performs before unlearning."""

from __future__ import annotations

import torch

from mudman.data.batching import TrialData
from mudman.methods.monitor import PassMonitor
from mudman.models.targets import select_target_params


def make_data(seed: int = 0, n: int = 6, batch: int = 3, length: int = 16) -> TrialData:
    gen = torch.Generator().manual_seed(seed)

    def batches(k: int) -> list[torch.Tensor]:
        return [torch.randint(0, 257, (batch, length), generator=gen) for _ in range(k)]

    return TrialData(batches(n), batches(n), batches(3), batches(3))


def never_reject() -> PassMonitor:
    return PassMonitor(lambda: {"forget_loss": 0.0, "retain_loss": 0.0}, 10**9, 1.0, 0.0)


def prepare(model, targets=("gate_proj",)):
    """Select the targeted weights and let only them require gradients (as the trial does)."""
    params = select_target_params(model, list(targets))
    for name, p in model.named_parameters():
        p.requires_grad_(name in params)
    return params


class MudmanOptions:
    """The per-tensor hooks the loop had before the speed work (``previous_unlearn`` in
    tests/methods/mudman/test_speed_equality.py calls them), built from today's pieces of each
    appendix variant."""

    def __init__(self, c, base: dict) -> None:
        from mudman.methods.mudman.adversaries import build_adversaries
        from mudman.methods.mudman.settings import MudmanSettings
        from mudman.methods.mudman.variants import (
            HELPFUL_SCALE,
            ForgetMomentum,
            SplitRetainAccumulator,
        )

        self.s = s = MudmanSettings.from_config(c)
        self.adversaries = build_adversaries(s)
        self.forget_momentum = (
            ForgetMomentum(base, s.forget_momentum) if s.forget_momentum else None
        )
        self.split = None
        if s.retain_aggregation != "signed":
            scale = HELPFUL_SCALE.get(s.retain_aggregation, s.helpful_scale)
            self.split = SplitRetainAccumulator(base, s.retain_momentum, scale)
        self.follows = bool(s.adv_update_scale) and self.adversaries is not None

    def locate(self, model, params: dict, data, loss_fn) -> dict | None:
        from mudman.methods.mudman.variants import aggregate_unlearning_gradient

        if not self.s.locate_once:
            return None
        batches = data.forget_train[: self.s.locate_once_batches]
        return aggregate_unlearning_gradient(model, params, batches, loss_fn)

    def accumulate_retain(self, name: str, grad) -> None:
        if self.split is not None:
            self.split.accumulate(name, grad)

    def unlearning_grads(self, grads: dict) -> dict:
        return self.forget_momentum(grads) if self.forget_momentum is not None else grads

    def select(self, acc: dict):
        from mudman.methods.mudman.variants import keep_least_disruptive_, signed_disruption

        if self.s.disruption_percentile is None:
            return None
        disruption = self.split.disruption if self.split is not None else signed_disruption(acc)
        return lambda grads: keep_least_disruptive_(grads, disruption, self.s.disruption_percentile)

    def restrict(self, update, weight):
        from mudman.methods.mudman.variants import only_shrinking_

        return only_shrinking_(update, weight) if self.s.only_shrink else update

    def follow(self, name: str, update, rate: float) -> None:
        if self.follows:
            self.adversaries.follow(name, update, rate)


def locate_passes(c) -> int:
    """Locate-once's passes for a ``method:`` block (the hook API of ``MudmanOptions``)."""
    from mudman.methods.mudman.settings import MudmanSettings
    from mudman.methods.mudman.variants import locate_passes as passes

    return passes(MudmanSettings.from_config(c))
