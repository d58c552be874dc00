"""Distances between a model's hidden states and the original model's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def mean_squared_l2(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor], skip_first: int = 0
) -> torch.Tensor:
    """Mean over layers and tokens of ||h - h_orig||^2 (summed over the hidden dimension).

    The MUDMAN reference code's TAR retain term (``square_norm=True``). Its size follows the
    model's hidden-state scale squared, so a few huge-norm tokens (an attention sink) make it.
    """
    per_layer = [
        (h[:, skip_first:].float() - o[:, skip_first:].float()).pow(2).sum(-1).mean()
        for h, o in zip(hidden, original, strict=True)
    ]
    return torch.stack(per_layer).mean()


def mean_relative_squared_l2(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor], skip_first: int = 0
) -> torch.Tensor:
    """Mean over layers and tokens of ||h - o||^2 / ||o||^2, o = h_orig: scale-free per token.

    The squared distance of ``mean_squared_l2`` with each token measured in units of its own
    original norm, so the term is the same on a model whose hidden states are 100x larger and
    an attention-sink token of norm ~22,700 (SmolLM2's position 0) weighs as much as any other.
    Tokens of (near) zero original norm are divided by 1e-12 at least, never by zero.
    """
    per_layer = []
    for h, o in zip(hidden, original, strict=True):
        h, o = h[:, skip_first:].float(), o[:, skip_first:].float()
        squared = (h - o).pow(2).sum(-1) / o.pow(2).sum(-1).clamp_min(1e-12)
        per_layer.append(squared.mean())
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


def relu_bounded_projection(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor], skip_first: int = 0
) -> torch.Tensor:
    """Mean over layers and tokens of max(0, <h, o> / (|o| max(|h|, |o|))), o = h_orig.

    Circuit breakers' rerouting term. It is the cosine wherever |h| >= |o| and the projection
    ``<h, o> / |o|^2`` wherever |h| < |o|: 1 at the original model with a non-zero gradient
    there (the cosine alone has its maximum, and zero gradient, at the start), and bounded in
    [0, 1] per token by Cauchy-Schwarz, unlike the bare projection, which grows without bound
    when h grows along o. Tokens of (near) zero norm give 0, never inf or NaN. The first
    ``skip_first`` positions are left out (the attention-sink token, see circuit_breakers.py).
    """
    per_layer = []
    for h, o in zip(hidden, original, strict=True):
        h, o = h[:, skip_first:].float(), o[:, skip_first:].float()
        h_norm, o_norm = h.norm(dim=-1), o.norm(dim=-1)
        # at a tie (the start) the denominator is |o|^2: the projection's non-zero gradient
        scale = o_norm * torch.where(h_norm > o_norm, h_norm, o_norm)
        per_layer.append(F.relu((h * o).sum(-1) / scale.clamp_min(1e-12)).mean())
    return torch.stack(per_layer).mean()


def mean_relative_l2(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor], skip_first: int = 0
) -> torch.Tensor:
    """Mean over layers and tokens of |h - h_orig| / |h_orig|: the L2 retain distance of
    circuit breakers, made scale-free per token so that a few huge-norm tokens (SmolLM2's
    position-0 attention sink: norm ~22,700 vs ~150 for the rest) cannot dominate it."""
    per_layer = []
    for h, o in zip(hidden, original, strict=True):
        h, o = h[:, skip_first:].float(), o[:, skip_first:].float()
        per_layer.append(((h - o).norm(dim=-1) / o.norm(dim=-1).clamp_min(1e-12)).mean())
    return torch.stack(per_layer).mean()


def mean_l2(
    hidden: Sequence[torch.Tensor], original: Sequence[torch.Tensor], skip_first: int = 0
) -> torch.Tensor:
    """Mean over layers and tokens of |h - h_orig| (not squared): circuit breakers' original
    retain distance."""
    per_layer = [
        (h[:, skip_first:].float() - o[:, skip_first:].float()).norm(dim=-1).mean()
        for h, o in zip(hidden, original, strict=True)
    ]
    return torch.stack(per_layer).mean()
