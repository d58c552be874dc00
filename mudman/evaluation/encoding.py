"""Prompt and continuation to token ids, split exactly as lm-evaluation-harness's ``HFLM`` does."""

from __future__ import annotations

from typing import Any


def encode_pairs(
    tokenizer: Any, context: str, continuations: list[str]
) -> list[tuple[list[int], list[int]]]:
    """lm-eval's ``_encode_pair`` for causal models, the context encoded once for all choices.

    Trailing spaces of the context move to the continuation; the continuation's tokens are the
    tail of ``encode(context + continuation)`` after as many tokens as ``encode(context)`` has, so
    merges across the boundary are handled exactly as lm-eval does. The model input is then
    ``context_tokens + continuation_tokens`` (context encoded on its own).
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuations = [context[-n_spaces:] + c for c in continuations]
        context = context[:-n_spaces]
    context_ids = list(tokenizer.encode(context))
    pairs = []
    for continuation in continuations:
        continuation_ids = list(tokenizer.encode(context + continuation))[len(context_ids) :]
        if not context_ids or not continuation_ids:
            raise ValueError(f"empty context or continuation tokens for {continuation!r}")
        pairs.append((context_ids, continuation_ids))
    return pairs


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """One (context, continuation) pair: see :func:`encode_pairs`."""
    return encode_pairs(tokenizer, context, [continuation])[0]
