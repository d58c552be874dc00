"""Relearning attack: plain SGD on all parameters over the forget validation stream.

Fixed for every method so results are comparable: 2 passes (fwd+bwd) per SGD step, fixed lr,
re-seeded before it starts; forget loss evaluated on the fixed eval batch every
``eval_every_passes`` passes and at the end. The objective is the *minimum* forget loss seen,
i.e. the attacker's best moment. The WMDP study's variant alternates one forget step and one
retain step (``retain_batches`` given), so the attack recovers knowledge without wrecking the
model's general ability. This is the ``sgd`` attack (mudman/attack/sgd.py); the other attacks
of ``conf/attack/`` share its loop (mudman/attack/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mudman.attack.base import (
    FORGET,
    PASSES_PER_STEP,
    RETAIN,
    AttackStreams,
    check_relearn_passes,
    train_steps,
)

__all__ = ["PASSES_PER_STEP", "RelearnResult", "check_relearn_passes", "relearn"]


@dataclass
class RelearnResult:
    forget_losses: list[tuple[int, float]] = field(default_factory=list)  # (passes, loss)


def relearn(
    model: nn.Module,
    forget_batches: list[torch.Tensor],
    eval_batch: torch.Tensor,
    lr: float,
    relearn_passes: int,
    eval_every_passes: int,
    retain_batches: list[torch.Tensor] | None = None,
) -> RelearnResult:
    """Fine-tune every parameter with SGD on the forget stream (cycled if short); with
    ``retain_batches``, odd steps use the forget stream and even steps the retain stream."""
    n_steps = check_relearn_passes(relearn_passes)
    for param in model.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    schedule = [
        RETAIN if retain_batches and step % 2 == 0 else FORGET for step in range(1, n_steps + 1)
    ]
    streams = AttackStreams(forget_batches, retain_batches or [], eval_batch)
    run = train_steps(model, optimizer, schedule, streams, eval_every_passes)
    return RelearnResult(run.curve)
