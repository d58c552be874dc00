"""TAR, gradient difference and circuit breakers: each one's defining behaviour on tiny models."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mudman.errors import ConfigError
from mudman.losses import cross_entropy, neg_cross_entropy
from mudman.methods import build_method
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import (
    mean_relative_l2,
    relu_bounded_projection,
    relu_cosine,
)
from mudman.models.tiny import tiny_llama
from tests.method_helpers import make_data, never_reject, prepare


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
    assert (c["representation_distance"], c["representation_skip_first"]) == (
        "relative_squared_l2",
        0,
    )
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


@pytest.mark.parametrize(
    "distance, per_token",
    [
        ("relative_squared_l2", lambda d, r: d.pow(2).sum(-1) / r.pow(2).sum(-1)),  # default
        ("squared_l2", lambda d, r: d.pow(2).sum(-1)),  # the reference code's square_norm=True
    ],
)
def test_tar_retain_loss_matches_a_full_frozen_copy_of_the_original_model(
    compose, distance, per_token
):
    """Swapping in the saved targeted weights gives the same term as a deep-copied model."""
    import copy

    model = tiny_llama(seed=3)
    frozen = copy.deepcopy(model)
    params = prepare(model)
    method = build_method(
        tar_cfg(
            compose,
            "method.representation_weight=10",
            f"method.representation_distance={distance}",
        )
    )
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
    mse = sum(per_token(out.hidden_states[i] - ref[i], ref[i]).mean() for i in layers) / len(layers)
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
def cb_cfg(compose, *overrides):
    return OmegaConf.create(composed_method(compose, "circuit_breakers", *overrides))


def test_circuit_breakers_reroutes_forget_and_keeps_retain_representations(compose):
    cfg = cb_cfg(compose, "method.lr=0.03")
    data = make_data(n=1)  # the same batches every loop
    model = tiny_llama(seed=5)
    params = prepare(model)
    original = OriginalWeights(params)
    f, r = data.forget_train[0], data.retain_train[0]
    f_orig, r_orig = original.hidden_states(model, f), original.hidden_states(model, r)
    counts = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    # count backwards through the first targeted module (reached by every loss term)
    model.model.layers[0].mlp.gate_proj.register_full_backward_hook(
        lambda *a: counts.__setitem__("bwd", counts["bwd"] + 1)
    )
    monitor = never_reject()
    method = build_method(cfg)
    method.unlearn(model, params, data, 10, monitor)
    assert counts["fwd"] + counts["bwd"] == 60 == monitor.passes
    with torch.no_grad():
        f_now = model(input_ids=f, output_hidden_states=True).hidden_states
        r_now = model(input_ids=r, output_hidden_states=True).hidden_states
    layers = range(1, len(f_now) - 1)
    forget_cos = relu_cosine([f_now[i][:, 1:] for i in layers], [f_orig[i][:, 1:] for i in layers])
    retain_cos = relu_cosine([r_now[i] for i in layers], [r_orig[i] for i in layers])
    assert forget_cos < 0.5 and forget_cos < retain_cos  # forget rerouted more than retain
    assert method.history[0][0] == pytest.approx(1.0)  # the term starts at 1 ...
    assert method.history[-1][0] < 0.5  # ... and falls


def test_circuit_breakers_loss_is_the_scheduled_sum_of_its_terms(compose):
    """Pins the math on hand-made hidden states (embeddings, 2 layers, final state)."""
    method = build_method(cb_cfg(compose, "method.alpha=2.0"))
    gen = torch.Generator().manual_seed(0)
    orig = tuple(torch.randn(2, 3, 4, generator=gen) for _ in range(4))
    now = tuple(o + 0.3 * torch.randn(2, 3, 4, generator=gen) for o in orig)
    total, reroute, retain = method.loss(now, orig, now, orig, t=3, n_loops=10)

    def bounded(h, o):  # position 0 skipped, per-token formula written out
        h, o = h[:, 1:], o[:, 1:]
        scale = o.norm(dim=-1) * torch.maximum(h.norm(dim=-1), o.norm(dim=-1))
        return ((h * o).sum(-1) / scale).clamp_min(0).mean()

    want_reroute = (bounded(now[1], orig[1]) + bounded(now[2], orig[2])) / 2  # layers 1..n-2
    want_retain = (
        sum(((now[i] - orig[i]).norm(dim=-1) / orig[i].norm(dim=-1)).mean() for i in (1, 2, 3)) / 3
    )
    torch.testing.assert_close(reroute, want_reroute)
    torch.testing.assert_close(retain, want_retain)
    torch.testing.assert_close(
        total, 2.0 * (1 - 3 / 20) * want_reroute + 2.0 * 3 / 20 * want_retain
    )
    # the original's plain L2 distance, and rerouting position 0 too, are options
    method = build_method(
        cb_cfg(compose, "method.retain_distance=l2", "method.skip_first_token=false")
    )
    _, reroute_all, retain_l2 = method.loss(now, orig, now, orig, t=0, n_loops=10)
    torch.testing.assert_close(
        retain_l2, sum((now[i] - orig[i]).norm(dim=-1).mean() for i in (1, 2, 3)) / 3
    )
    assert not torch.allclose(reroute_all, reroute)


def test_circuit_breakers_first_loop_is_one_adam_step_on_the_rerouting_term(compose):
    """t = 0: retain weight 0, so the update is Adam's first step (lr * sign(g) up to eps)."""
    cfg = cb_cfg(compose, "method.lr=0.01")
    data = make_data()
    model = tiny_llama(seed=8)
    params = prepare(model)
    ps = list(params.values())
    f = data.forget_train[0]
    with torch.no_grad():
        f_orig = model(input_ids=f, output_hidden_states=True).hidden_states
    f_now = model(input_ids=f, output_hidden_states=True).hidden_states
    # 2 layers: hidden states (embeddings, layer 0, final); only layer 0's output is rerouted
    term = relu_bounded_projection([f_now[1]], [f_orig[1]], skip_first=1)
    g0, g1 = torch.autograd.grad(term, ps, allow_unused=True)
    assert g0.abs().max() > 0 and g1 is None  # non-zero gradient at the original weights
    expected = [ps[0].detach() - 0.01 * g0 / (g0.abs() + 1e-8), ps[1].detach().clone()]
    monitor = never_reject()
    build_method(cfg).unlearn(model, params, data, 1, monitor)
    for p, e in zip(ps, expected, strict=True):  # weights with |g| ~ eps: summation-order noise
        torch.testing.assert_close(p.detach(), e, atol=1e-4, rtol=0)
    assert monitor.passes == 6


