"""Forget/retain loss on the fixed evaluation batches."""

from __future__ import annotations

import torch

from mudman.losses import cross_entropy


@torch.no_grad()
def lm_loss(model, batch: torch.Tensor) -> float:
    """Mean next-token cross-entropy of ``batch`` (nats per token)."""
    return float(cross_entropy(model(input_ids=batch).logits, batch))


def forget_retain_losses(model, forget_batch: torch.Tensor, retain_batch: torch.Tensor) -> dict:
    """The two numbers every phase of a trial is judged by."""
    return {
        "forget_loss": lm_loss(model, forget_batch),
        "retain_loss": lm_loss(model, retain_batch),
    }
