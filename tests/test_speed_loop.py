"""Speed options of the unlearning loop give the same results as the plain path."""

from __future__ import annotations

import pytest
import torch

from mudman.errors import ConfigError
from mudman.methods import build_method
from mudman.methods.mudman import Mudman
from mudman.models.tiny import tiny_llama
from tests.test_mudman_algorithm import make_data, method_cfg, run_method


@pytest.mark.parametrize("fork_every", [1, 3])
def test_reusing_the_ce_backward_gives_bitwise_identical_weights(fork_every):
    """With -CE as unlearning loss, one backward serves adversary and unlearning step."""
    data = make_data()
    states = {}
    for reuse in (False, True):
        model = tiny_llama(seed=0)
        cfg = method_cfg(fork_every_n_loops=fork_every, reuse_ce_backward=reuse)
        method, _ = run_method(model, cfg, data, n_loops=6)
        states[reuse] = {k: {n: t.clone() for n, t in v.items()} for k, v in method.state.items()}
        states[reuse]["model"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert states[False].keys() == states[True].keys()
    for kind, tensors in states[False].items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, states[True][kind][name]), (kind, name)


def test_reuse_costs_four_passes_and_needs_neg_cross_entropy_with_an_adversary():
    assert build_method(method_cfg(reuse_ce_backward=True)).passes_per_loop() == 4
    assert build_method(method_cfg(reuse_ce_backward=False)).passes_per_loop() == 5
    for bad in ({"unlearning_loss": "neg_entropy"}, {"meta_learning": False}):
        with pytest.raises(ConfigError, match=r"reuse_ce_backward=True.*meta_learning=true"):
            build_method(method_cfg(reuse_ce_backward=True, **bad))


def test_only_targeted_parameters_require_grad_during_unlearning(compose, monkeypatch):
    """The trial freezes untargeted weights, so no weight gradient is computed for them."""
    from mudman.trial import run_trial

    seen = {}
    original = Mudman.unlearn

    def spy(self, model, params, data, n_loops, monitor, progress=None):
        seen["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        seen["targeted"] = sorted(params)
        grads = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.register_hook(lambda g, name=name: grads.setdefault(name, g))
        original(self, model, params, data, n_loops, monitor, progress)
        seen["got_grads"] = sorted(grads)

    monkeypatch.setattr(Mudman, "unlearn", spy)
    run_trial(compose())
    assert seen["trainable"] == seen["targeted"] == seen["got_grads"]
    assert seen["targeted"] and all(n.endswith("gate_proj.weight") for n in seen["targeted"])


def test_foreach_norm_and_normalization_equal_the_per_tensor_formulas():
    from mudman.methods.mudman import global_norm, normalize_

    gen = torch.Generator().manual_seed(0)
    grads = {f"p{i}": torch.randn(7 + i, 5, generator=gen) for i in range(4)}
    reference_norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])
    )
    assert torch.equal(global_norm(grads), reference_norm)
    n = sum(g.numel() for g in grads.values())
    expected = {k: g * (n**0.5 / reference_norm) for k, g in grads.items()}
    normalize_(grads, "global_pre_mask", reference_norm, n)
    assert all(torch.equal(grads[k], expected[k]) for k in grads)
