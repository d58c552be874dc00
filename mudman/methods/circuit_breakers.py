"""Circuit breakers (Zou et al., 2024), the CIR paper's strongest baseline.

Representation rerouting: on forget batches, push the chosen layers' hidden states towards
orthogonality with the original model's; on retain batches, keep every hidden state close to
the original's. The two terms are weighted by the original schedule
``c_forget = alpha * (1 - t / 2T)``, ``c_retain = alpha * t / 2T`` (t = loop, T = loops), and
the targeted weights take one Adam step per loop, as the original's AdamW (weight decay 0)
does on its LoRA adapters; here every method edits the same targeted weights, so there is no
LoRA. Adam state is two targeted-size tensors, freed with the original copy when unlearning ends.

What is kept from the original: relu(cos)-style rerouting on the chosen layers, an L2 retain
distance on all hidden states after the embeddings (the original stacks all of them), the
coefficient schedule, Adam. What changed, and why (measured on SmolLM2-135M, docs/methods.md
"Circuit breakers"):

* Rerouting term ``relu(<h, o> / (|o| max(|h|, |o|)))`` (``relu_bounded_projection``) instead
  of ``relu(cos(h, o))``: the same value wherever |h| >= |o|, bounded in [0, 1], but with a
  non-zero gradient at the original weights, where the cosine's is exactly zero (measured:
  1.5e-9, rounding noise; the original leaves that point only through noise).
* Position 0 is left out of the rerouting term (``skip_first_token``): in SmolLM2 it is an
  attention sink of norm ~22,700 (vs ~150 for other tokens) in the middle layers; rerouting it
  breaks every sequence, not the forget content.
* Retain distance ``|h - o| / |o|`` per token (``retain_distance: relative_l2``) rather than
  ``|h - o|``: with the plain distance the sink token dominates the retain gradient by orders of
  magnitude and rerouting stalls. ``retain_distance: l2`` restores the original's.

The earlier version (squared L2 retain term, plain SGD) diverged on SmolLM2 at every step
size: the squared distance of the sink token has a curvature so large that SGD at lr 1e-4
already grew it ~1000x per loop.

The original model is a copy of the targeted weights only (``components/original.py``).
6 passes per loop: original forward on each batch (2), forward on each batch (2), and the
backward of the summed loss through both graphs (2).
"""

from __future__ import annotations

import torch

from mudman.errors import ConfigError
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs, require
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import (
    mean_l2,
    mean_relative_l2,
    relu_bounded_projection,
)

RETAIN_DISTANCES = {"relative_l2": mean_relative_l2, "l2": mean_l2}


def pick_layers(hidden_states: tuple, layers) -> list[int]:
    """Hidden-state indices to use: ``layers`` (1 = first layer's output) or all but the
    embeddings and the final (normalized) state."""
    n = len(hidden_states)
    if layers is None:
        return list(range(1, n - 1))
    bad = [i for i in layers if not 1 <= i <= n - 1]
    if bad:
        raise ConfigError(
            f"method.layers={list(layers)} has {bad} outside 1..{n - 1} for this model's "
            f"{n - 1} layers"
        )
    return list(layers)


@METHODS.register("circuit_breakers")
class CircuitBreakers(UnlearningMethod):
    def passes_per_loop(self) -> int:
        return 6

    def validate(self) -> None:
        c = self.cfg
        require(c, "lr", isinstance(c.get("lr"), (int, float)) and c.lr > 0, "a number > 0")
        require(c, "alpha", isinstance(c.get("alpha"), (int, float)) and c.alpha > 0, "> 0")
        layers = c.get("layers")
        require(
            c,
            "layers",
            layers is None
            or (len(layers) > 0 and all(isinstance(i, int) and i >= 1 for i in layers)),
            "null (all intermediate layers) or a non-empty list of ints >= 1",
        )
        require(
            c,
            "retain_distance",
            c.get("retain_distance") in RETAIN_DISTANCES,
            " | ".join(RETAIN_DISTANCES),
        )
        require(
            c,
            "skip_first_token",
            isinstance(c.get("skip_first_token"), bool),
            "true or false",
        )

    def loss(self, forget, forget_orig, retain, retain_orig, t: int, n_loops: int):
        """The scheduled sum of the rerouting and retain terms at loop ``t`` (also returned
        separately, for logging and tests)."""
        c = self.cfg
        layers = pick_layers(forget_orig, c.get("layers"))
        skip = int(c.skip_first_token)
        reroute = relu_bounded_projection(
            [forget[i] for i in layers], [forget_orig[i] for i in layers], skip_first=skip
        )
        retain_term = RETAIN_DISTANCES[c.retain_distance](retain[1:], retain_orig[1:])
        progress = t / (2 * n_loops)
        total = c.alpha * (1 - progress) * reroute + c.alpha * progress * retain_term
        return total, reroute.detach(), retain_term.detach()

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        targets = list(params.values())
        original = OriginalWeights(params)
        optimizer = torch.optim.Adam(targets, lr=self.cfg.lr)
        pairs = batch_pairs(data)
        self.history: list[tuple[float, float]] = []  # (rerouting, retain) term per loop
        try:
            for t in range(n_loops):
                retain_batch, forget_batch = next(pairs)
                forget_orig = original.hidden_states(model, forget_batch)
                retain_orig = original.hidden_states(model, retain_batch)
                forget_out = model(input_ids=forget_batch, output_hidden_states=True)
                retain_out = model(input_ids=retain_batch, output_hidden_states=True)
                loss, reroute, retain_term = self.loss(
                    forget_out.hidden_states,
                    forget_orig,
                    retain_out.hidden_states,
                    retain_orig,
                    t,
                    n_loops,
                )
                self.history.append((reroute.item(), retain_term.item()))
                # targets after the last hidden state used get no gradient (None): Adam skips
                grads = torch.autograd.grad(loss, targets, allow_unused=True)
                for p, g in zip(targets, grads, strict=True):
                    p.grad = g
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                monitor.count(self.passes_per_loop())
                if progress is not None:
                    progress.update(1)
        finally:
            original.release()
            optimizer.state.clear()  # Adam state is needed only while unlearning
