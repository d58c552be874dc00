"""TAR as the paper adapted it (section 4, Figure 2): MUDMAN's single loop with TAR's choices.

TAR's meta-learning core: neg_entropy unlearning loss, no Disruption Masking, no gradient
normalization, retain momentum 0 (plain retain gradients), no adversary decay; its
representation-noising stage is dropped, as in the paper. The retain loss gains a
representation term, weighted by ``representation_weight``: the mean over tokens and layers
(last hidden state excluded, as in the reference code) of a distance between the hidden states
and the original model's.

``representation_distance: relative_squared_l2`` (default) divides each token's squared L2
distance by that token's original squared norm. ``squared_l2`` is the reference code's term,
whose size follows the hidden-state scale squared: on SmolLM2 the position-0 attention sink
(norm ~22,700 vs ~150) makes nearly all of it, the retain step diverged at weight 1, and every
trial was rejected (the paper searched the weight down to 1e-12 there). The relative term is
scale-free, so weight 1 means the same on every model; ``representation_skip_first`` leaves
leading positions out (docs/methods.md, "TAR", has the measurements).

Pass accounting: 6 per loop (5 without the adversary): MUDMAN's 5 plus one forward of the
original model on the retain batch. The "original model" is a copy of only the targeted
weights, swapped in for that forward (``components/original.py``), held during ``unlearn`` and
released after it.
"""

from __future__ import annotations

from typing import Any

import torch

from mudman.defaults import group_defaults
from mudman.errors import ConfigError
from mudman.losses import cross_entropy
from mudman.methods.base import METHODS, require
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import (
    mean_relative_l2,
    mean_relative_squared_l2,
    mean_squared_l2,
)
from mudman.methods.mudman import Mudman

# method.representation_distance -> the retain term (see the module docstring for the choice)
REPRESENTATION_DISTANCES = {
    "relative_squared_l2": mean_relative_squared_l2,
    "squared_l2": mean_squared_l2,
    "relative_l2": mean_relative_l2,
}


def shipped_default(key: str) -> Any:
    """A key's value in conf/method/tar.yaml: the one place TAR's defaults are written."""
    return group_defaults("method", "tar")[key]


@METHODS.register("tar")
class Tar(Mudman):
    """MUDMAN's loop whose retain pass also pulls hidden states towards the original model's."""

    original: OriginalWeights | None = None

    def passes_per_loop(self) -> int:
        return super().passes_per_loop() + 1  # + original-model forward on the retain batch

    def validate(self) -> None:
        super().validate()
        c = self.cfg
        w = c.get("representation_weight")
        require(
            c,
            "representation_weight",
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0,
            "a number >= 0",
        )
        distance = c.get("representation_distance", shipped_default("representation_distance"))
        require(
            c,
            "representation_distance",
            distance in REPRESENTATION_DISTANCES,
            ", ".join(REPRESENTATION_DISTANCES),
        )
        skip = c.get("representation_skip_first", shipped_default("representation_skip_first"))
        require(
            c,
            "representation_skip_first",
            isinstance(skip, int) and not isinstance(skip, bool) and skip >= 0,
            "an int >= 0 (leading positions left out of the term, e.g. 1 for an attention sink)",
        )

    def representation_term(self, hidden: tuple, original: tuple) -> torch.Tensor:
        """The configured distance over every hidden state but the last (as the reference)."""
        c = self.cfg
        skip = c.get("representation_skip_first", shipped_default("representation_skip_first"))
        if hidden[0].shape[1] <= skip:
            raise ConfigError(
                f"method.representation_skip_first={skip} leaves no position of a "
                f"{hidden[0].shape[1]}-token batch; allowed: less than context_len"
            )
        name = c.get("representation_distance", shipped_default("representation_distance"))
        distance = REPRESENTATION_DISTANCES[name]
        return distance(hidden[:-1], original[:-1], skip_first=skip)

    def retain_loss(self, model, retain_batch: torch.Tensor) -> torch.Tensor:
        original = self.original.hidden_states(model, retain_batch)
        out = model(input_ids=retain_batch, output_hidden_states=True)
        representation = self.representation_term(out.hidden_states, original)
        self.last_representation_loss = representation.detach()
        ce = cross_entropy(out.logits, retain_batch)
        return ce + self.cfg.representation_weight * representation

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        self.original = OriginalWeights(params)
        try:
            super().unlearn(model, params, data, n_loops, monitor, progress)
        finally:
            self.original.release()  # the original model is needed only while unlearning
