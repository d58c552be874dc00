"""MUDMAN: Meta-Unlearning with Disruption Masking And Normalization (paper, Algorithm 1).

Each loop, in the paper's pass accounting (5 passes; 4 without the adversary):
  1. every ``fork_every_n_loops`` loops, fork the adversary from the base weights;
  2. retain pass on the base weights (fwd+bwd): ``acc = m*acc + (1-m)*g``; ``base -= r_rate*acc``;
  3. forget forward on the adversary; cross-entropy backward -> adversary step (+ optional decay
     towards the base weights);
  4. unlearning-loss backward on the same forward; global norm over all targeted gradients
     *before* masking; Disruption Masking ``g *= sign(g) == sign(acc)``; normalization
     ``g *= sqrt(N)/norm`` (so ``unlearning_rate`` is a per-weight RMS step); ``base -= u_rate*g``.

Only targeted parameters carry state (base, adversary, retain accumulator), as in Listing 1:
each targeted parameter's ``.data`` is pointed at the base or the adversary weights.

Reuse of the forget forward: both backward passes of step 3 and 4 are taken from the same graph
*before* the adversary weights are edited, so both gradients are exact at the same adversary
point. (The reference edits the adversary in place between the two backwards, which autograd
does not notice, mixing old activations with new weights: an O(adv_lr) difference.)

Shared backward: with ``unlearning_loss=neg_cross_entropy`` the unlearning gradient of step 4 is
exactly the negated adversary gradient of step 3 (grad(-CE) = -grad(CE); negation is exact in
floating point), so it is never computed twice: one backward, negated in place after the
adversary step. The budget still counts the paper's 5 passes per loop
(``pass_accounting: paper``); ``pass_accounting: executed`` charges the 4 passes actually run, so
a budget buys 5/4 as many loops (different results from the paper's protocol).
"""

from __future__ import annotations

import torch

from mudman.losses import LOSSES, cross_entropy, get_loss
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs, require
from mudman.methods.components.options import MudmanOptions, check_options, locate_passes

NORMALIZATIONS = ("none", "per_parameter", "global_pre_mask", "global_post_mask")
PASS_ACCOUNTINGS = ("paper", "executed")


def use_weights(params: dict, weights: dict) -> None:
    """Point every targeted parameter at one set of weights (base or adversary), for free."""
    for name, param in params.items():
        param.data = weights[name]


def global_norm(grads: dict) -> torch.Tensor:
    """L2 norm over all tensors (one fused foreach kernel for the per-tensor norms on CUDA)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads.values()))))


def normalize_(grads: dict, mode: str, norm: torch.Tensor, n_elements: int) -> None:
    """Scale so the update's RMS per weight is 1 (global) or 1 within each parameter."""
    if mode == "per_parameter":
        for g in grads.values():
            g.mul_(g.numel() ** 0.5 / torch.linalg.vector_norm(g).clamp_min(1e-30))
    elif mode in ("global_pre_mask", "global_post_mask"):  # in place, no extra memory
        torch._foreach_mul_(list(grads.values()), n_elements**0.5 / norm.clamp_min(1e-30))


