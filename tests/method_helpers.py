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
