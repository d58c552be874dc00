"""Worst-case robustness: several attacks (and/or attack learning rates) from the same weights.

``attack_suite`` (null = just the selected ``attack``) is a list whose entries are an attack
name (``sgd``) or a mapping ``{name: sgd, lr: 0.1, ...}``; a list ``lr: [0.03, 0.1, 0.3]``
expands into one attack per rate. Each entry starts from its attack's settings (the selected
``attack`` block when the names match, so ``attack.alternate_retain=true`` carries over; else
``conf/attack/<name>.yaml``) with the entry's keys on top. Every attack starts from a copy of
the same unlearned weights (restored between attacks), is re-seeded with ``cfg.seed`` and gets
the full ``relearn_passes``; the objective scores each attacked model, and the trial's value is
the worst case for the defender: the attacker's best (lowest forget loss for ``forget_loss``,
highest target accuracy for ``mc_accuracy``: the objective's direction decides).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from mudman.attack.base import ATTACKS, AttackRun, AttackStreams, build_attack
from mudman.defaults import fits_kind, group_defaults, kind_of
from mudman.errors import ConfigError

log = logging.getLogger(__name__)

SUITE_KEY = "attack_suite"
SUITE_HELP = (
    "null, or a non-empty list of attack names or {name: <attack>, <key>: <value>} mappings, "
    "e.g. [{name: sgd, lr: [0.03, 0.1]}, adamw, lora]"
)


@dataclass
class AttackSpec:
    """One attack of a suite: where it is configured, its resolved settings, a short label."""

    key: str  # attack | attack_suite[2]
    settings: dict[str, Any]
    label: str = ""

    @property
    def name(self) -> str:
        return str(self.settings["name"])

    def build(self):
        return build_attack(OmegaConf.create(self.settings), self.key)


def _attack_yaml(name: str) -> dict[str, Any]:
    return dict(group_defaults("attack", name))


def _resolve(cfg: DictConfig, node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its interpolations (``${model.relearn_lr}``) resolved against ``cfg``."""
    root = cfg.copy()
    OmegaConf.set_readonly(root, False)
    with open_dict(root):
        root["_attack_entry"] = node
    return OmegaConf.to_container(root["_attack_entry"], resolve=True)


def _container(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or OmegaConf.is_list(value)


def attack_specs(cfg: DictConfig) -> list[AttackSpec]:
    """The attacks a trial runs, resolved and labelled (not validated: see
    :func:`validate_attacks`)."""
    suite = cfg.get(SUITE_KEY)
    if suite is None:
        specs = [AttackSpec("attack", OmegaConf.to_container(cfg.attack, resolve=True))]
        specs[0].label = _label(specs[0], [])
        return specs
    if not _is_list(suite) or len(suite) == 0:
        raise ConfigError(f"{SUITE_KEY}={_container(suite)!r}; allowed: {SUITE_HELP}")
    selected = cfg.attack.get("name")
    specs = []
    for i, entry in enumerate(suite):
        key = f"{SUITE_KEY}[{i}]"
        entry = {"name": entry} if isinstance(entry, str) else _container(entry)
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}={entry!r}; allowed: {SUITE_HELP}")
        name = entry.get("name")
        ATTACKS.get(name, f"{key}.name")  # unknown names fail here, with the list
        base = _container(cfg.attack) if name == selected else _attack_yaml(name)
        allowed = sorted(base)
        for item in entry:
            if item not in base:
                raise ConfigError(
                    f"{key}.{item}={entry[item]!r}: attack {name} has no key {item!r}; "
                    f"allowed: {', '.join(allowed)}"
                )
        rates = entry.get("lr")
        rates = list(rates) if _is_list(rates) else [rates if "lr" in entry else None]
        if not rates:
            raise ConfigError(f"{key}.lr=[]; allowed: a number > 0 or a non-empty list of them")
        for rate in rates:
            node = {**base, **entry}
            if rate is not None:
                node["lr"] = rate
            specs.append(AttackSpec(key, _resolve(cfg, node)))
    for spec in specs:
        spec.label = _label(spec, specs)
    seen: dict[str, int] = {}
    for spec in specs:  # identical entries stay distinguishable
        seen[spec.label] = seen.get(spec.label, 0) + 1
        if seen[spec.label] > 1:
            spec.label += f" #{seen[spec.label]}"
    return specs


def _label(spec: AttackSpec, specs: list[AttackSpec]) -> str:
    """``sgd lr=0.1``; plus any key that differs between attacks of the same name."""
    same = [s for s in specs if s.name == spec.name]
    varying = sorted(
        k
        for k in spec.settings
        if k not in ("name", "lr") and len({repr(s.settings.get(k)) for s in same}) > 1
    )
    parts = [spec.name, f"lr={spec.settings.get('lr')!s}"]
    parts += [f"{k}={spec.settings[k]}" for k in varying]
    return " ".join(parts)


