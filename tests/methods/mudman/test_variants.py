"""MUDMAN's appendix B/D components: each one's defining property, and its config checks."""

from __future__ import annotations

import math

import pytest
import torch

from mudman.errors import ConfigError
from mudman.methods import build_method
from mudman.methods.mudman import unlearning_direction_
from mudman.methods.mudman.adversaries import FullAdversaries, LoraAdversaries
from mudman.methods.mudman.variants import (
    ForgetMomentum,
    SplitRetainAccumulator,
    keep_least_disruptive_,
    only_shrinking_,
    signed_disruption,
)
from mudman.models.tiny import tiny_llama
from tests.method_helpers import make_data, never_reject, prepare


def method(compose, name: str = "mudman", *overrides: str):
    cfg = compose(f"method={name}", *overrides).method
    cfg.unlearning_rate, cfg.retaining_rate, cfg.adv_lr = 1e-2, 1e-2, 1e-1
    return build_method(cfg)


def run(compose, name="mudman", *overrides, n_loops=4, seed=2):
    model = tiny_llama(seed=seed)
    params = prepare(model)
    m = method(compose, name, *overrides)
    m.unlearn(model, params, make_data(), n_loops, never_reject())
    return m, torch.cat([p.detach().flatten() for p in params.values()])


# ---------------------------------------------------------------- normalization (appendix B)
def grads_and_acc(seed=0):
    gen = torch.Generator().manual_seed(seed)
    grads = {
        "a": torch.randn(20, 5, generator=gen) * 1e-3,
        "b": torch.randn(40, generator=gen) * 10,
    }
    acc = {k: torch.randn(v.shape, generator=gen) for k, v in grads.items()}
    return grads, acc


def total_norm(grads):
    return math.sqrt(sum(g.pow(2).sum().item() for g in grads.values()))


@pytest.mark.parametrize("mode", ["none", "per_parameter", "global_pre_mask", "global_post_mask"])
def test_each_normalization_gives_the_norm_it_claims(mode):
    grads, acc = grads_and_acc()
    n = 140
    raw = {k: v.clone() for k, v in grads.items()}
    masked = {k: v * (v.sign() == acc[k].sign()) for k, v in raw.items()}
    out = unlearning_direction_(grads, acc, True, mode, n)
    if mode == "none":
        for k in out:
            torch.testing.assert_close(out[k], masked[k])
    elif mode == "per_parameter":  # every parameter separately at RMS 1 (after masking)
        for g in out.values():
            assert g.norm().item() == pytest.approx(math.sqrt(g.numel()), rel=1e-5)
    elif mode == "global_post_mask":  # the whole masked update at RMS 1
        assert total_norm(out) == pytest.approx(math.sqrt(n), rel=1e-5)
    else:  # scale fixed before masking: the masked update is shorter than sqrt(N)
        expected = math.sqrt(n) * total_norm(masked) / total_norm(raw)
        assert total_norm(out) == pytest.approx(expected, rel=1e-5) and expected < math.sqrt(n)
    # the per-parameter mode inflates the low-norm parameter; global modes keep the ratio
    if mode.startswith("global"):
        ratio = out["a"].norm() / out["b"].norm()
        assert ratio.item() == pytest.approx(
            (masked["a"].norm() / masked["b"].norm()).item(), rel=1e-5
        )


def test_normalization_variants_have_configs(compose):
    for name, mode in [
        ("per_parameter_normalization", "per_parameter"),
        ("global_post_mask_normalization", "global_post_mask"),
        ("no_normalization", "none"),
    ]:
        assert compose(f"method={name}").method.normalization == mode


# ---------------------------------------------------------------- only shrinking (D.3)
def test_only_shrinking_never_grows_or_flips_a_weight():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1000, generator=gen)
    update = torch.randn(1000, generator=gen) * 3  # many steps overshoot past zero
    new = w - only_shrinking_(update, w)
    assert torch.all(new.abs() <= w.abs())
    assert torch.all((new == 0) | (new.sign() == w.sign()))
    shrinking = update.sign() == w.sign()
    torch.testing.assert_close(
        new[shrinking & (update.abs() < w.abs())],
        (w - update)[shrinking & (update.abs() < w.abs())],
    )
    assert torch.all(new[~shrinking] == w[~shrinking])


