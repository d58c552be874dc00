"""Locating unwanted circuits only once (appendix D.5): no meta-learning, no per-loop forget
pass; the unlearning gradient is aggregated over forget batches of the initial model, before
any unlearning, and reused (masked against the live retain accumulator) every loop."""

from __future__ import annotations

import torch


def aggregate_unlearning_gradient(model, params: dict, batches: list, loss_fn) -> dict:
    """Mean unlearning gradient over ``batches`` at the current weights (2 passes per batch)."""
    targets = list(params.values())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(model(input_ids=batch).logits, batch), targets)
        for n, g in zip(params, grads, strict=True):
            total[n].add_(g, alpha=1 / len(batches))
    return total
