"""The original model's behaviour without a second model in memory.

Representation terms (TAR's retain term, circuit breakers, CIR) compare hidden states with
those of the *original* model. Only the targeted weights ever change, so instead of a frozen
deep copy of the whole model we keep a copy of just the targeted weights (memory: one
targeted-size copy) and, per batch, run the model once with them swapped in (no autograd
graph). ``release()`` drops the copy as soon as the method is done with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class OriginalWeights:
    """A frozen copy of the targeted weights, swappable into the live model."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params
        self.weights: dict[str, torch.Tensor] | None = {
            n: p.detach().clone() for n, p in params.items()
        }

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Run the model on the original weights inside the block; restore the live ones."""
        if self.weights is None:
            raise RuntimeError("OriginalWeights used after release()")
        live = {n: p.data for n, p in self.params.items()}
        try:
            for n, p in self.params.items():
                p.data = self.weights[n]
            yield
        finally:
            for n, p in self.params.items():
                p.data = live[n]

    @torch.no_grad()
    def hidden_states(self, model: nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The original model's hidden states (embeddings, then every layer's output)."""
        with self.swapped_in():
            return model(input_ids=input_ids, output_hidden_states=True).hidden_states

    def release(self) -> None:
        """Free the copy (the method no longer needs the original model)."""
        self.weights = None
