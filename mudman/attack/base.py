"""What every attack provides, and the one training loop they share.

An attack fine-tunes the unlearned model to bring the forgotten knowledge back. Every attack
buys the same compute: ``relearn_passes`` forward + backward passes, 2 per step (a LoRA step is
a full forward and a full backward through the network too, so it counts 2), and is re-seeded
with ``cfg.seed`` before it starts (by the caller, mudman/attack/suite.py). Forget loss is
measured on the fixed eval batch every ``eval_every_passes`` passes and at the end; that curve
and the objective's score of the attacked model are what an attack returns. Adding an attack =
one file here with a class decorated ``@ATTACKS.register("name")`` plus ``conf/attack/<name>.yaml``.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mudman.errors import ConfigError
from mudman.evaluation.lm_loss import lm_loss
from mudman.losses import cross_entropy
from mudman.registry import Registry

PASSES_PER_STEP = 2
FORGET, RETAIN = "forget", "retain"

ATTACKS: Registry[type[Attack]] = Registry("attack")

Curve = list[tuple[int, float]]
Scorer = Callable[[nn.Module, Curve], dict[str, float]]


def check_relearn_passes(relearn_passes: int) -> int:
    """The number of steps a pass budget buys (2 passes per step)."""
    if relearn_passes <= 0 or relearn_passes % PASSES_PER_STEP:
        raise ConfigError(
            f"relearn_passes={relearn_passes} must be a positive multiple of {PASSES_PER_STEP} "
            "(one step = forward + backward)"
        )
    return relearn_passes // PASSES_PER_STEP


@dataclass
class AttackStreams:
    """The attacker's data: forget and retain validation batches after the eval batches."""

    forget: list[torch.Tensor]
    retain: list[torch.Tensor]
    eval_batch: torch.Tensor

    @classmethod
    def of(cls, data: Any) -> AttackStreams:
        """From a :class:`mudman.data.batching.TrialData`."""
        return cls(data.relearn_forget, data.relearn_retain, data.forget_eval)


@dataclass
class AttackRun:
    """What one attack did: its forget-loss curve, the stream of every step, passes, score."""

    curve: Curve = field(default_factory=list)  # (passes, forget loss on the eval batch)
    streams: list[str] = field(default_factory=list)  # per step: "forget" or "retain"
    passes: int = 0
    scores: dict[str, float] | None = None
    scoring_s: float = 0.0


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: list[str],
    streams: AttackStreams,
    eval_every_passes: int,
    on_eval: Callable[[int, float], None] | None = None,
    progress=None,
) -> AttackRun:
    """One optimizer step per entry of ``schedule`` on the next batch of that stream (each
    stream cycled if short), cross-entropy loss; forget loss measured when a multiple of
    ``eval_every_passes`` is crossed and after the last step. The operations are those of the
    original SGD relearning loop, in the same order (its numbers are reproduced bitwise)."""
    run = AttackRun()
    forget_stream = itertools.cycle(streams.forget)
    retain_stream = itertools.cycle(streams.retain) if RETAIN in schedule else None
    model.train(False)  # deterministic: no dropout
    n_steps = len(schedule)
    for step, stream in enumerate(schedule, start=1):
        batch = next(retain_stream if stream == RETAIN else forget_stream)
        optimizer.zero_grad(set_to_none=True)
        cross_entropy(model(input_ids=batch).logits, batch).backward()
        optimizer.step()
        run.streams.append(stream)
        run.passes += PASSES_PER_STEP
        passes = run.passes
        crossed = passes // eval_every_passes > (passes - PASSES_PER_STEP) // eval_every_passes
        if crossed or step == n_steps:
            loss = lm_loss(model, streams.eval_batch)
            run.curve.append((passes, loss))
            if on_eval is not None:
                on_eval(passes, loss)
        if progress is not None:
            progress.update(1)
    optimizer.zero_grad(set_to_none=True)
    return run


def require_attack(key: str, ok: bool, value: Any, allowed: str) -> None:
    """One-line check with a message naming the key, the value and what is allowed."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Attack(ABC):
    """An attack reads its own config block (``attack`` or one ``attack_suite`` entry).

    ``key`` is where that block sits in the config (``attack``, ``attack_suite[2]``): every
    error message names it.
    """

    def __init__(self, cfg: DictConfig | dict, key: str = "attack") -> None:
        self.cfg = cfg
        self.key = key

    def validate(self, relearn_passes: int) -> None:
        """Raise ``ConfigError`` for bad settings (called before any model loads)."""
        lr = self.cfg.get("lr")
        if not _number(lr) or lr <= 0:
            raise ConfigError(f"{self.key}.lr={lr!r} must be a number > 0")
        alternate = self.cfg.get("alternate_retain", False)
        if not isinstance(alternate, bool):
            raise ConfigError(f"{self.key}.alternate_retain={alternate!r}; allowed: true, false")

    def schedule(self, n_steps: int) -> list[str]:
        """The stream of each step: forget only, or (``alternate_retain``) forget on odd steps
        and retain on even ones (the WMDP study's attack)."""
        if self.cfg.get("alternate_retain", False):
            return [RETAIN if step % 2 == 0 else FORGET for step in range(1, n_steps + 1)]
        return [FORGET] * n_steps

    def prepare(self, model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        """The module to train and call, and the parameters the optimizer updates (default:
        the model itself, every parameter trainable: full fine-tuning)."""
        for param in model.parameters():
            param.requires_grad_(True)
        return model, list(model.parameters())

    @abstractmethod
    def optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """A fresh optimizer over ``params``."""

    def release(self, model: nn.Module, attacked: nn.Module) -> None:  # noqa: B027 - optional
        """Undo what :meth:`prepare` added (adapter modules); the weights stay as attacked."""

    def run(
        self,
        model: nn.Module,
        streams: AttackStreams,
        relearn_passes: int,
        eval_every_passes: int,
        on_eval: Callable[[int, float], None] | None = None,
        progress=None,
        score: Scorer | None = None,
    ) -> AttackRun:
        """Attack ``model`` for ``relearn_passes`` passes; ``score`` sees the attacked model
        (for LoRA: with its adapter active) before :meth:`release`."""
        schedule = self.schedule(check_relearn_passes(relearn_passes))
        attacked, params = self.prepare(model)
        try:
            optimizer = self.optimizer(params)
            run = train_steps(
                attacked, optimizer, schedule, streams, eval_every_passes, on_eval, progress
            )
            del optimizer
            if score is not None:
                start = time.perf_counter()
                run.scores = score(attacked, run.curve)
                run.scoring_s = round(time.perf_counter() - start, 3)
        finally:
            self.release(model, attacked)
        return run


def build_attack(cfg: DictConfig | dict, key: str = "attack") -> Attack:
    """The attack named by ``cfg.name`` (not yet validated)."""
    return ATTACKS.get(cfg.get("name"), f"{key}.name")(cfg, key)
