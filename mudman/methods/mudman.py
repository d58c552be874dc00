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
"""

from __future__ import annotations

import torch

from mudman.losses import LOSSES, cross_entropy, get_loss
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs, require
from mudman.methods.components.options import MudmanOptions, check_options, locate_passes

NORMALIZATIONS = ("none", "per_parameter", "global_pre_mask", "global_post_mask")


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
            g.mul_(torch.sign(g) == torch.sign(acc[n]))
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
        if self.cfg.get("locate_once"):
            return 2  # only the retain pass: the unlearning gradient was located beforehand
        if self.cfg.meta_learning and self.cfg.get("reuse_ce_backward", False):
            return 4  # -CE gradient = -(adversary's CE gradient): one backward serves both
        return 5 if self.cfg.meta_learning else 4

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
        if c.get("reuse_ce_backward", False):
            require(
                c,
                "reuse_ce_backward",
                c.meta_learning
                and c.unlearning_loss == "neg_cross_entropy"
                and not c.get("unlearning_loss_kwargs"),
                "true only with meta_learning=true and unlearning_loss=neg_cross_entropy",
            )

    def retain_loss(self, model, retain_batch: torch.Tensor) -> torch.Tensor:
        """Loss of the retain pass on the base weights (TAR adds a representation term)."""
        return cross_entropy(model(input_ids=retain_batch).logits, retain_batch)

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        c = self.cfg
        unlearning_loss = get_loss(c.unlearning_loss, **(c.get("unlearning_loss_kwargs") or {}))
        targets = list(params.values())
        n_elements = sum(p.numel() for p in targets)
        base = {n: p.data for n, p in params.items()}  # the model's own storage = base weights
        acc = {n: torch.zeros_like(w) for n, w in base.items()}
        options = MudmanOptions(c, base)  # appendix B/D components; all off by default
        adversaries = options.adversaries  # None without meta-learning
        pairs = batch_pairs(data)
        self.state = {"base": base, "acc": acc}  # per-targeted-parameter state, for inspection
        located = options.locate(model, params, data, unlearning_loss)
        if located is not None:
            monitor.count(locate_passes(c))

        for loop_num in range(n_loops):
            if adversaries and loop_num % c.fork_every_n_loops == 0:
                adversaries.fork(base)  # fork the adversary
                self.state["adv"] = adversaries.weights(0, base)
            retain_batch, forget_batch = next(pairs)

            # Retain pass on the base weights; update the disruption accumulator and retain.
            use_weights(params, base)
            retain_grads = torch.autograd.grad(self.retain_loss(model, retain_batch), targets)
            for (n, w), g in zip(base.items(), retain_grads, strict=True):
                acc[n].mul_(c.retain_momentum).add_(g, alpha=1 - c.retain_momentum)
                options.accumulate_retain(n, g)
                w.sub_(acc[n], alpha=c.retaining_rate)
                options.follow(n, acc[n], c.retaining_rate)

            if monitor.skip_unlearning():  # retain loss above the pause limit: retain only
                monitor.count(self.passes_per_loop())
                if progress is not None:
                    progress.update(1)
                continue

            if located is not None:  # locate-once: reuse the gradient of the initial model
                grads = {n: g.clone() for n, g in located.items()}
            else:  # one forget forward on the adversary, used by both backward passes
                adv = adversaries.weights(loop_num, base) if adversaries else base
                use_weights(params, adv)
                logits = model(input_ids=forget_batch).logits
                if adversaries and c.get("reuse_ce_backward", False):
                    # grad(-CE) == -grad(CE) exactly (negation is exact in floating point)
                    adv_grads = torch.autograd.grad(cross_entropy(logits, forget_batch), targets)
                    unlearning_grads = torch._foreach_neg(adv_grads)
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
                if adversaries:  # train the adversary on the forget set (then decay it to base)
                    adversaries.step(loop_num, dict(zip(params, adv_grads, strict=True)), base)
            grads = options.unlearning_grads(grads)  # forget momentum, if on

            # Normalize (global norm before masking), Disruption Masking, unlearning update.
            unlearning_direction_(
                grads, acc, c.masking, c.normalization, n_elements, options.select(acc)
            )
            for n, g in grads.items():
                update = options.restrict(g.mul_(c.unlearning_rate), base[n])  # only-shrinking
                base[n].sub_(update)
                options.follow(n, update, 1.0)

            use_weights(params, base)
            monitor.count(self.passes_per_loop())
            if progress is not None:
                progress.update(1)
