"""Language-model losses on next-token prediction, registered by name.

Every loss takes the model's logits ``[batch, seq, vocab]`` and the input ids ``[batch, seq]``
and is *minimized* by the optimizer step that uses it. Unlearning losses are therefore the
negation of what they destroy: minimizing ``neg_cross_entropy`` raises the forget loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mudman.registry import Registry

LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[LossFn] = Registry("unlearning loss")


def _shift(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position t's logits with token t+1; compute in float32 for bf16 models."""
    return logits[:, :-1, :].float(), input_ids[:, 1:]


@LOSSES.register("cross_entropy")
def cross_entropy(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token): the LM loss used for retain and relearn."""
    pred, target = _shift(logits, input_ids)
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))


@LOSSES.register("neg_cross_entropy")
def neg_cross_entropy(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """-CE: the paper's default unlearning loss (figure 2)."""
    return -cross_entropy(logits, input_ids)


@LOSSES.register("neg_entropy")
def neg_entropy(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """-mean entropy of the predicted distribution over *every* position (TAR's loss).

    As TAR's ``max_entropy_loss`` and the MUDMAN reference code's ``neg_entropy_loss``: the mean
    runs over all positions of the logits, the last one included (it predicts no token of the
    batch, but entropy needs no target). Computed in float32, like every loss here.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return -entropy.mean()


@LOSSES.register("correct_logit_minus_avg")
def correct_logit_minus_avg(
    logits: torch.Tensor, input_ids: torch.Tensor, clip_at: float = 0.0
) -> torch.Tensor:
    """Selective logit loss (appendix D.3): push down only the correct token's logit.

    Subtracting the mean logit removes the incentive to lower every logit (softmax is shift
    invariant); clipping at ``clip_at`` stops pushing once the token is already suppressed.
    """
    pred, target = _shift(logits, input_ids)
    correct = pred.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (correct - pred.mean(dim=-1)).clamp(min=clip_at).mean()


def get_loss(name: str, key: str = "method.unlearning_loss", **kwargs: float) -> LossFn:
    """Look a loss up by name, binding its keyword arguments (e.g. ``clip_at``)."""
    fn = LOSSES.get(name, key)
    if not kwargs:
        return fn
    return lambda logits, input_ids: fn(logits, input_ids, **kwargs)
