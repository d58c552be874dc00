"""Distances between a model's hidden states and the original model's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def mean_squared_l2(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean over layers and tokens of ||h - h_orig||^2 (summed over the hidden dimension)."""
    per_layer = [
        (h.float() - o.float()).pow(2).sum(-1).mean() for h, o in zip(hidden, original, strict=True)
    ]
    return torch.stack(per_layer).mean()


def relu_cosine(hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over layers and tokens of max(0, cos(h, h_orig)): zero once orthogonal or opposed."""
    per_layer = [
        F.relu(F.cosine_similarity(h.float(), o.float(), dim=-1)).mean()
        for h, o in zip(hidden, original, strict=True)
    ]
    return torch.stack(per_layer).mean()


def relu_projection(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean over layers and tokens of max(0, <h, h_orig> / |h_orig|^2).

    Equals the cosine (1) at the original model but, unlike the cosine, whose maximum is
    there, has a non-zero gradient at the start: rerouting can begin from the exact original
    weights without LoRA-dropout noise.
    """
    per_layer = [
        F.relu((h.float() * o.float()).sum(-1) / o.float().pow(2).sum(-1).clamp_min(1e-12)).mean()
        for h, o in zip(hidden, original, strict=True)
    ]
    return torch.stack(per_layer).mean()