def test_bounded_projection_is_cosine_or_projection_and_never_leaves_zero_one():
    o = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # position 0 is skipped below
    for h, want in [
        ([6.0, 8.0], 1.0),  # longer, same direction: cos = 1 (the projection would say 2)
        ([1.5, 2.0], 0.5),  # shorter: the projection <h, o> / |o|^2
        ([-3.0, -4.0], 0.0),  # opposed: clipped at 0
        ([4.0, -3.0], 0.0),  # orthogonal
    ]:
        hidden = torch.tensor([[[9.0, 9.0], h]])
        value = relu_bounded_projection([hidden], [o], skip_first=1)
        assert value.item() == pytest.approx(want)
    # guard: tiny- and zero-norm original tokens give finite values in [0, 1], finite gradients
    gen = torch.Generator().manual_seed(1)
    scales = torch.tensor([0.0, 1e-30, 1e-12, 1e-3, 1.0, 1e4]).view(1, -1, 1)
    o = torch.randn(5, 6, 8, generator=gen) * scales
    h = (o + torch.randn(5, 6, 8, generator=gen) * scales.flip(1)).requires_grad_()
    per_token = [relu_bounded_projection([h[:, i : i + 1]], [o[:, i : i + 1]]) for i in range(6)]
    values = torch.stack(per_token)
    assert torch.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    values.sum().backward()
    assert torch.isfinite(h.grad).all()
    # at h = o: value 1 with a gradient, where relu(cos) has its maximum and zero gradient
    o = torch.randn(2, 5, 8, generator=gen)
    h = o.clone().requires_grad_()
    relu_bounded_projection([h], [o]).backward()
    n_tokens = 2 * 5
    torch.testing.assert_close(h.grad, o / o.pow(2).sum(-1, keepdim=True) / n_tokens)
    h.grad = None
    relu_cosine([h], [o]).backward()
    assert h.grad.norm() < 1e-6


def test_relative_l2_is_scale_free_per_token():
    """A token 1e4 times larger (an attention sink) weighs the same as any other token."""
    gen = torch.Generator().manual_seed(2)
    o = torch.randn(1, 2, 8, generator=gen)
    h = o + 0.1 * torch.randn(1, 2, 8, generator=gen)
    big = torch.tensor([1e4, 1.0]).view(1, 2, 1)
    torch.testing.assert_close(mean_relative_l2([h * big], [o * big]), mean_relative_l2([h], [o]))
    torch.testing.assert_close(
        mean_relative_l2([h], [o], skip_first=1), (h - o)[0, 1].norm() / o[0, 1].norm()
    )
    assert mean_relative_l2([o], [o]).item() == 0.0


def test_circuit_breakers_layers_are_checked(compose):
    with pytest.raises(ConfigError, match=r"method.layers=\[0\]"):
        build_method(
            OmegaConf.create(composed_method(compose, "circuit_breakers", "method.layers=[0]"))
        )
    cfg = OmegaConf.create(composed_method(compose, "circuit_breakers", "method.layers=[7]"))
    model = tiny_llama(seed=6)
    with pytest.raises(ConfigError, match=r"outside 1..2"):
        build_method(cfg).unlearn(model, prepare(model), make_data(), 1, never_reject())


def test_circuit_breakers_rejects_unknown_retain_distance(compose):
    with pytest.raises(ConfigError, match=r"method.retain_distance='l3'.*relative_l2 \| l2"):
        build_method(cb_cfg(compose, "method.retain_distance=l3"))
    with pytest.raises(ConfigError, match=r"method.skip_first_token"):
        build_method(cb_cfg(compose, "method.skip_first_token=1"))
