"""The unlearning direction: Disruption Masking and normalization (Algorithm 1, lines 13-14),
and pointing the targeted parameters at one set of weights. Pure tensor functions, shared by the
loop (loop.py) and the variants that replace one of its steps (variants.py).
"""

from __future__ import annotations

import torch


def use_weights(params: dict, weights: dict) -> None:
    """Point every targeted parameter at one set of weights (base or adversary), for free."""
    for name, param in params.items():
        param.data = weights[name]


def unlearning_direction_(
    grads: dict, acc: dict, masking: bool, normalization: str, n_elements: int
) -> dict:
    """Turn raw unlearning gradients into the update direction, in place (Algorithm 1, 13-14).

    The global norm is taken *before* masking (``global_pre_mask``, the paper's choice), so
    masking removes disruptive entries without inflating the surviving ones.
    """
    norm = global_norm(grads)
    if masking:  # Disruption Masking: only where unlearning and retain signs agree
        for n, g in grads.items():
            mask_disagreeing_(g, acc[n])
    if normalization == "global_post_mask":
        norm = global_norm(grads)
    normalize_(grads, normalization, norm, n_elements)
    return grads


def mask_disagreeing_(grad: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """``grad *= sign(grad) == sign(acc)`` with one temporary and no bool mask or cast.

    ``sign(acc) * grad > 0`` is exact (multiplying by -1, 0 or 1 never rounds) and true exactly
    where both signs agree and are nonzero; where ``grad`` is 0 both forms leave it unchanged,
    and inf/NaN entries give the same results as the two-sign form (tested bitwise).
    """
    return grad.mul_(torch.sign(acc).mul_(grad).gt_(0))


def global_norm(grads: dict) -> torch.Tensor:
    """L2 norm over all tensors (one fused foreach kernel for the per-tensor norms on CUDA)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads.values()))))


def normalize_(grads: dict, mode: str, norm: torch.Tensor, n_elements: int) -> None:
    """Scale so the update's RMS per weight is 1 (global) or 1 within each parameter."""
    if mode == "per_parameter":
        for g in grads.values():
            g.mul_(g.numel() ** 0.5 / torch.linalg.vector_norm(g).clamp_min(1e-30))
    elif mode in ("global_pre_mask", "global_post_mask"):  # in place, no extra memory
        torch._foreach_mul_(list(grads.values()), n_elements**0.5 / norm.clamp_min(1e-30))
