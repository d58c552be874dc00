"""The unlearning losses on logits small enough to check by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mudman.losses import LOSSES, correct_logit_minus_avg, cross_entropy, get_loss, neg_entropy

# one sequence of 2 tokens over a 3-word vocabulary: only position 0 predicts (token 1 -> id 2)
LOGITS = torch.tensor([[[0.0, 1.0, 2.0], [9.0, 9.0, 9.0]]])
IDS = torch.tensor([[1, 2]])


def test_cross_entropy_predicts_the_next_token():
    expected = -(2.0 - math.log(1 + math.e + math.e**2))
    assert cross_entropy(LOGITS, IDS).item() == pytest.approx(expected, rel=1e-6)
    assert LOSSES.get("neg_cross_entropy")(LOGITS, IDS).item() == pytest.approx(-expected)


def test_neg_entropy_is_minus_the_mean_entropy_over_every_position():
    """As TAR's max_entropy_loss: the last position (it predicts no token) counts too."""
    # position 0: p_k = e^k / Z with Z = 1 + e + e^2, so H = log Z - E[k] = 0.83239...
    z = 1 + math.e + math.e**2
    h0 = math.log(z) - (math.e + 2 * math.e**2) / z
    h1 = math.log(3)  # position 1 (the last): logits 9, 9, 9 are uniform
    assert h0 == pytest.approx(0.832395, abs=1e-6)
    expected = -(h0 + h1) / 2  # -0.96550..., not -h0 (the mean over positions [:-1] only)
    assert neg_entropy(LOGITS, IDS).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(-0.965503, abs=1e-6)
    uniform = torch.zeros(1, 2, 3)
    assert neg_entropy(uniform, IDS).item() == pytest.approx(-math.log(3), rel=1e-6)
    peaked_last = torch.tensor([[[0.0, 0.0, 0.0], [50.0, 0.0, 0.0]]])  # last position certain
    assert neg_entropy(peaked_last, IDS).item() == pytest.approx(-math.log(3) / 2, rel=1e-6)


def test_selective_logit_loss_subtracts_the_mean_and_clips():
    assert correct_logit_minus_avg(LOGITS, IDS).item() == pytest.approx(2.0 - 1.0)
    assert correct_logit_minus_avg(LOGITS, IDS, clip_at=1.5).item() == pytest.approx(1.5)
    shifted = LOGITS + 100.0  # invariant to shifting all logits
    assert correct_logit_minus_avg(shifted, IDS).item() == pytest.approx(1.0)
    bound = get_loss("correct_logit_minus_avg", clip_at=5.0)
    assert bound(LOGITS, IDS).item() == pytest.approx(5.0)


def test_losses_compute_in_float32_for_bf16_logits():
    loss = cross_entropy(LOGITS.bfloat16(), IDS)
    assert loss.dtype == torch.float32
