"""MUDMAN's loop: Meta-Unlearning with Disruption Masking And Normalization (Algorithm 1,
Listing 1 of the paper). ``Mudman.unlearn`` is the loop; ``Steps`` holds its four steps.

One loop, in the paper's pass accounting (5 passes; 4 without the adversary):
  1. every ``fork_every_n_loops`` loops, fork the adversary from the base weights;
  2. retain pass on the base weights (fwd+bwd): ``acc = m*acc + (1-m)*g``; ``base -= r_rate*acc``;
  3. forget forward on the adversary; cross-entropy backward -> adversary step (+ optional decay
     towards the base weights);
  4. unlearning-loss backward on the same forward; global norm over all targeted gradients
     *before* masking; Disruption Masking ``g *= sign(g) == sign(acc)``; normalization
     ``g *= sqrt(N)/norm`` (so ``unlearning_rate`` is a per-weight RMS step); ``base -= u_rate*g``.

Only targeted parameters carry state (base, adversary, retain accumulator), as in Listing 1:
each targeted parameter's ``.data`` is pointed at the base or the adversary weights.

Both backward passes of steps 3 and 4 are taken from the same graph *before* the adversary
weights are edited, so both gradients are exact at the same adversary point. (The reference
edits the adversary in place between the two backwards, which autograd does not notice, mixing
old activations with new weights: an O(adv_lr) difference.) With
``unlearning_loss=neg_cross_entropy`` the unlearning gradient is exactly the negated adversary
gradient (negation is exact in floating point), so one backward serves both; the budget still
counts the paper's 5 passes (``pass_accounting: paper``), ``executed`` charges the 4 run.

The appendix variants (variants.py) replace or wrap one of the four steps when switched on;
with every switch off the loop is Algorithm 1.
"""

from __future__ import annotations

import torch

from mudman.losses import cross_entropy, get_loss
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs
from mudman.methods.mudman.adversaries import build_adversaries
from mudman.methods.mudman.direction import unlearning_direction_, use_weights
from mudman.methods.mudman.settings import MudmanSettings, fail
from mudman.methods.mudman.variants import locate_passes, plug_in_variants


@METHODS.register("mudman")
class Mudman(UnlearningMethod):
    """MUDMAN and, through its switches, each ablation (no_masking, no_normalization, ...)."""

    supports_retain_pause = True

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        s = self.settings
        steps = Steps(self, model, params, s)  # Algorithm 1's steps ...
        plug_in_variants(steps, s, data, monitor)  # ... with the switched-on variants
        base, adversaries = steps.base, steps.adversaries
        self.state = {"base": base, "acc": steps.acc}  # per-targeted-parameter state
        pairs = batch_pairs(data)
        passes_per_loop = self.passes_per_loop()

        for loop_num in range(n_loops):
            if adversaries and loop_num % s.fork_every_n_loops == 0:
                adversaries.fork(base)  # fork the adversary from the base weights
                self.state["adv"] = adversaries.weights(0, base)
            retain_batch, forget_batch = next(pairs)
            steps.retain(retain_batch)  # retain pass; acc = m*acc + (1-m)*g; base -= r*acc
            if not monitor.skip_unlearning():  # retain loss above the pause limit: retain only
                grads = steps.forget(loop_num, forget_batch)  # adversary step, unlearning grads
                steps.direction(grads)  # Disruption Masking, normalization
                steps.update(grads)  # base -= u*g
            use_weights(params, base)
            monitor.count(passes_per_loop)
            if progress is not None:
                progress.update(1)

    @property
    def settings(self) -> MudmanSettings:
        """The ``method:`` block, typed (read afresh: ``validate`` has checked it)."""
        return MudmanSettings.from_config(self.cfg, check=False)

    def validate(self) -> None:
        MudmanSettings.from_config(self.cfg)  # every key's type and range, and combinations

    def passes_per_loop(self) -> int:
        """The paper's accounting: 5 with an adversary (4 without), whatever is executed."""
        s = self.settings
        if s.locate_once:
            return 2  # only the retain pass: the unlearning gradient was located beforehand
        if s.meta_learning and s.pass_accounting == "executed":
            return 4  # the shared backward (see shares_ce_backward) is charged once
        return 5 if s.meta_learning else 4

    def shares_ce_backward(self) -> bool:
        """True when one backward serves the adversary and the unlearning step (exactly)."""
        return self.settings.shares_ce_backward

    def n_loops(self, unlearn_passes: int) -> int:
        """Locate-once first spends its passes on the initial model; loops get the rest."""
        s = self.settings
        located = locate_passes(s)
        if located and unlearn_passes <= located:
            allowed = f"2 * value < unlearn_passes={unlearn_passes}"
            fail("locate_once_batches", s.locate_once_batches, allowed)
        return super().n_loops(unlearn_passes - located)

    def retain_loss(self, model, retain_batch: torch.Tensor) -> torch.Tensor:
        """Loss of the retain pass on the base weights (TAR adds a representation term)."""
        return cross_entropy(model(input_ids=retain_batch).logits, retain_batch)


