"""TAR, gradient difference and circuit breakers: each one's defining behaviour on tiny models."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mudman.errors import ConfigError
from mudman.losses import cross_entropy, neg_cross_entropy
from mudman.methods import build_method
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import relu_cosine
from mudman.models.tiny import tiny_llama

from .method_helpers import make_data, never_reject, prepare


def count_passes(model) -> dict[str, int]:
    counts = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    model.lm_head.register_full_backward_hook(
        lambda *a: counts.__setitem__("bwd", counts["bwd"] + 1)
    )
    return counts


def composed_method(compose, name: str, *overrides: str):
    return OmegaConf.to_container(compose(f"method={name}", *overrides).method, resolve=True)


# ---------------------------------------------------------------- TAR
def tar_cfg(compose, *overrides):
    cfg = OmegaConf.create(composed_method(compose, "tar", *overrides))
    cfg.unlearning_rate, cfg.retaining_rate, cfg.adv_lr = 1e-2, 1e-2, 1e-1
    return cfg


def test_tar_config_is_the_papers_adaptation(compose):
    c = composed_method(compose, "tar")
    assert c["unlearning_loss"] == "neg_entropy"
    assert (c["masking"], c["normalization"], c["retain_momentum"]) == (False, "none", 0.0)
    assert build_method(OmegaConf.create(c)).passes_per_loop() == 6


def test_tar_representation_term_is_zero_at_the_original_weights(compose):
    model = tiny_llama(seed=1)
    params = prepare(model)
    method = build_method(tar_cfg(compose))
    method.original = OriginalWeights(params)
    batch = make_data().retain_train[0]
    loss = method.retain_loss(model, batch)
    assert method.last_representation_loss.item() == 0.0
    torch.testing.assert_close(loss, cross_entropy(model(input_ids=batch).logits, batch))
    # moved weights: the term is positive and its gradient points back to the original
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn_like(p) * 0.05)
    method.cfg.representation_weight = 1.0
    method.retain_loss(model, batch)
    assert method.last_representation_loss.item() > 0


def test_tar_counts_six_passes_and_frees_the_original_copy(compose):
    model = tiny_llama(seed=2)
    params = prepare(model)
    counts = count_passes(model)
    monitor = never_reject()
    method = build_method(tar_cfg(compose))
    method.unlearn(model, params, make_data(), 4, monitor)
    assert counts["fwd"] + counts["bwd"] == 4 * 6 == monitor.passes
    assert method.original.weights is None  # released after unlearning


def test_tar_retain_loss_matches_a_full_frozen_copy_of_the_original_model(compose):
    """Swapping in the saved targeted weights gives the same term as a deep-copied model."""
    import copy

    model = tiny_llama(seed=3)
    frozen = copy.deepcopy(model)
    params = prepare(model)
    method = build_method(tar_cfg(compose, "method.representation_weight=10"))
    method.original = OriginalWeights(params)
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn_like(p) * 0.1)
    batch = make_data().retain_train[1]
    loss = method.retain_loss(model, batch)
    out = model(input_ids=batch, output_hidden_states=True)
    with torch.no_grad():
        ref = frozen(input_ids=batch, output_hidden_states=True).hidden_states
    layers = range(len(ref) - 1)  # last hidden state excluded
    mse = sum((out.hidden_states[i] - ref[i]).pow(2).sum(-1).mean() for i in layers) / len(layers)
    assert mse > 1e-4
    torch.testing.assert_close(loss, cross_entropy(out.logits, batch) + 10 * mse)


def test_tar_rejects_negative_representation_weight(compose):
    with pytest.raises(ConfigError, match=r"method.representation_weight=-1.*>= 0"):
        build_method(tar_cfg(compose, "method.representation_weight=-1"))


# ---------------------------------------------------------------- gradient difference
def test_gradient_difference_is_one_sgd_step_on_the_summed_loss(compose):
    cfg = OmegaConf.create(composed_method(compose, "gradient_difference"))
    cfg.lr, cfg.retain_weight = 0.05, 0.5
    data = make_data()
    model = tiny_llama(seed=4)
    params = prepare(model)
    ps = list(params.values())
    f, r = data.forget_train[0], data.retain_train[0]
    loss = neg_cross_entropy(model(input_ids=f).logits, f) + 0.5 * cross_entropy(
        model(input_ids=r).logits, r
    )
    expected = [
        p.detach() - 0.05 * g for p, g in zip(ps, torch.autograd.grad(loss, ps), strict=True)
    ]
    counts = count_passes(model)
    monitor = never_reject()
    build_method(cfg).unlearn(model, params, data, 1, monitor)
    for p, e in zip(ps, expected, strict=True):
        torch.testing.assert_close(p.detach(), e)
    assert counts["fwd"] + counts["bwd"] == 4 == monitor.passes


# ---------------------------------------------------------------- circuit breakers
def test_circuit_breakers_reroutes_forget_and_keeps_retain_representations(compose):
    cfg = OmegaConf.create(composed_method(compose, "circuit_breakers"))
    cfg.lr = 20.0
    data = make_data(n=1)  # the same batches every loop
    model = tiny_llama(seed=5)
    params = prepare(model)
    original = OriginalWeights(params)
    f, r = data.forget_train[0], data.retain_train[0]
    f_orig, r_orig = original.hidden_states(model, f), original.hidden_states(model, r)
    counts = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    # the loss does not reach lm_head: count backwards through the first targeted module
    model.model.layers[0].mlp.gate_proj.register_full_backward_hook(
        lambda *a: counts.__setitem__("bwd", counts["bwd"] + 1)
    )
    monitor = never_reject()
    build_method(cfg).unlearn(model, params, data, 10, monitor)
    assert counts["fwd"] + counts["bwd"] == 60 == monitor.passes
    with torch.no_grad():
        f_now = model(input_ids=f, output_hidden_states=True).hidden_states
        r_now = model(input_ids=r, output_hidden_states=True).hidden_states
    layers = range(1, len(f_now) - 1)
    forget_cos = relu_cosine([f_now[i] for i in layers], [f_orig[i] for i in layers])
    retain_cos = relu_cosine([r_now[i] for i in layers], [r_orig[i] for i in layers])
    assert forget_cos < 0.5 and forget_cos < retain_cos  # forget rerouted more than retain


def test_circuit_breakers_layers_are_checked(compose):
    with pytest.raises(ConfigError, match=r"method.layers=\[0\]"):
        build_method(
            OmegaConf.create(composed_method(compose, "circuit_breakers", "method.layers=[0]"))
        )
    cfg = OmegaConf.create(composed_method(compose, "circuit_breakers", "method.layers=[7]"))
    model = tiny_llama(seed=6)
    with pytest.raises(ConfigError, match=r"outside 1..2"):
        build_method(cfg).unlearn(model, prepare(model), make_data(), 1, never_reject())