def test_only_shrink_in_the_loop_never_grows_weights_by_unlearning(compose, monkeypatch):
    import mudman.methods.mudman.variants as options

    seen = []
    original = options.only_shrinking_

    def spy(update, weight):
        out = original(update, weight)
        seen.append(torch.all((weight - out).abs() <= weight.abs()).item())
        return out

    monkeypatch.setattr(options, "only_shrinking_", spy)
    _, on = run(compose, "only_shrink")
    _, off = run(compose)
    assert seen and all(seen) and not torch.allclose(on, off)


# ---------------------------------------------------------------- forget momentum (D.4)
def test_forget_momentum_is_a_decaying_average_of_unlearning_gradients():
    fm = ForgetMomentum({"w": torch.zeros(3)}, 0.5)
    fm({"w": torch.tensor([2.0, 0.0, -2.0])})
    out = fm({"w": torch.tensor([0.0, 4.0, 2.0])})
    torch.testing.assert_close(out["w"], torch.tensor([0.5, 2.0, 0.5]))  # .25*g1 + .5*g2


def test_forget_momentum_changes_the_loop_and_keeps_state(compose):
    _m, on = run(compose, "forget_momentum")
    _, off = run(compose)
    assert not torch.allclose(on, off)


# ---------------------------------------------------------------- percentiles, aggregation (D.4)
def test_disruption_percentile_keeps_the_least_disruptive_fraction():
    grads, acc = grads_and_acc(1)
    disruption = signed_disruption(acc)
    ratios = torch.cat([(disruption(k, g) / g.abs()).flatten() for k, g in grads.items()])
    kept = {k: v.clone() for k, v in grads.items()}
    keep_least_disruptive_(kept, disruption, 25)
    mask = torch.cat([(v != 0).flatten() for v in kept.values()])
    assert mask.sum().item() == 35  # 25 % of 140
    assert ratios[mask].max() <= ratios[~mask].min()


def test_retain_aggregations_treat_helpful_effects_as_claimed():
    """One weight, two retain batches: +1 (raising w hurts) and -3 (raising w helps)."""
    estimates = {}
    for h in (1.0, 0.3, -1.0):
        split = SplitRetainAccumulator({"w": torch.zeros(1)}, 0.0, h)
        split.momentum = 0.5
        for g in (torch.tensor([1.0]), torch.tensor([-3.0])):
            split.accumulate("w", g)
        estimates[h] = split.disruption("w", torch.tensor([-1.0])).item()  # update raises w
    # P = .25, N = 1.5: signed cancels (-1.25 = acc), compromise scales helpful down, absolute adds
    assert estimates[1.0] == pytest.approx(0.25 - 1.5)
    assert estimates[0.3] == pytest.approx(0.25 - 0.3 * 1.5)
    assert estimates[-1.0] == pytest.approx(0.25 + 1.5)


def test_absolute_aggregation_runs_with_percentiles(compose):
    _m, w = run(compose, "absolute_retain")
    _, plain = run(compose)
    assert torch.isfinite(w).all() and not torch.allclose(w, plain)


# ---------------------------------------------------------------- adversaries (D.4, D.5)
def test_lora_adversary_step_leaves_base_untouched_and_follows_the_chain_rule():
    torch.manual_seed(0)
    base = {"w": torch.randn(6, 4)}
    before = base["w"].clone()
    lora = LoraAdversaries(count=1, lr=0.1, rank=2)
    lora.fork(base)
    a, b = (t.clone() for t in lora.adapters[0]["w"])
    b.normal_()  # a non-zero B so both factors get gradients
    lora.adapters[0]["w"][1].copy_(b)
    target = torch.randn(6, 4)
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = ((base["w"] + b_ @ a_ - target) ** 2).sum()
    ga, gb = torch.autograd.grad(loss, [a_, b_])
    w = lora.weights(0, base)["w"].requires_grad_()
    grad_w = torch.autograd.grad(((w - target) ** 2).sum(), w)[0]
    lora.step(0, {"w": grad_w}, base)
    assert torch.equal(base["w"], before)
    torch.testing.assert_close(lora.adapters[0]["w"][0], a - 0.1 * ga)
    torch.testing.assert_close(lora.adapters[0]["w"][1], b - 0.1 * gb)


def test_lora_adversary_starts_at_base_and_tracks_it(compose):
    base = {"w": torch.randn(5, 3)}
    lora = LoraAdversaries(count=1, lr=0.1, rank=2)
    lora.fork(base)
    torch.testing.assert_close(lora.weights(0, base)["w"], base["w"])  # B = 0 at fork
    base["w"].add_(1.0)
    torch.testing.assert_close(lora.weights(0, base)["w"], base["w"])  # built on the live base
    _m, w = run(compose, "lora_adversary")
    assert torch.isfinite(w).all()