class Steps:
    """One ``unlearn`` call's state and the four steps of a loop, as Algorithm 1 has them.

    ``retain``, ``forget``, ``direction`` and ``update`` are the slots the loop calls; an
    appendix variant switched on in the config replaces or wraps one of them (variants.py).
    """

    def __init__(self, method: Mudman, model, params: dict, s: MudmanSettings) -> None:
        self.method, self.model, self.params, self.s = method, model, params, s
        self.targets = list(params.values())
        self.n_elements = sum(p.numel() for p in self.targets)
        self.base = {n: p.data for n, p in params.items()}  # the model's storage = base weights
        self.acc = {n: torch.zeros_like(w) for n, w in self.base.items()}  # retain accumulator
        self.base_list, self.acc_list = list(self.base.values()), list(self.acc.values())
        self.adversaries = build_adversaries(s)  # None without meta-learning
        self.unlearning_loss = get_loss(s.unlearning_loss, **(s.unlearning_loss_kwargs or {}))
        self.retain, self.forget = self.retain_step, self.adversary_step
        self.direction, self.update = self.mask_and_normalize, self.base_step

    def retain_step(self, retain_batch: torch.Tensor) -> tuple:
        """Retain pass on the base weights; ``acc = m*acc + (1-m)*g``; ``base -= r*acc``.

        One foreach call per op for all tensors: the same per-element ops as a loop over
        tensors (``lerp_`` would round differently, so it is not used).
        """
        s = self.s
        use_weights(self.params, self.base)
        retain_loss = self.method.retain_loss(self.model, retain_batch)
        grads = torch.autograd.grad(retain_loss, self.targets)
        torch._foreach_mul_(self.acc_list, s.retain_momentum)
        torch._foreach_add_(self.acc_list, grads, alpha=1 - s.retain_momentum)
        torch._foreach_sub_(self.base_list, self.acc_list, alpha=s.retaining_rate)
        return grads

    def adversary_step(self, loop_num: int, forget_batch: torch.Tensor) -> dict:
        """Forget forward on the adversary; CE backward -> adversary step; unlearning gradient."""
        adversaries, base = self.adversaries, self.base
        use_weights(self.params, adversaries.weights(loop_num, base))
        logits = self.model(input_ids=forget_batch).logits
        if self.s.shares_ce_backward:  # grad(-CE) == -grad(CE): one backward for both steps,
            grads = torch.autograd.grad(cross_entropy(logits, forget_batch), self.targets)
            del logits
            adversaries.step(loop_num, dict(zip(self.params, grads, strict=True)), base)
            torch._foreach_neg_(grads)  # ... negated in place once the adversary has used it
            return dict(zip(self.params, grads, strict=True))
        adv_grads = torch.autograd.grad(
            cross_entropy(logits, forget_batch), self.targets, retain_graph=True
        )
        grads = torch.autograd.grad(self.unlearning_loss(logits, forget_batch), self.targets)
        del logits
        adversaries.step(loop_num, dict(zip(self.params, adv_grads, strict=True)), base)
        return dict(zip(self.params, grads, strict=True))

    def mask_and_normalize(self, grads: dict) -> None:
        s = self.s
        unlearning_direction_(grads, self.acc, s.masking, s.normalization, self.n_elements)

    def base_step(self, grads: dict) -> list:
        """``base -= unlearning_rate * g``; returns the updates applied."""
        updates = list(grads.values())
        torch._foreach_mul_(updates, self.s.unlearning_rate)
        torch._foreach_sub_(self.base_list, updates)
        return updates