def mask_disagreeing_(grad: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """``grad *= sign(grad) == sign(acc)`` with one temporary and no bool mask or cast.

    ``sign(acc) * grad > 0`` is exact (multiplying by -1, 0 or 1 never rounds) and true exactly
    where both signs agree and are nonzero; where ``grad`` is 0 both forms leave it unchanged,
    and inf/NaN entries give the same results as the two-sign form (tested bitwise).
    """
    return grad.mul_(torch.sign(acc).mul_(grad).gt_(0))


def unlearning_direction_(
    grads: dict, acc: dict, masking: bool, normalization: str, n_elements: int, select=None
) -> dict:
    """Turn raw unlearning gradients into the update direction, in place (Algorithm 1, 13-14).

    The global norm is taken *before* masking (``global_pre_mask``, the paper's choice), so
    masking removes disruptive entries without inflating the surviving ones. ``select`` is an
    alternative selection rule applied at the same point (e.g. disruption percentiles).
    """
    norm = global_norm(grads)
    if masking:  # Disruption Masking: only where unlearning and retain signs agree
        for n, g in grads.items():
            mask_disagreeing_(g, acc[n])
    if select is not None:
        select(grads)
    if normalization == "global_post_mask":
        norm = global_norm(grads)
    normalize_(grads, normalization, norm, n_elements)
    return grads


@METHODS.register("mudman")
class Mudman(UnlearningMethod):
    """MUDMAN and, through its switches, each ablation (no_masking, no_normalization, ...)."""

    supports_retain_pause = True

    def passes_per_loop(self) -> int:
        """The paper's accounting: 5 with an adversary (4 without), whatever is executed."""
        if self.cfg.get("locate_once"):
            return 2  # only the retain pass: the unlearning gradient was located beforehand
        if self.cfg.meta_learning and self.cfg.get("pass_accounting", "paper") == "executed":
            return 4  # the shared backward (see shares_ce_backward) is charged once
        return 5 if self.cfg.meta_learning else 4

    def shares_ce_backward(self) -> bool:
        """True when one backward serves the adversary and the unlearning step (exactly)."""
        c = self.cfg
        return (
            bool(c.meta_learning)
            and not c.get("locate_once", False)
            and c.unlearning_loss == "neg_cross_entropy"
            and not c.get("unlearning_loss_kwargs")
        )

    def n_loops(self, unlearn_passes: int) -> int:
        """Locate-once first spends its passes on the initial model; loops get the rest."""
        located = locate_passes(self.cfg)
        if located and unlearn_passes <= located:
            require(
                self.cfg,
                "locate_once_batches",
                False,
                f"2 * value < unlearn_passes={unlearn_passes}",
            )
        return super().n_loops(unlearn_passes - located)

    def validate(self) -> None:
        c = self.cfg
        for key in ("unlearning_rate", "retaining_rate"):
            require(c, key, isinstance(c[key], (int, float)) and c[key] > 0, "a number > 0")
        require(c, "retain_momentum", 0 <= c.retain_momentum < 1, "0 <= value < 1")
        require(c, "normalization", c.normalization in NORMALIZATIONS, ", ".join(NORMALIZATIONS))
        require(c, "unlearning_loss", c.unlearning_loss in LOSSES, ", ".join(LOSSES.names()))
        require(c, "masking", isinstance(c.masking, bool), "true or false")
        require(c, "meta_learning", isinstance(c.meta_learning, bool), "true or false")
        if c.meta_learning:
            require(
                c, "adv_lr", isinstance(c.adv_lr, (int, float)) and c.adv_lr > 0, "a number > 0"
            )
            require(c, "adv_decay", 0 <= c.adv_decay <= 1, "0 <= value <= 1")
            require(
                c,
                "fork_every_n_loops",
                isinstance(c.fork_every_n_loops, int) and c.fork_every_n_loops >= 1,
                "an int >= 1",
            )
        check_options(c)  # appendix B/D components and their combinations
        require(
            c,
            "reuse_ce_backward",
            "reuse_ce_backward" not in c,
            "nothing: the key was removed; the backward is now always shared where exact, "
            "and method.pass_accounting=executed is the former 4-pass budget",
        )
        accounting = c.get("pass_accounting", "paper")
        require(c, "pass_accounting", accounting in PASS_ACCOUNTINGS, ", ".join(PASS_ACCOUNTINGS))
        require(
            c,
            "pass_accounting",
            accounting == "paper" or self.shares_ce_backward(),
            "paper unless meta_learning=true and unlearning_loss=neg_cross_entropy "
            "(only then is one backward shared)",
        )

    def retain_loss(self, model, retain_batch: torch.Tensor) -> torch.Tensor:
        """Loss of the retain pass on the base weights (TAR adds a representation term)."""
        return cross_entropy(model(input_ids=retain_batch).logits, retain_batch)

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        c = self.cfg
        unlearning_loss = get_loss(c.unlearning_loss, **(c.get("unlearning_loss_kwargs") or {}))
        # Config values read once: a DictConfig read costs microseconds, the loop runs per tensor.
        momentum, retaining_rate = c.retain_momentum, c.retaining_rate
        unlearning_rate, masking, normalization = c.unlearning_rate, c.masking, c.normalization
        fork_every = c.fork_every_n_loops if c.meta_learning else None
        shared_backward = self.shares_ce_backward()
        passes_per_loop = self.passes_per_loop()
        targets = list(params.values())
        n_elements = sum(p.numel() for p in targets)
        base = {n: p.data for n, p in params.items()}  # the model's own storage = base weights
        acc = {n: torch.zeros_like(w) for n, w in base.items()}
        base_list, acc_list = list(base.values()), list(acc.values())
        options = MudmanOptions(c, base)  # appendix B/D components; all off by default
        adversaries = options.adversaries  # None without meta-learning
        per_tensor_retain = options.split is not None or options.follows
        pairs = batch_pairs(data)
        self.state = {"base": base, "acc": acc}  # per-targeted-parameter state, for inspection
        located = options.locate(model, params, data, unlearning_loss)
        if located is not None:
            monitor.count(locate_passes(c))

        for loop_num in range(n_loops):
            if adversaries and loop_num % fork_every == 0:
                adversaries.fork(base)  # fork the adversary
                self.state["adv"] = adversaries.weights(0, base)
            retain_batch, forget_batch = next(pairs)

            # Retain pass on the base weights; update the disruption accumulator and retain.
            use_weights(params, base)
            retain_grads = torch.autograd.grad(self.retain_loss(model, retain_batch), targets)
            # acc = m*acc + (1-m)*g; base -= r*acc: the same per-element ops as one call per
            # step for all tensors (lerp_ would round differently, so it is not used).
            torch._foreach_mul_(acc_list, momentum)
            torch._foreach_add_(acc_list, retain_grads, alpha=1 - momentum)
            torch._foreach_sub_(base_list, acc_list, alpha=retaining_rate)
            if per_tensor_retain:  # split retain accumulators, adversaries following the base
                for (n, a), g in zip(acc.items(), retain_grads, strict=True):
                    options.accumulate_retain(n, g)
                    options.follow(n, a, retaining_rate)
            del retain_grads

            if monitor.skip_unlearning():  # retain loss above the pause limit: retain only
                monitor.count(passes_per_loop)
                if progress is not None:
                    progress.update(1)
                continue

            if located is not None:  # locate-once: reuse the gradient of the initial model
                grads = {n: g.clone() for n, g in located.items()}
            else:  # one forget forward on the adversary, used by both backward passes
                adv = adversaries.weights(loop_num, base) if adversaries else base
                use_weights(params, adv)
                logits = model(input_ids=forget_batch).logits
                if shared_backward:
                    # grad(-CE) == -grad(CE) exactly: one backward for both steps, negated in
                    # place once the adversary has used it (no copy)
                    ce_grads = torch.autograd.grad(cross_entropy(logits, forget_batch), targets)
                    del logits
                    adversaries.step(loop_num, dict(zip(params, ce_grads, strict=True)), base)
                    torch._foreach_neg_(ce_grads)
                    grads = dict(zip(params, ce_grads, strict=True))
                else:
                    if adversaries:
                        adv_grads = torch.autograd.grad(
                            cross_entropy(logits, forget_batch), targets, retain_graph=True
                        )
                    unlearning_grads = torch.autograd.grad(
                        unlearning_loss(logits, forget_batch), targets
                    )
                    grads = dict(zip(params, unlearning_grads, strict=True))
                    del logits
                    if adversaries:  # train the adversary on the forget set (then decay it)
                        adversaries.step(loop_num, dict(zip(params, adv_grads, strict=True)), base)
                        del adv_grads
            grads = options.unlearning_grads(grads)  # forget momentum, if on

            # Normalize (global norm before masking), Disruption Masking, unlearning update.
            unlearning_direction_(
                grads, acc, masking, normalization, n_elements, options.select(acc)
            )
            updates = list(grads.values())
            torch._foreach_mul_(updates, unlearning_rate)
            if options.only_shrink:
                updates = [options.restrict(u, w) for u, w in zip(updates, base_list, strict=True)]
            torch._foreach_sub_(base_list, updates)
            if options.follows:
                for n, u in zip(grads, updates, strict=True):
                    options.follow(n, u, 1.0)
            del grads, updates

            use_weights(params, base)
            monitor.count(passes_per_loop)
            if progress is not None:
                progress.update(1)
