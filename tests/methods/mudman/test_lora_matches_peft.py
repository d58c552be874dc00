"""The ``lora_adversary`` method's hand-written LoRA is PEFT's LoRA, number for number.

``LoraAdversaries`` never attaches adapter modules: it materializes ``W = base + B @ A`` and
turns the full weight gradient into adapter gradients by the chain rule. With PEFT's adapter
(same A and B, ``lora_alpha = r`` so the scaling is 1, no dropout) the adversary's forward
output and one SGD step of A and B must agree with PEFT's autograd (docs/libraries.md says why
the method keeps its own code).
"""

from __future__ import annotations

import pytest
import torch

from mudman.methods.mudman.adversaries import LoraAdversaries

peft = pytest.importorskip("peft")


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(24, 40, bias=False)
        self.down = torch.nn.Linear(40, 24, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.up(x)))


def test_lora_adversary_forward_and_step_equal_peft_lora():
    torch.manual_seed(0)
    model, rank, lr = _Mlp().double(), 4, 0.05
    base = {"up": model.up.weight.detach().clone()}
    x, target = torch.randn(6, 24, dtype=torch.double), torch.randn(6, 24, dtype=torch.double)
    config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=["up"])
    wrapped = peft.get_peft_model(_copy(model), config)
    layer = wrapped.base_model.model.up
    with torch.no_grad():  # a non-zero B, so the step and the forward are not trivially base
        layer.lora_B["default"].weight.normal_(0.0, 0.1)
    peft_a = layer.lora_A["default"].weight
    peft_b = layer.lora_B["default"].weight

    ours = LoraAdversaries(count=1, lr=lr, rank=rank)
    ours.fork(base)
    ours.adapters[0]["up"][0].copy_(peft_a.detach())
    ours.adapters[0]["up"][1].copy_(peft_b.detach())

    # forward: the materialized adversary weight == PEFT's base + adapter
    weight = ours.weights(0, base)["up"].requires_grad_()
    hidden = torch.nn.functional.silu(x @ weight.T)
    out_ours = hidden @ model.down.weight.detach().T
    out_peft = wrapped(x)
    torch.testing.assert_close(out_ours, out_peft, rtol=0, atol=1e-12)

    # one SGD step: chain rule from the weight gradient == PEFT's autograd on A and B
    (grad_w,) = torch.autograd.grad(((out_ours - target) ** 2).mean(), weight)
    ((out_peft - target) ** 2).mean().backward()
    ours.step(0, {"up": grad_w}, base)
    torch.testing.assert_close(
        ours.adapters[0]["up"][0], peft_a.detach() - lr * peft_a.grad, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        ours.adapters[0]["up"][1], peft_b.detach() - lr * peft_b.grad, rtol=0, atol=1e-12
    )
    assert peft_b.grad.abs().max() > 1e-3 and peft_a.grad.abs().max() > 1e-3  # both moved


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    clone = _Mlp().double()
    clone.load_state_dict(model.state_dict())
    return clone
