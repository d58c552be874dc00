"""Collapsing common representations (CIR): per-token activations and output gradients of a
linear module, with their mean and top principal components projected out, rebuild its
weight gradient ``sum_t g_t (outer) x_t`` from only what is specific to the forget set."""

from __future__ import annotations

import torch


def principal_basis(tokens: torch.Tensor, n_components: int, with_mean: bool) -> torch.Tensor:
    """Orthonormal ``[dim, k]`` basis of the mean direction and the top principal components
    (centered PCA, ``torch.pca_lowrank``) of ``tokens`` ``[n_tokens, dim]``; ``k`` may be 0."""
    tokens = tokens.float()
    columns = []
    if with_mean:
        columns.append(tokens.mean(0, keepdim=True).T)
    k = min(n_components, tokens.shape[0] - 1, tokens.shape[1])
    if k > 0:
        _, _, v = torch.pca_lowrank(tokens, q=k, center=True)
        columns.append(v[:, :k])
    if not columns:
        return tokens.new_zeros(tokens.shape[1], 0)
    basis, _ = torch.linalg.qr(torch.cat(columns, dim=1))
    return basis


def project_out(tokens: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove the span of ``basis`` (orthonormal columns) from every token."""
    if basis.shape[1] == 0:
        return tokens
    return tokens - (tokens @ basis) @ basis.T


def rebuilt_weight_grad(
    acts: torch.Tensor,
    out_grads: torch.Tensor,
    act_basis: torch.Tensor,
    grad_basis: torch.Tensor,
) -> torch.Tensor:
    """``[out, in]`` gradient of a linear weight from per-token ``[T, in]`` inputs and ``[T, out]``
    output gradients, each with its collapsed subspace removed (empty bases = plain backprop)."""
    x = project_out(acts.float(), act_basis)
    g = project_out(out_grads.float(), grad_basis)
    return g.T @ x
