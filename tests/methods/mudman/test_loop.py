"""MUDMAN's defining behaviour, checked component by component on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from mudman.losses import cross_entropy, neg_cross_entropy
from mudman.methods import build_method
from mudman.methods.monitor import PassMonitor
from mudman.methods.mudman import unlearning_direction_
from mudman.models.targets import select_target_params
from mudman.models.tiny import tiny_gpt_neox, tiny_llama
from tests.conftest import REPO
from tests.method_helpers import make_data, never_reject, prepare

BASE_METHOD = dict(
    name="mudman",
    algorithm="mudman",
    unlearning_loss="neg_cross_entropy",
    unlearning_loss_kwargs={},
    masking=True,
    normalization="global_pre_mask",
    meta_learning=True,
    unlearning_rate=1e-2,
    retaining_rate=1e-2,
    retain_momentum=0.5,
    adv_lr=1e-1,
    adv_decay=0.8,
    fork_every_n_loops=2,
)


def method_cfg(**changes):
    return OmegaConf.create({**BASE_METHOD, **changes})


def run_method(model, cfg, data, n_loops, monitor=None):
    params = prepare(model)
    method = build_method(cfg)
    method.unlearn(model, params, data, n_loops, monitor or never_reject())
    return method, params


# ---------------------------------------------------------------- masking and normalization
def test_masking_zeroes_exactly_the_sign_disagreeing_entries():
    g = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0, 0.5])
    acc = torch.tensor([2.0, 1.0, -1.0, -3.0, 0.0, 7.0])
    out = unlearning_direction_({"w": g.clone()}, {"w": acc}, True, "none", g.numel())["w"]
    assert out.tolist() == [1.0, 0.0, 0.0, -4.0, 0.0, 0.5]


def test_normalization_uses_the_pre_mask_global_norm():
    grads = {"a": torch.tensor([3.0, -4.0]), "b": torch.tensor([12.0, 0.0, 0.0])}
    acc = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 1.0, 1.0])}
    pre_norm = 13.0  # sqrt(9 + 16 + 144), before -4 is masked out
    n = 5
    out = unlearning_direction_(
        {k: v.clone() for k, v in grads.items()}, acc, True, "global_pre_mask", n
    )
    scale = math.sqrt(n) / pre_norm
    assert torch.allclose(out["a"], torch.tensor([3.0 * scale, 0.0]))
    assert torch.allclose(out["b"], torch.tensor([12.0 * scale, 0.0, 0.0]))
    post = unlearning_direction_(
        {k: v.clone() for k, v in grads.items()}, acc, True, "global_post_mask", n
    )
    assert torch.allclose(post["a"][0], torch.tensor(3.0 * math.sqrt(n) / math.sqrt(153.0)))


def test_global_normalization_makes_rate_a_per_weight_rms_step():
    torch.manual_seed(0)
    grads = {"a": torch.randn(10, 7) * 1e-5, "b": torch.randn(33) * 1e3}
    out = unlearning_direction_(grads, {}, False, "global_pre_mask", 10 * 7 + 33)
    rms = torch.cat([g.flatten() for g in out.values()]).pow(2).mean().sqrt()
    assert rms == pytest.approx(1.0, rel=1e-5)
    per = unlearning_direction_(
        {"a": torch.randn(4) * 9, "b": torch.randn(9) * 1e-3}, {}, False, "per_parameter", 13
    )
    for g in per.values():
        assert g.pow(2).mean().sqrt() == pytest.approx(1.0, rel=1e-5)


# ---------------------------------------------------------------- the whole loop vs Listing 1
def listing_one(model, data, c, n_loops):
    """Straight transcription of the paper's Listing 1 (both forget gradients taken at the
    same adversary point), written independently of mudman.methods.mudman."""
    params = prepare(model)
    ps = list(params.values())
    base = [p.data.clone() for p in ps]
    acc = [torch.zeros_like(p) for p in ps]
    adv = None
    n = sum(p.numel() for p in ps)
    for loop in range(n_loops):
        retain, forget = data.retain_train[loop % 6], data.forget_train[loop % 6]
        if loop % c.fork_every_n_loops == 0:
            adv = [b.clone() for b in base]
        for p, b in zip(ps, base, strict=False):
            p.data = b
        g_r = torch.autograd.grad(cross_entropy(model(input_ids=retain).logits, retain), ps)
        for i in range(len(ps)):
            acc[i] = c.retain_momentum * acc[i] + (1 - c.retain_momentum) * g_r[i]
            base[i] = base[i] - c.retaining_rate * acc[i]
        for p, a in zip(ps, adv, strict=False):
            p.data = a
        out = model(input_ids=forget).logits
        g_adv = torch.autograd.grad(cross_entropy(out, forget), ps, retain_graph=True)
        g_u = torch.autograd.grad(neg_cross_entropy(out, forget), ps)
        adv = [
            (a - c.adv_lr * g) * c.adv_decay + b * (1 - c.adv_decay)
            for a, g, b in zip(adv, g_adv, base, strict=False)
        ]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in g_u))
        for i, g in enumerate(g_u):
            g = g * (g.sign() == acc[i].sign())
            base[i] = base[i] - c.unlearning_rate * g * math.sqrt(n) / norm
    for p, b in zip(ps, base, strict=False):
        p.data = b
    return model


def test_mudman_matches_an_independent_transcription_of_listing_one():
    cfg = method_cfg()
    data = make_data()
    ours = tiny_llama(seed=1)
    run_method(ours, cfg, data, n_loops=5)
    ref = listing_one(tiny_llama(seed=1), data, cfg, n_loops=5)
    for (name, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    untouched = tiny_llama(seed=1)
    changed = [
        n
        for (n, a), (_, b) in zip(
            ours.named_parameters(), untouched.named_parameters(), strict=False
        )
        if not torch.equal(a, b)
    ]
    assert changed and all("gate_proj" in n for n in changed)


# ---------------------------------------------------------------- ablations and state
def _final_weights(**changes):
    torch.manual_seed(0)
    model = tiny_llama(seed=2)
    run_method(model, method_cfg(**changes), make_data(), n_loops=4)
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "gate" in n])


@pytest.mark.parametrize(
    "switch",
    [{"masking": False}, {"normalization": "none"}, {"meta_learning": False}, {"adv_decay": 1.0}],
)
def test_each_ablation_switch_changes_the_result(switch):
    assert not torch.allclose(_final_weights(), _final_weights(**switch))


def test_no_masking_equals_masking_when_accumulator_agrees_everywhere(monkeypatch):
    """Switching masking off changes exactly the masked entries: with an accumulator whose
    signs agree with every unlearning gradient, both switches give identical directions."""
    g = {"w": torch.randn(50)}
    acc = {"w": g["w"].sign() * torch.rand(50)}
    on = unlearning_direction_({"w": g["w"].clone()}, acc, True, "global_pre_mask", 50)
    off = unlearning_direction_({"w": g["w"].clone()}, acc, False, "global_pre_mask", 50)
    torch.testing.assert_close(on["w"], off["w"])


def test_without_meta_learning_no_adversary_is_created():
    method, _params = run_method(
        tiny_llama(seed=3), method_cfg(meta_learning=False), make_data(), n_loops=3
    )
    assert "adv" not in method.state
    assert method.passes_per_loop() == 4


def test_adversary_and_accumulator_exist_only_for_targeted_params():
    model = tiny_gpt_neox(seed=0)
    params = select_target_params(model, ["dense_h_to_4h"])
    for name, p in model.named_parameters():
        p.requires_grad_(name in params)
    method = build_method(method_cfg())
    method.unlearn(model, params, make_data(), 3, never_reject())
    for key in ("base", "adv", "acc"):
        assert list(method.state[key]) == list(params)
        for name, tensor in method.state[key].items():
            assert tensor.shape == params[name].shape
    assert all(p.grad is None for p in model.parameters())  # no stray weight gradients
    # after unlearning the model runs on the base weights, not the adversary's
    for name, p in params.items():
        assert p.data.data_ptr() == method.state["base"][name].data_ptr()


# ---------------------------------------------------------------- pass accounting
@pytest.mark.parametrize(
    "changes, executed, counted",
    [
        ({}, 4, 5),  # -CE: one backward serves both steps, the paper's 5 passes are charged
        ({"pass_accounting": "executed"}, 4, 4),  # the 4-pass budget variant
        ({"unlearning_loss": "neg_entropy"}, 5, 5),  # two different losses: two backwards
        ({"meta_learning": False}, 4, 4),
    ],
)
def test_pass_accounting_counts_the_papers_passes(changes, executed, counted):
    model = tiny_llama(seed=4)
    counts = {"fwd": 0, "bwd": 0}
    model.register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    model.lm_head.register_full_backward_hook(
        lambda *a: counts.__setitem__("bwd", counts["bwd"] + 1)
    )
    monitor = never_reject()
    _method, _ = run_method(model, method_cfg(**changes), make_data(), 6, monitor)
    assert counts["fwd"] + counts["bwd"] == 6 * executed
    assert monitor.passes == 6 * counted == 6 * _method.passes_per_loop()


def test_budget_must_divide_into_loops():
    from mudman.errors import ConfigError

    method = build_method(method_cfg())
    assert method.n_loops(300) == 60
    with pytest.raises(ConfigError, match=r"unlearn_passes=32 is not divisible by the 5 passes"):
        method.n_loops(32)
    assert build_method(method_cfg(meta_learning=False)).n_loops(32) == 8


def test_monitor_evaluates_every_k_passes_across_loop_boundaries():
    seen = []
    monitor = PassMonitor(
        lambda: {"forget_loss": 1.0, "retain_loss": 0.0},
        30,
        1.0,
        0.0,
        on_eval=lambda passes, _: seen.append(passes),
    )
    for _ in range(30):
        monitor.count(4)  # 4 passes per loop: 30 is crossed at 32, 60 at 60, 90 at 92, ...
    assert seen == [32, 60, 92, 120]


def test_docs_show_the_loop_as_it_is_in_the_code():
    """docs/methods.md prints ``Mudman.unlearn``'s loop beside Listing 1: it must not drift."""
    import inspect
    import re
    import textwrap

    from mudman.methods.mudman import Mudman

    page = (REPO / "docs" / "methods.md").read_text()
    shown = re.search(r"```python\n(for loop_num in range\(n_loops\):\n.*?)```", page, re.S)
    assert shown, "docs/methods.md lost its copy of the loop"
    source = textwrap.dedent(inspect.getsource(Mudman.unlearn))
    assert textwrap.indent(shown.group(1), "    ") in source


def test_docs_pointers_to_the_mudman_package_name_the_lines_they_point_at():
    """Each ``file.py:N`` of docs/methods.md beside a named function or class lands on its
    ``def``/``class`` line in mudman/methods/mudman/ (edits to the package move lines)."""
    import re

    package = REPO / "mudman" / "methods" / "mudman"
    page = (REPO / "docs" / "methods.md").read_text()
    checked = 0
    for line in page.splitlines():
        for cell in line.split("|"):
            for pointer in re.finditer(r"`(\w+\.py):(\d+)`", cell):
                source = package / pointer.group(1)
                if not source.exists():
                    continue
                names = re.findall(r"`([A-Za-z_][\w.]*)`", cell[: pointer.start()])
                names = [n.split(".")[-1] for n in names if not n.endswith(".py")]
                if not names:
                    continue  # a bare line number (a statement, not a definition)
                code = source.read_text().splitlines()[int(pointer.group(2)) - 1]
                assert any(re.match(rf"\s*(def|class) {n}\b", code) for n in names), (
                    f"docs/methods.md: {pointer.group(0)} is {code.strip()!r}, not one of {names}"
                )
                checked += 1
    assert checked >= 20
