"""The ``method:`` block of MUDMAN and its ablations as one typed, checked record.

Defaults are written once, in conf/method/mudman.yaml: a key the block lacks (a config built in
code, say) takes its value from there. Each field's type is its check (a ``bool`` takes true or
false, a ``Literal`` one of its values, an ``int`` no float or bool); ``within`` adds the range,
and the error names the key, the value and what is allowed. Combinations that cannot work
together are the table in ``COMBINATIONS``.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from omegaconf import DictConfig

from mudman.defaults import group_defaults
from mudman.errors import ConfigError
from mudman.losses import LOSSES


def within(allowed: str, ok: Callable[[Any], bool]) -> Any:
    """A field whose value must pass its type and ``ok``; ``allowed`` is what the error says."""
    return dataclasses.field(metadata={"allowed": allowed, "ok": ok})


def one_of(choices: Callable[[], list[str]]) -> Any:
    """A string field taking one name of a registry (listed when the check runs)."""
    return dataclasses.field(metadata={"choices": choices})


@dataclasses.dataclass(frozen=True)
class MudmanSettings:
    """Algorithm 1's hyperparameters, then the appendix B/D switches (off = Algorithm 1)."""

    name: str
    algorithm: str
    unlearning_loss: str = one_of(lambda: LOSSES.names())
    unlearning_loss_kwargs: Any  # null or a mapping (checked against the loss: mudman/config.py)
    masking: bool
    normalization: Literal["none", "per_parameter", "global_pre_mask", "global_post_mask"]
    meta_learning: bool
    unlearning_rate: float = within("a number > 0", lambda v: v > 0)
    retaining_rate: float = within("a number > 0", lambda v: v > 0)
    retain_momentum: float = within("0 <= value < 1", lambda v: 0 <= v < 1)
    adv_lr: float = within("a number > 0", lambda v: v > 0)
    adv_decay: float = within("0 <= value <= 1", lambda v: 0 <= v <= 1)
    fork_every_n_loops: int = within("an int >= 1", lambda v: v >= 1)
    pass_accounting: Literal["paper", "executed"]
    # appendix B/D variants (variants.py)
    forget_momentum: float = within("0 <= value < 1 (0 = off)", lambda v: 0 <= v < 1)
    only_shrink: bool
    disruption_percentile: float | None = within(
        "null (off) or 0 < value <= 100", lambda v: v is None or 0 < v <= 100
    )
    retain_aggregation: Literal["signed", "absolute", "scaled_helpful"]
    helpful_scale: float = within("0 <= value < 1", lambda v: 0 <= v < 1)
    adversary: Literal["full", "lora"]
    n_adversaries: int = within("an int >= 1", lambda v: v >= 1)
    lora_rank: int = within("an int >= 1", lambda v: v >= 1)
    adv_update_scale: float = within("0 <= value <= 1 (0 = off)", lambda v: 0 <= v <= 1)
    locate_once: bool
    locate_once_batches: int = within("an int >= 1", lambda v: v >= 1)

    @classmethod
    def from_config(cls, cfg: DictConfig, check: bool = True) -> "MudmanSettings":
        """The block's values (missing keys: the shipped defaults); ``check``: each field's type
        and range, then the combinations, fail with a ``ConfigError`` naming key and value."""
        defaults = group_defaults("method", "mudman")  # conf/method/mudman.yaml
        values = {
            f.name: cfg.get(f.name) if f.name in cfg else defaults.get(f.name)
            for f in dataclasses.fields(cls)
        }
        settings = cls(**values)
        if check:
            for key, hint in REMOVED_KEYS.items():
                if key in cfg:
                    fail(key, cfg.get(key), hint)
            for f in dataclasses.fields(cls):
                check_field(f, values[f.name])
            for key, ok, allowed in COMBINATIONS:
                if not ok(settings):
                    fail(key, getattr(settings, key), allowed)
        return settings

    @property
    def shares_ce_backward(self) -> bool:
        """One backward serves the adversary and the unlearning step: grad(-CE) = -grad(CE)."""
        return (
            self.meta_learning
            and not self.locate_once
            and self.unlearning_loss == "neg_cross_entropy"
            and not self.unlearning_loss_kwargs
        )


# Keys that no longer exist, and what replaced them.
REMOVED_KEYS = {
    "reuse_ce_backward": "nothing: the key was removed; the backward is now always shared where "
    "exact, and method.pass_accounting=executed is the former 4-pass budget",
}

# (key, condition, what is allowed): each names the key whose value the error shows.
COMBINATIONS: list[tuple[str, Callable[[MudmanSettings], bool], str]] = [
    (
        "disruption_percentile",
        lambda s: s.disruption_percentile is None or not s.masking,
        "null while masking=true (percentiles replace sign masking: set masking=false)",
    ),
    (
        "retain_aggregation",
        lambda s: s.retain_aggregation == "signed" or s.disruption_percentile is not None,
        "signed unless disruption_percentile is set (non-signed disruption estimates "
        "are never negative, so they can only rank weights, not sign-mask them)",
    ),
    *[
        (
            key,
            lambda s, key=key, default=default: s.meta_learning or getattr(s, key) == default,
            "its default unless meta_learning=true (no adversary without it)",
        )
        for key, default in (("adversary", "full"), ("n_adversaries", 1), ("adv_update_scale", 0))
    ],
    (
        "adv_update_scale",
        lambda s: s.adversary != "lora" or s.adv_update_scale == 0,
        "0 with adversary=lora (a LoRA adversary follows the base by construction)",
    ),
    ("adv_decay", lambda s: s.adversary != "lora" or s.adv_decay == 1, "1.0 with adversary=lora"),
    (
        "locate_once",
        lambda s: not s.locate_once or not s.meta_learning,
        "false while meta_learning=true (locate-once replaces the adversary)",
    ),
    (
        "forget_momentum",
        lambda s: not s.locate_once or s.forget_momentum == 0,
        "0 with locate_once=true (the located gradient never changes)",
    ),
    (
        "pass_accounting",
        lambda s: s.pass_accounting == "paper" or s.shares_ce_backward,
        "paper unless meta_learning=true and unlearning_loss=neg_cross_entropy "
        "(only then is one backward shared)",
    ),
]


def fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"method.{key}={value!r} is out of range; allowed: {allowed}")


def check_field(f: dataclasses.Field, value: Any) -> None:
    """The field's type, then its range: one message naming key, value and what is allowed."""
    meta = f.metadata
    if "choices" in meta:
        choices = meta["choices"]()
        ok, allowed = value in choices, ", ".join(choices)
    elif get_origin(f.type) is Literal:
        ok, allowed = value in get_args(f.type), ", ".join(get_args(f.type))
    elif f.type is bool:
        ok, allowed = isinstance(value, bool), "true or false"
    elif "ok" in meta:  # int, float or float | None, with a range
        number = isinstance(value, int if f.type is int else (int, float))
        is_none = value is None and f.type == float | None
        ok = is_none or (number and not isinstance(value, bool) and meta["ok"](value))
        allowed = meta["allowed"]
    else:  # str names and the loss kwargs: checked where they are used
        return
    if not ok:
        fail(f.name, value, allowed)
