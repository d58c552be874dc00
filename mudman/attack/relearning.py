"""Relearning attack: plain SGD on all parameters over the forget validation stream.

Fixed for every method so results are comparable: 2 passes (fwd+bwd) per SGD step, fixed lr,
re-seeded before it starts; forget loss evaluated on the fixed eval batch every
``eval_every_passes`` passes and at the end. The objective is the *minimum* forget loss seen,
i.e. the attacker's best moment. The WMDP study's variant alternates one forget step and one
retain step (``retain_batches`` given), so the attack recovers knowledge without wrecking the
model's general ability.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mudman.errors import ConfigError
from mudman.evaluation.lm_loss import lm_loss
from mudman.losses import cross_entropy

PASSES_PER_STEP = 2


@dataclass
class RelearnResult:
    forget_losses: list[tuple[int, float]] = field(default_factory=list)  # (passes, loss)

    @property
    def min_forget_loss(self) -> float:
        return min(loss for _, loss in self.forget_losses)


def check_relearn_passes(relearn_passes: int) -> int:
    if relearn_passes <= 0 or relearn_passes % PASSES_PER_STEP:
        raise ConfigError(
            f"relearn_passes={relearn_passes} must be a positive multiple of {PASSES_PER_STEP} "
            "(one SGD step = forward + backward)"
        )
    return relearn_passes // PASSES_PER_STEP


def relearn(
    model: nn.Module,
    forget_batches: list[torch.Tensor],
    eval_batch: torch.Tensor,
    lr: float,
    relearn_passes: int,
    eval_every_passes: int,
    on_eval: Callable[[int, float], None] | None = None,
    progress=None,
    retain_batches: list[torch.Tensor] | None = None,
) -> RelearnResult:
    """Fine-tune every parameter with SGD on the forget stream (cycled if short); with
    ``retain_batches``, odd steps use the forget stream and even steps the retain stream."""
    n_steps = check_relearn_passes(relearn_passes)
    for param in model.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    result = RelearnResult()
    forget_stream = itertools.cycle(forget_batches)
    retain_stream = itertools.cycle(retain_batches) if retain_batches else None
    passes = 0
    model.train(False)  # deterministic: no dropout
    for step in range(1, n_steps + 1):
        on_retain = retain_stream is not None and step % 2 == 0
        batch = next(retain_stream if on_retain else forget_stream)
        optimizer.zero_grad(set_to_none=True)
        cross_entropy(model(input_ids=batch).logits, batch).backward()
        optimizer.step()
        passes += PASSES_PER_STEP
        crossed = passes // eval_every_passes > (passes - PASSES_PER_STEP) // eval_every_passes
        if crossed or step == n_steps:
            loss = lm_loss(model, eval_batch)
            result.forget_losses.append((passes, loss))
            if on_eval is not None:
                on_eval(passes, loss)
        if progress is not None:
            progress.update(1)
    optimizer.zero_grad(set_to_none=True)
    return result
