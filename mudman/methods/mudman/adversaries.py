"""Adversaries for meta-unlearning: full copies or LoRA adapters, one or several (appendix D.4-5).

An adversary is fine-tuned on the forget set so that unlearning gradients are taken where
dormant forget-set circuits are active again. Variants the paper tried:

* ``full``: a copy of the targeted weights (MUDMAN's choice); optionally decayed towards the
  base weights (``adv_decay``) or made to follow every base update (``adv_update_scale``);
* ``lora``: base weights + ``B @ A`` (rank ``lora_rank``; ``A`` random, ``B`` zero at each fork,
  as PEFT initializes LoRA). LoRA gradients come exactly from the weight gradient by the chain
  rule (dL/dB = G A^T, dL/dA = B^T G), so no adapter modules are attached to the model; the
  adversary follows base updates by construction and leaves the base weights untouched;
* ``n_adversaries`` > 1: several adversaries, used round-robin, one per loop (same compute).
"""

from __future__ import annotations

import torch

from mudman.methods.mudman.settings import MudmanSettings


def build_adversaries(s: MudmanSettings) -> FullAdversaries | LoraAdversaries | None:
    """The adversaries ``s`` asks for; None without meta-learning (``meta_learning=false``)."""
    if not s.meta_learning:
        return None
    if s.adversary == "lora":
        return LoraAdversaries(s.n_adversaries, s.adv_lr, s.lora_rank)
    return FullAdversaries(s.n_adversaries, s.adv_lr, s.adv_decay, s.adv_update_scale)


class FullAdversaries:
    """``count`` full copies of the targeted weights."""

    def __init__(self, count: int, lr: float, decay: float = 1.0, update_scale: float = 0.0):
        self.count, self.lr, self.decay, self.update_scale = count, lr, decay, update_scale
        self.copies: list[dict[str, torch.Tensor]] = []

    def fork(self, base: dict[str, torch.Tensor]) -> None:
        self.copies = [{n: w.clone() for n, w in base.items()} for _ in range(self.count)]

    def weights(self, loop: int, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.copies[loop % self.count]

    def step(self, loop: int, grads: dict, base: dict[str, torch.Tensor]) -> None:
        """Train on the forget set, then decay towards the base weights."""
        for n, w in self.copies[loop % self.count].items():
            w.sub_(grads[n], alpha=self.lr)
            if self.decay < 1:
                w.mul_(self.decay).add_(base[n], alpha=1 - self.decay)

    def follow(self, name: str, update: torch.Tensor, rate: float = 1.0) -> None:
        """Apply the base's update ``base -= rate * update`` (scaled) to every adversary too."""
        if self.update_scale:
            for copy in self.copies:
                copy[name].sub_(update, alpha=rate * self.update_scale)


class LoraAdversaries:
    """``count`` LoRA adversaries ``W = base + B @ A`` per targeted weight."""

    def __init__(self, count: int, lr: float, rank: int):
        self.count, self.lr, self.rank = count, lr, rank
        self.adapters: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []

    def fork(self, base: dict[str, torch.Tensor]) -> None:
        def new(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a = torch.randn(self.rank, w.shape[1], dtype=w.dtype, device=w.device)
            return a / w.shape[1] ** 0.5, torch.zeros(
                w.shape[0], self.rank, dtype=w.dtype, device=w.device
            )

        self.adapters = [{n: new(w) for n, w in base.items()} for _ in range(self.count)]

    def weights(self, loop: int, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Materialized adversary weights (transient: rebuilt from the current base each loop)."""
        adapters = self.adapters[loop % self.count]
        return {n: w + adapters[n][1] @ adapters[n][0] for n, w in base.items()}

    def step(self, loop: int, grads: dict, base: dict[str, torch.Tensor]) -> None:
        for n, (a, b) in self.adapters[loop % self.count].items():
            grad_a, grad_b = b.T @ grads[n], grads[n] @ a.T  # chain rule through W = base + B A
            a.sub_(grad_a, alpha=self.lr)
            b.sub_(grad_b, alpha=self.lr)

    def follow(self, name: str, update: torch.Tensor, rate: float = 1.0) -> None:
        """Nothing to do: the adversary is built on the current base weights."""