def test_multiple_adversaries_are_used_round_robin():
    base = {"w": torch.zeros(3)}
    full = FullAdversaries(count=3, lr=1.0)
    full.fork(base)
    for loop in range(4):
        full.step(loop, {"w": torch.ones(3)}, base)
    assert [c["w"][0].item() for c in full.copies] == [-2.0, -1.0, -1.0]
    assert full.weights(4, base) is full.copies[1]


def test_adversary_update_applies_the_scaled_base_update_to_every_adversary():
    base = {"w": torch.zeros(2)}
    full = FullAdversaries(count=2, lr=1.0, update_scale=0.5)
    full.fork(base)
    full.follow("w", torch.tensor([2.0, -4.0]), rate=1.0)
    for copy in full.copies:
        torch.testing.assert_close(copy["w"], torch.tensor([-1.0, 2.0]))


# ---------------------------------------------------------------- locate once (D.5)
def test_locate_once_computes_its_gradient_exactly_once(compose):
    model = tiny_llama(seed=5)
    params = prepare(model)
    data = make_data()
    forget_ids = {id(b) for b in data.forget_train}
    forget_forwards = []
    model.register_forward_pre_hook(
        lambda mod, args, kwargs: forget_forwards.append(id(kwargs["input_ids"]) in forget_ids),
        with_kwargs=True,
    )
    m = method(compose, "locate_once", "method.locate_once_batches=2")
    monitor = never_reject()
    n_loops = m.n_loops(30)
    assert m.passes_per_loop() == 2 and n_loops == 13  # (30 - 2*2) / 2
    m.unlearn(model, params, data, n_loops, monitor)
    assert sum(forget_forwards) == 2  # the located gradient's two batches, never again
    assert len(forget_forwards) == 2 + n_loops and monitor.passes == 30


# ---------------------------------------------------------------- config-time checks
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.disruption_percentile=50"], r"method.disruption_percentile=50 .*masking=false"),
        (
            ["method.retain_aggregation=absolute"],
            r"method.retain_aggregation='absolute'.*disruption_percentile",
        ),
        (["method.retain_aggregation=sum"], r"method.retain_aggregation='sum'.*signed, absolute"),
        (
            ["method.meta_learning=false", "method.adversary=lora"],
            r"method.adversary='lora'.*meta_learning",
        ),
        (
            ["method.adversary=lora", "method.adv_update_scale=0.5"],
            r"method.adv_update_scale=0.5.*lora",
        ),
        (["method.locate_once=true"], r"method.locate_once=True.*meta_learning=true"),
        (["method.forget_momentum=1.0"], r"method.forget_momentum=1.0.*< 1"),
        (["method.n_adversaries=0"], r"method.n_adversaries=0.*int >= 1"),
        (["method.adversary=lora", "method.adv_decay=0.5"], r"method.adv_decay=0.5.*lora"),
    ],
)
def test_unknown_or_incompatible_components_fail_at_config_time(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_method(compose(*overrides).method)


def test_mudman_defaults_are_written_once_in_its_yaml():
    """The typed schema and conf/method/mudman.yaml name the same keys, and a block that lacks
    keys (built in code) takes the YAML's values: no default is restated in Python."""
    import dataclasses

    from omegaconf import OmegaConf

    from mudman.methods.mudman.settings import MudmanSettings

    shipped = OmegaConf.to_container(OmegaConf.load("conf/method/mudman.yaml"))
    assert [f.name for f in dataclasses.fields(MudmanSettings)] == list(shipped)
    for f in dataclasses.fields(MudmanSettings):
        assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    minimal = OmegaConf.create({"name": "mine", "algorithm": "mudman", "forget_momentum": 0.5})
    settings = MudmanSettings.from_config(minimal)
    assert dataclasses.asdict(settings) == {**shipped, "name": "mine", "forget_momentum": 0.5}


def test_locate_once_budget_must_leave_loops(compose):
    m = method(compose, "locate_once", "method.locate_once_batches=4")
    with pytest.raises(ConfigError, match=r"method.locate_once_batches=4"):
        m.n_loops(8)
    with pytest.raises(ConfigError, match=r"not divisible by the 2 passes"):
        m.n_loops(13)
