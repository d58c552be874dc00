"""Speed work on the unlearning loop gives bitwise the results of the previous loop."""

from __future__ import annotations

import pytest
import torch

from mudman.errors import ConfigError
from mudman.losses import cross_entropy, get_loss
from mudman.methods import build_method
from mudman.methods.base import batch_pairs
from mudman.methods.mudman import Mudman, global_norm, mask_disagreeing_, normalize_, use_weights
from mudman.models.tiny import tiny_llama
from tests.method_helpers import MudmanOptions, locate_passes, never_reject, prepare
from tests.methods.mudman.test_loop import make_data, method_cfg, run_method


def previous_unlearn(method, model, params, data, n_loops, monitor) -> None:
    """The loop as it was before the speed work (per-tensor ops, two backwards, two-sign mask)."""
    c = method.cfg
    unlearning_loss = get_loss(c.unlearning_loss, **(c.get("unlearning_loss_kwargs") or {}))
    targets = list(params.values())
    n_elements = sum(p.numel() for p in targets)
    base = {n: p.data for n, p in params.items()}
    acc = {n: torch.zeros_like(w) for n, w in base.items()}
    options = MudmanOptions(c, base)
    adversaries = options.adversaries
    pairs = batch_pairs(data)
    method.state = {"base": base, "acc": acc}
    located = options.locate(model, params, data, unlearning_loss)
    if located is not None:
        monitor.count(locate_passes(c))
    for loop_num in range(n_loops):
        if adversaries and loop_num % c.fork_every_n_loops == 0:
            adversaries.fork(base)
            method.state["adv"] = adversaries.weights(0, base)
        retain_batch, forget_batch = next(pairs)
        use_weights(params, base)
        retain_grads = torch.autograd.grad(method.retain_loss(model, retain_batch), targets)
        for (n, w), g in zip(base.items(), retain_grads, strict=True):
            acc[n].mul_(c.retain_momentum).add_(g, alpha=1 - c.retain_momentum)
            options.accumulate_retain(n, g)
            w.sub_(acc[n], alpha=c.retaining_rate)
            options.follow(n, acc[n], c.retaining_rate)
        if located is not None:
            grads = {n: g.clone() for n, g in located.items()}
        else:
            adv = adversaries.weights(loop_num, base) if adversaries else base
            use_weights(params, adv)
            logits = model(input_ids=forget_batch).logits
            if adversaries:
                adv_grads = torch.autograd.grad(
                    cross_entropy(logits, forget_batch), targets, retain_graph=True
                )
            unlearning_grads = torch.autograd.grad(unlearning_loss(logits, forget_batch), targets)
            grads = dict(zip(params, unlearning_grads, strict=True))
            del logits
            if adversaries:
                adversaries.step(loop_num, dict(zip(params, adv_grads, strict=True)), base)
        grads = options.unlearning_grads(grads)
        norm = global_norm(grads)
        if c.masking:
            for n, g in grads.items():
                g.mul_(torch.sign(g) == torch.sign(acc[n]))
        select = options.select(acc)
        if select is not None:
            select(grads)
        if c.normalization == "global_post_mask":
            norm = global_norm(grads)
        normalize_(grads, c.normalization, norm, n_elements)
        for n, g in grads.items():
            update = options.restrict(g.mul_(c.unlearning_rate), base[n])
            base[n].sub_(update)
            options.follow(n, update, 1.0)
        use_weights(params, base)
        monitor.count(method.passes_per_loop())


