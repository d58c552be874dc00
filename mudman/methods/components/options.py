"""MUDMAN's optional components from appendices B and D, read from the ``method:`` block.

Every key is optional and off by default, so the plain loop is Algorithm 1. ``check_options``
rejects unknown values and incompatible combinations at config time; ``MudmanOptions`` builds
the state each switched-on component needs (and nothing for the ones that are off).
"""

from __future__ import annotations

from omegaconf import DictConfig

from mudman.methods.base import require
from mudman.methods.components.adversaries import FullAdversaries, LoraAdversaries
from mudman.methods.components.locate_once import aggregate_unlearning_gradient
from mudman.methods.components.selection import (
    HELPFUL_SCALE,
    ForgetMomentum,
    SplitRetainAccumulator,
    keep_least_disruptive_,
    only_shrinking_,
    signed_disruption,
)

DEFAULTS = {
    "forget_momentum": 0.0,
    "only_shrink": False,
    "disruption_percentile": None,
    "retain_aggregation": "signed",
    "helpful_scale": 0.0,
    "adversary": "full",
    "n_adversaries": 1,
    "lora_rank": 8,
    "adv_update_scale": 0.0,
    "locate_once": False,
    "locate_once_batches": 4,
}
AGGREGATIONS = ("signed", "absolute", "scaled_helpful")
ADVERSARIES = ("full", "lora")


def opt(c: DictConfig, key: str):
    return c.get(key, DEFAULTS[key])


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _incompatible(c: DictConfig, key: str, ok: bool, because: str) -> None:
    """A combination check: same message shape as a range check."""
    require(c, key, ok, because)


def check_options(c: DictConfig) -> None:
    """Ranges, then combinations that cannot work together (messages name key and value)."""
    fm, pct = opt(c, "forget_momentum"), opt(c, "disruption_percentile")
    require(c, "forget_momentum", _number(fm) and 0 <= fm < 1, "0 <= value < 1 (0 = off)")
    require(c, "only_shrink", isinstance(opt(c, "only_shrink"), bool), "true or false")
    require(
        c,
        "disruption_percentile",
        pct is None or (_number(pct) and 0 < pct <= 100),
        "null (off) or 0 < value <= 100",
    )
    agg = opt(c, "retain_aggregation")
    require(c, "retain_aggregation", agg in AGGREGATIONS, ", ".join(AGGREGATIONS))
    h = opt(c, "helpful_scale")
    require(c, "helpful_scale", _number(h) and 0 <= h < 1, "0 <= value < 1")
    require(c, "adversary", opt(c, "adversary") in ADVERSARIES, ", ".join(ADVERSARIES))
    require(
        c,
        "n_adversaries",
        _int(opt(c, "n_adversaries")) and opt(c, "n_adversaries") >= 1,
        "an int >= 1",
    )
    require(c, "lora_rank", _int(opt(c, "lora_rank")) and opt(c, "lora_rank") >= 1, "an int >= 1")
    aus = opt(c, "adv_update_scale")
    require(c, "adv_update_scale", _number(aus) and 0 <= aus <= 1, "0 <= value <= 1 (0 = off)")
    require(c, "locate_once", isinstance(opt(c, "locate_once"), bool), "true or false")
    lob = opt(c, "locate_once_batches")
    require(c, "locate_once_batches", _int(lob) and lob >= 1, "an int >= 1")

    # combinations
    _incompatible(
        c,
        "disruption_percentile",
        pct is None or not c.masking,
        "null while masking=true (percentiles replace sign masking: set masking=false)",
    )
    _incompatible(
        c,
        "retain_aggregation",
        agg == "signed" or pct is not None,
        "signed unless disruption_percentile is set (non-signed disruption estimates "
        "are never negative, so they can only rank weights, not sign-mask them)",
    )
    meta_only = {
        "adversary": opt(c, "adversary") == "full",
        "n_adversaries": opt(c, "n_adversaries") == 1,
        "adv_update_scale": aus == 0,
    }
    for key, is_default in meta_only.items():
        _incompatible(
            c,
            key,
            c.meta_learning or is_default,
            "its default unless meta_learning=true (no adversary without it)",
        )
    if opt(c, "adversary") == "lora":
        _incompatible(
            c,
            "adv_update_scale",
            aus == 0,
            "0 with adversary=lora (a LoRA adversary follows the base by construction)",
        )
        _incompatible(c, "adv_decay", c.adv_decay == 1, "1.0 with adversary=lora")
    if opt(c, "locate_once"):
        _incompatible(
            c,
            "locate_once",
            not c.meta_learning,
            "false while meta_learning=true (locate-once replaces the adversary)",
        )
        _incompatible(
            c,
            "forget_momentum",
            fm == 0,
            "0 with locate_once=true (the located gradient never changes)",
        )


class MudmanOptions:
    """State and hooks of the switched-on components for one ``unlearn`` call."""

    def __init__(self, c: DictConfig, base: dict) -> None:
        self.c = c
        self.adversaries = None
        if c.meta_learning:
            if opt(c, "adversary") == "lora":
                self.adversaries = LoraAdversaries(
                    opt(c, "n_adversaries"), c.adv_lr, opt(c, "lora_rank")
                )
            else:
                self.adversaries = FullAdversaries(
                    opt(c, "n_adversaries"), c.adv_lr, c.adv_decay, opt(c, "adv_update_scale")
                )
        fm = opt(c, "forget_momentum")
        self.forget_momentum = ForgetMomentum(base, fm) if fm else None
        agg = opt(c, "retain_aggregation")
        self.split = None
        if agg != "signed":
            scale = HELPFUL_SCALE.get(agg, opt(c, "helpful_scale"))
            self.split = SplitRetainAccumulator(base, c.retain_momentum, scale)
        self.percentile = opt(c, "disruption_percentile")
        self.only_shrink = opt(c, "only_shrink")
        self.follows = bool(opt(c, "adv_update_scale")) and self.adversaries is not None

    def locate(self, model, params: dict, data, loss_fn) -> dict | None:
        """Locate-once: the unlearning gradient of the initial model, else None."""
        if not opt(self.c, "locate_once"):
            return None
        return aggregate_unlearning_gradient(model, params, locate_batches(self.c, data), loss_fn)

    def accumulate_retain(self, name: str, grad) -> None:
        if self.split is not None:
            self.split.accumulate(name, grad)

    def unlearning_grads(self, grads: dict) -> dict:
        return self.forget_momentum(grads) if self.forget_momentum is not None else grads

    def select(self, acc: dict):
        """The percentile selection to apply in place of masking, or None."""
        if self.percentile is None:
            return None
        disruption = self.split.disruption if self.split is not None else signed_disruption(acc)
        return lambda grads: keep_least_disruptive_(grads, disruption, self.percentile)

    def restrict(self, update, weight):
        return only_shrinking_(update, weight) if self.only_shrink else update

    def follow(self, name: str, update, rate: float) -> None:
        if self.follows:
            self.adversaries.follow(name, update, rate)


def locate_batches(c: DictConfig, data) -> list:
    return data.forget_train[: opt(c, "locate_once_batches")]


def locate_passes(c: DictConfig) -> int:
    """Passes charged once, before the first loop, by locate-once (fwd + bwd per batch)."""
    return 2 * opt(c, "locate_once_batches") if opt(c, "locate_once") else 0
