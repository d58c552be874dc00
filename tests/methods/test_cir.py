"""CIR: rebuilt gradients, collapsed subspaces, collection epoch, normalization, stop rule."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mudman.errors import ConfigError
from mudman.methods import build_method
from mudman.methods.cir import Recorder, mlp_modules
from mudman.methods.components.collapse import principal_basis, rebuilt_weight_grad
from mudman.models.tiny import tiny_llama
from tests.method_helpers import make_data, never_reject, prepare


def cir_cfg(compose, *overrides):
    return OmegaConf.create(
        OmegaConf.to_container(compose("method=cir", *overrides).method, resolve=True)
    )


def forget_grads(model, params, batch):
    """Per-token acts / output grads of a forward with the MLP-output loss, plus autograd's
    own weight gradients of the same loss."""
    linears = {n: model.get_submodule(n.removesuffix(".weight")) for n in params}
    rec = Recorder(linears, mlp_modules(model, None))
    model(input_ids=batch)
    loss = sum(o.pow(2).mean() for o in rec.mlp_out.values())
    names = list(rec.outputs)
    outs = torch.autograd.grad(loss, [rec.outputs[n] for n in names], retain_graph=True)
    weight_grads = torch.autograd.grad(loss, [params[n] for n in names])
    rec.remove()
    return [
        (rec.inputs[n].flatten(0, -2), g.flatten(0, -2), wg)
        for n, g, wg in zip(names, outs, weight_grads, strict=True)
    ]


def test_zero_components_reproduce_plain_backprop_exactly():
    model = tiny_llama(seed=0)
    params = prepare(model)
    for acts, g, weight_grad in forget_grads(model, params, make_data().forget_train[0]):
        empty_a, empty_g = principal_basis(acts, 0, False), principal_basis(g, 0, False)
        torch.testing.assert_close(rebuilt_weight_grad(acts, g, empty_a, empty_g), weight_grad)


def test_k_components_make_the_rebuilt_gradient_orthogonal_to_removed_directions():
    model = tiny_llama(seed=1)
    params = prepare(model)
    data = make_data()
    collected = forget_grads(model, params, data.forget_train[0])
    current = forget_grads(model, params, data.forget_train[1])
    for (acts0, g0, _), (acts, g, weight_grad) in zip(collected, current, strict=True):
        act_basis, grad_basis = principal_basis(acts0, 5, True), principal_basis(g0, 7, True)
        assert act_basis.shape[1] == 6 and grad_basis.shape[1] == 8
        torch.testing.assert_close(act_basis.T @ act_basis, torch.eye(6), atol=1e-5, rtol=0)
        rebuilt = rebuilt_weight_grad(acts, g, act_basis, grad_basis)
        scale = weight_grad.abs().max()
        assert (rebuilt @ act_basis).abs().max() < 1e-4 * scale  # no update along removed inputs
        assert (grad_basis.T @ rebuilt).abs().max() < 1e-4 * scale  # nor removed outputs
        assert rebuilt.norm() > 1e-3 * weight_grad.norm()  # but something specific remains


def run_cir(compose, n_loops, *overrides, monitor=None):
    model = tiny_llama(seed=2)
    params = prepare(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    method = build_method(cir_cfg(compose, "method.epoch_batches=2", *overrides))
    monitor = monitor or never_reject()
    method.unlearn(model, params, make_data(), n_loops, monitor)
    return method, params, before, monitor


def test_first_epoch_only_collects_and_passes_are_counted(compose):
    _, params, before, monitor = run_cir(compose, 2)
    assert all(torch.equal(params[n], before[n]) for n in params)
    assert monitor.passes == 10
    _, params, before, monitor = run_cir(compose, 3, "method.disruption_budget=100")
    assert not all(torch.equal(params[n], before[n]) for n in params)
    assert monitor.passes == 15


def test_unlearning_update_is_globally_normalized(compose):
    _, params, before, _ = run_cir(
        compose,
        3,
        "method.retaining_rate=0",
        "method.unlearning_rate=0.01",
        "method.disruption_budget=100",
    )
    delta = torch.cat([(params[n] - before[n]).flatten() for n in params])
    assert delta.pow(2).mean().sqrt().item() == pytest.approx(0.01, rel=1e-4)


def test_disruption_stop_rule_ends_unlearning_early(compose):
    method, _, _, monitor = run_cir(
        compose, 12, "method.unlearning_rate=5.0", "method.disruption_budget=1e-6"
    )
    assert method.stopped_at == 4 and monitor.passes == 20  # end of the first updating epoch


def test_cir_config_errors(compose):
    with pytest.raises(ConfigError, match=r"method.act_components=-1.*int >= 0"):
        build_method(cir_cfg(compose, "method.act_components=-1"))
    with pytest.raises(ConfigError, match=r"confuse_layers=\[5\]: no MLP at layers \[5\]"):
        run_cir(compose, 1, "method.confuse_layers=[5]")