def snapshot(model, method) -> dict:
    state = {k: {n: t.clone() for n, t in v.items()} for k, v in method.state.items()}
    state["model"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return state


def as_bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes: torch.equal on them tells -0.0 from 0.0 and compares NaN payloads."""
    return t.contiguous().view(torch.uint8)


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for kind, tensors in a.items():
        assert tensors.keys() == b[kind].keys(), kind
        for name, tensor in tensors.items():
            other = b[kind][name]
            assert tensor.dtype == other.dtype and tensor.shape == other.shape, (kind, name)
            assert torch.equal(as_bits(tensor), as_bits(other)), (kind, name)


VARIANTS = {
    "default": {},
    "fork_every_loop": {"fork_every_n_loops": 1},
    "no_decay": {"adv_decay": 1.0},
    "no_masking": {"masking": False},
    "post_mask_norm": {"normalization": "global_post_mask"},
    "per_parameter_norm": {"normalization": "per_parameter"},
    "no_normalization": {"normalization": "none"},
    "neg_entropy": {"unlearning_loss": "neg_entropy"},
    "no_meta_learning": {"meta_learning": False},
    "only_shrink": {"only_shrink": True},
    "adversary_follows": {"adv_update_scale": 0.5},
    "lora": {"adversary": "lora", "adv_decay": 1.0},
    "two_adversaries": {"n_adversaries": 2},
    "forget_momentum": {"forget_momentum": 0.5},
    "percentiles_scaled_helpful": {
        "masking": False,
        "disruption_percentile": 40,
        "retain_aggregation": "scaled_helpful",
        "helpful_scale": 0.3,
    },
    "locate_once": {"meta_learning": False, "locate_once": True, "locate_once_batches": 2},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loop_is_bitwise_the_previous_loop(variant):
    """Same weights, accumulator and adversary to the last bit, same passes counted."""
    data = make_data()
    cfg = method_cfg(**VARIANTS[variant])
    results = {}
    for name in ("previous", "current"):
        torch.manual_seed(0)  # LoRA adversaries draw random A matrices
        model = tiny_llama(seed=0)
        params = prepare(model)
        method = build_method(cfg)
        monitor = never_reject()
        if name == "previous":
            previous_unlearn(method, model, params, data, 5, monitor)
        else:
            method.unlearn(model, params, data, 5, monitor)
        results[name] = (snapshot(model, method), monitor.passes)
    assert results["previous"][1] == results["current"][1]
    assert_bitwise_equal(results["previous"][0], results["current"][0])


@pytest.mark.parametrize(
    "dtype, bits", [(torch.float32, torch.int32), (torch.bfloat16, torch.int16)]
)
def test_fused_mask_is_bitwise_the_two_sign_mask(dtype, bits):
    """Including zeros of both signs, infinities, NaN and subnormal products."""
    gen = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-30, -1e-30])
    g = torch.cat([torch.randn(200, generator=gen), special.repeat_interleave(len(special))])
    acc = torch.cat([torch.randn(200, generator=gen), special.repeat(len(special))])
    g, acc = g.to(dtype), acc.to(dtype)
    expected = g.clone().mul_(torch.sign(g) == torch.sign(acc))
    got = mask_disagreeing_(g.clone(), acc)
    assert torch.equal(got.view(bits), expected.view(bits))


def test_the_shared_backward_runs_four_passes_and_counts_five():
    method = build_method(method_cfg())
    assert method.shares_ce_backward() and method.passes_per_loop() == 5
    four = build_method(method_cfg(pass_accounting="executed"))
    assert four.shares_ce_backward() and four.passes_per_loop() == 4
    assert four.n_loops(300) == 75 and method.n_loops(300) == 60
    assert not build_method(method_cfg(unlearning_loss="neg_entropy")).shares_ce_backward()


def test_the_four_pass_variant_only_differs_in_the_loops_a_budget_buys():
    data = make_data()
    states = {}
    for accounting in ("paper", "executed"):
        model = tiny_llama(seed=0)
        method, _ = run_method(model, method_cfg(pass_accounting=accounting), data, n_loops=4)
        states[accounting] = snapshot(model, method)
    assert_bitwise_equal(states["paper"], states["executed"])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"pass_accounting": "executed", "unlearning_loss": "neg_entropy"}, "pass_accounting"),
        ({"pass_accounting": "executed", "meta_learning": False}, "pass_accounting"),
        ({"pass_accounting": "sometimes"}, r"pass_accounting='sometimes'.*paper, executed"),
        ({"reuse_ce_backward": True}, r"reuse_ce_backward=True.*pass_accounting=executed"),
    ],
)
def test_bad_pass_accounting_is_a_config_error(changes, match):
    with pytest.raises(ConfigError, match=match):
        build_method(method_cfg(**changes))


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
