"""TAR's representation retain term: hand values, scale-freeness, and an attention-sink token."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mudman.errors import ConfigError
from mudman.methods import build_method
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import (
    mean_relative_squared_l2,
    mean_squared_l2,
)
from mudman.models.tiny import tiny_llama
from tests.method_helpers import make_data, prepare

# two layers, one sequence of two tokens, hidden size 2
ORIGINAL = [torch.tensor([[[3.0, 4.0], [1.0, 0.0]]]), torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])]
HIDDEN = [torch.tensor([[[3.0, 5.0], [0.0, 0.0]]]), torch.tensor([[[0.0, 1.0], [2.0, 2.0]]])]


def test_relative_squared_l2_by_hand():
    # layer 1: token 0 |(0,1)|^2/|(3,4)|^2 = 1/25, token 1 |(-1,0)|^2/1 = 1 -> mean 0.52
    # layer 2: token 0 |(0,-1)|^2/4 = 0.25, token 1 |(0,2)|^2/4 = 1 -> mean 0.625
    assert mean_relative_squared_l2(HIDDEN, ORIGINAL).item() == pytest.approx((0.52 + 0.625) / 2)
    assert mean_relative_squared_l2(HIDDEN, ORIGINAL, skip_first=1).item() == pytest.approx(1.0)
    # the old term on the same states: layer means (1 + 1)/2 and (1 + 4)/2
    assert mean_squared_l2(HIDDEN, ORIGINAL).item() == pytest.approx((1.0 + 2.5) / 2)
    assert mean_squared_l2(HIDDEN, ORIGINAL, skip_first=1).item() == pytest.approx(2.5)


def test_relative_squared_l2_is_scale_free_and_finite_at_zero_norm():
    big_h, big_o = [h * 100 for h in HIDDEN], [o * 100 for o in ORIGINAL]
    assert mean_relative_squared_l2(big_h, big_o).item() == pytest.approx(0.5725)
    assert mean_squared_l2(big_h, big_o).item() == pytest.approx(1.75e4)  # the old: x 100^2
    zero = [torch.zeros(1, 2, 2)]
    assert torch.isfinite(mean_relative_squared_l2(zero, zero))
    assert mean_relative_squared_l2(zero, zero).item() == 0.0


def tar(compose, *overrides):
    cfg = OmegaConf.create(
        OmegaConf.to_container(compose("method=tar", *overrides).method, resolve=True)
    )
    cfg.unlearning_rate, cfg.retaining_rate, cfg.adv_lr = 1e-2, 1e-2, 1e-1
    return build_method(cfg)


def sink_model(scale: float):
    """A tiny Llama whose first layer's MLP output at position 0 is ``scale`` times larger:
    an attention sink made the way real ones are (a massive MLP activation, e.g. SmolLM2's
    position 0 of norm ~22,700 against ~150), so the targeted gate_proj moves it ``scale`` x."""
    model = tiny_llama(seed=7)

    def hook(_module, _inputs, output):
        output = output.clone()
        output[:, 0] *= scale
        return output

    model.model.layers[0].mlp.register_forward_hook(hook)
    return model


def perturbed_tar(compose, scale: float, *overrides):
    """A sink model whose targeted weights moved by one fixed small change, TAR holding the
    original weights, and a retain batch: ``(model, params, method, batch)``."""
    model = sink_model(scale)
    params = prepare(model)
    method = tar(compose, *overrides)
    method.original = OriginalWeights(params)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model, params, method, make_data().retain_train[0]


def term_after_perturbation(compose, scale: float, *overrides) -> tuple[float, float]:
    """TAR's term and position 0's hidden-state norm after one fixed small weight change."""
    model, _params, method, batch = perturbed_tar(compose, scale, *overrides)
    method.retain_loss(model, batch)
    with torch.no_grad():
        hidden = model(input_ids=batch, output_hidden_states=True).hidden_states
    return method.last_representation_loss.item(), hidden[1][:, 0].norm(dim=-1).mean().item()


def test_tar_term_is_bounded_on_a_model_with_an_attention_sink(compose):
    """The old squared L2 grows with the sink's norm squared; the default term does not move."""
    new_plain, norm_plain = term_after_perturbation(compose, 1.0)
    new_sink, norm_sink = term_after_perturbation(compose, 1e4)
    new_bigger, norm_bigger = term_after_perturbation(compose, 1e5)
    assert norm_sink > 500 * norm_plain  # the sink is real: position 0 is huge (~90 vs ~0.1)
    assert norm_bigger == pytest.approx(10 * norm_sink, rel=0.01)
    # one token of 16 changed by a bounded relative amount, whatever its norm
    assert new_bigger == pytest.approx(new_sink, rel=0.01)
    assert new_plain < new_sink < 1.0
    old = "method.representation_distance=squared_l2"
    old_plain, _ = term_after_perturbation(compose, 1.0, old)
    old_sink, _ = term_after_perturbation(compose, 1e4, old)
    old_bigger, _ = term_after_perturbation(compose, 1e5, old)
    assert old_sink > 1e6 * old_plain  # the old term explodes with the sink ...
    assert old_bigger == pytest.approx(100 * old_sink, rel=0.05)  # ... as its norm squared
    skipped, _ = term_after_perturbation(compose, 1e5, old, "method.representation_skip_first=1")
    assert skipped < 10 * old_plain  # leaving position 0 out tames the old term too


def test_tar_retain_step_shrinks_the_default_term_where_the_old_one_diverges(compose):
    """Plain SGD on the term alone at the retaining rate, from the same perturbed weights, on
    the sink model: the old term grows step after step (why TAR was rejected on SmolLM2), the
    default term shrinks."""

    def run(*overrides) -> list[float]:
        model, params, method, batch = perturbed_tar(compose, 1e4, *overrides)
        values = []
        for _ in range(4):
            out = model(input_ids=batch, output_hidden_states=True)
            original = method.original.hidden_states(model, batch)
            term = method.representation_term(out.hidden_states, original)
            values.append(term.item())
            grads = torch.autograd.grad(  # the last layer's weights do not reach the term
                term, list(params.values()), allow_unused=True, materialize_grads=True
            )
            with torch.no_grad():
                for p, g in zip(params.values(), grads, strict=True):
                    p.sub_(method.cfg.retaining_rate * g)
        return values

    new = run()
    old = run("method.representation_distance=squared_l2")
    assert new[-1] < new[0]  # measured: 0.0340 -> 0.0287 in 3 steps
    assert not old[-1] < 1e3 * old[0]  # measured: 140 -> 1.2e14 (or overflow to inf / nan)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "method.representation_distance=l1",
            r"representation_distance='l1'.*relative_squared_l2, squared_l2, relative_l2",
        ),
        ("method.representation_skip_first=-1", r"representation_skip_first=-1.*int >= 0"),
        ("method.representation_skip_first=0.5", r"representation_skip_first=0.5.*int >= 0"),
    ],
)
def test_tar_representation_keys_are_checked(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        tar(compose, override)


def test_tar_skip_first_longer_than_the_batch_is_a_clear_error(compose):
    model = tiny_llama(seed=1)
    params = prepare(model)
    method = tar(compose, "method.representation_skip_first=16")
    method.original = OriginalWeights(params)
    with pytest.raises(ConfigError, match=r"representation_skip_first=16.*16-token"):
        method.retain_loss(model, make_data().retain_train[0])  # batches of 16 tokens