def _kind_check(spec: AttackSpec) -> None:
    """Wrong types (``lr: abc``) name the key, the value and the type of the shipped default."""
    defaults = _attack_yaml(spec.name)
    for key, value in spec.settings.items():
        if key not in defaults:
            raise ConfigError(
                f"{spec.key}.{key}={value!r}: attack {spec.name} has no key {key!r}; "
                f"allowed: {', '.join(sorted(defaults))}"
            )
    for key, default in defaults.items():
        kind = kind_of(default)
        value = spec.settings.get(key)
        if kind is None or value is None or key in ("lr", "alternate_retain"):
            continue  # lr and alternate_retain have their own long-standing messages
        if not fits_kind(value, kind):
            raise ConfigError(
                f"{spec.key}.{key}={value!r} has the wrong type; allowed: {kind} "
                f"(default {default!r})"
            )


def validate_attacks(cfg: DictConfig) -> list[AttackSpec]:
    """Every attack of the trial, checked before any model loads (mudman/config.py)."""
    specs = attack_specs(cfg)
    for spec in specs:
        attack = spec.build()
        _kind_check(spec)
        attack.validate(int(cfg.relearn_passes))
    return specs


def suite_settings(cfg: DictConfig) -> list[dict[str, Any]] | None:
    """The resolved suite (for cache keys): ``None`` without a suite, so keys made before
    suites existed stay valid."""
    if cfg.get(SUITE_KEY) is None:
        return None
    return [spec.settings for spec in attack_specs(cfg)]


@dataclass
class AttackOutcome:
    """One attack's record in results.json (``attacks``)."""

    label: str
    settings: dict[str, Any]
    value: float | None
    scores: dict[str, float]
    curve: list[tuple[int, float]]
    passes: int
    steps: dict[str, int]
    seconds: float
    scoring_s: float

    def to_record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.settings["name"],
            "settings": self.settings,
            "value": self.value,
            "scores": self.scores,
            "curve": [list(point) for point in self.curve],
            "passes": self.passes,
            "steps": self.steps,
            "seconds": self.seconds,
        }


@dataclass
class SuiteResult:
    outcomes: list[AttackOutcome] = field(default_factory=list)
    worst: AttackOutcome | None = None
    single: bool = True

    @property
    def scoring_s(self) -> float:
        return round(sum(o.scoring_s for o in self.outcomes), 3)

    @property
    def passes(self) -> int:
        return sum(o.passes for o in self.outcomes)


def worst_case(outcomes: list[AttackOutcome], direction: str) -> AttackOutcome:
    """The attacker's best: the lowest value when the defender maximizes, else the highest.
    Attacks whose value is not finite (diverged) cannot be the attacker's best moment; they are
    kept in the record and named in a warning. If none is finite, the first one is returned."""
    finite = [o for o in outcomes if o.value is not None and math.isfinite(o.value)]
    for o in outcomes:
        if o not in finite:
            log.warning(
                "attack %s gave a non-finite value %s: left out of the worst case", o.label, o.value
            )
    if not finite:
        return outcomes[0]
    pick = min if direction == "maximize" else max
    return pick(finite, key=lambda o: o.value)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer (restored with ``load_state_dict``)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_suite(
    model: nn.Module,
    streams: AttackStreams,
    cfg: DictConfig,
    score: Callable[[nn.Module, list[tuple[int, float]]], dict[str, float]],
    direction: str,
    on_eval: Callable[[AttackSpec, int, int, float], None] | None = None,
    bar: Callable[[AttackSpec], Any] | None = None,
    reseed: Callable[[int], None] | None = None,
) -> SuiteResult:
    """Run every attack of ``cfg`` from the same weights; ``on_eval(spec, index, passes,
    loss)``; ``bar(spec)`` a progress-bar context manager. The model is left as the LAST
    attack left it (the caller frees or reloads it)."""
    specs = attack_specs(cfg)
    result = SuiteResult(single=cfg.get(SUITE_KEY) is None)
    saved = snapshot(model) if len(specs) > 1 else None
    for index, spec in enumerate(specs):
        if index and saved is not None:
            model.load_state_dict(saved)  # every attack starts from the unlearned weights
        if reseed is not None:
            reseed(int(cfg.seed))
        attack = spec.build()
        start = time.perf_counter()
        callback = None
        if on_eval is not None:
            callback = lambda passes, loss, s=spec, i=index: on_eval(s, i, passes, loss)  # noqa: E731
        with bar(spec) if bar is not None else nullcontext() as progress:
            run = attack.run(
                model, streams, cfg.relearn_passes, cfg.eval_every_passes, callback, progress, score
            )
        result.outcomes.append(_outcome(spec, run, time.perf_counter() - start))
    del saved
    result.worst = worst_case(result.outcomes, direction)
    return result


def _outcome(spec: AttackSpec, run: AttackRun, seconds: float) -> AttackOutcome:
    scores = run.scores or {}
    return AttackOutcome(
        label=spec.label,
        settings=spec.settings,
        value=scores.get("objective"),
        scores=scores,
        curve=run.curve,
        passes=run.passes,
        steps={s: run.streams.count(s) for s in dict.fromkeys(run.streams)},
        seconds=round(seconds, 3),
        scoring_s=run.scoring_s,
    )
