"""Circuit breakers (Zou et al., 2024), the CIR paper's strongest baseline.

Representation rerouting: on forget batches, push the chosen layers' hidden states towards
orthogonality with the original model's; on retain batches, keep them close to
the original's (L2). The two terms are weighted by the paper's schedule
``c_forget = alpha * (1 - t / 2T)``, ``c_retain = alpha * t / 2T`` (t = loop, T = loops), and
one plain SGD step on the targeted weights is taken per loop (the original trains LoRA
adapters with AdamW; here every method edits the same targeted weights).

The rerouting term is ``relu(<h, h_orig> / |h_orig|^2)`` rather than the original
``relu(cos(h, h_orig))``: both are 1 at the original model, but the cosine is at its maximum
there and has exactly zero gradient (the original escapes it through LoRA dropout noise).

The original model is a copy of the targeted weights only (``components/original.py``).
6 passes per loop: original forward on each batch (2), forward on each batch (2), and the
backward of the summed loss through both graphs (2).
"""

from __future__ import annotations

import torch

from mudman.errors import ConfigError
from mudman.methods.base import METHODS, UnlearningMethod, batch_pairs, require
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import mean_squared_l2, relu_projection


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

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        c = self.cfg
        targets = list(params.values())
        original = OriginalWeights(params)
        pairs = batch_pairs(data)
        try:
            for t in range(n_loops):
                retain_batch, forget_batch = next(pairs)
                forget_orig = original.hidden_states(model, forget_batch)
                retain_orig = original.hidden_states(model, retain_batch)
                layers = pick_layers(forget_orig, c.get("layers"))
                forget_out = model(input_ids=forget_batch, output_hidden_states=True)
                retain_out = model(input_ids=retain_batch, output_hidden_states=True)
                progress_frac = t / (2 * n_loops)
                loss = c.alpha * (1 - progress_frac) * relu_projection(
                    [forget_out.hidden_states[i] for i in layers], [forget_orig[i] for i in layers]
                ) + c.alpha * progress_frac * mean_squared_l2(
                    [retain_out.hidden_states[i] for i in layers], [retain_orig[i] for i in layers]
                )
                # targets after the last chosen layer get no gradient (None): no update
                grads = torch.autograd.grad(loss, targets, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(targets, grads, strict=True):
                        if g is not None:
                            p.sub_(g, alpha=c.lr)
                monitor.count(self.passes_per_loop())
                if progress is not None:
                    progress.update(1)
        finally:
            original.release()
