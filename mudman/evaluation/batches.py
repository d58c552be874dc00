"""The evaluator's padded tensors, built once per task in one of three layouts.

* :func:`single_token_batches`: every continuation is one token (real tokenizers: " A" is one
  token), so one row per question scores all its choices at the last position;
* :func:`choice_row_batches`: one row per (question, choice), ``(context + continuation)[:-1]``
  as lm-eval feeds it, the last ``len(continuation)`` positions scored;
* :func:`shared_prefix_batches`: each question's context once, then every choice's continuation
  on a copy of its KV cache (``choice_text`` with multi-token continuations).

Rows are sorted longest first (ties by question, then choice) and left-padded; the evaluator
gives position ids that restart at 0 on the first real token, so batching does not change the
scores (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Per question, per choice: (context token ids, continuation token ids), from encoding.py.
EncodedTask = list[list[tuple[list[int], list[int]]]]


@dataclass
class RowBatch:
    """Rows of :func:`single_token_batches` or :func:`choice_row_batches`."""

    input_ids: torch.Tensor  # [B, T] left-padded
    attention_mask: torch.Tensor  # [B, T]
    questions: torch.Tensor  # [B] question index of each row
    choices: torch.Tensor  # [B] choice index of each row (choice rows) / unused (single token)
    targets: torch.Tensor  # single token: [B, C] token ids; choice rows: [B, K] right-aligned
    target_mask: torch.Tensor  # same shape as targets: which entries are real
    keep: int = field(default=1)  # how many final positions' logits are needed


@dataclass
class PrefixBatch:
    """Questions whose context is run once; each choice's continuation then runs on its cache."""

    context_ids: torch.Tensor  # [Q, T] left-padded
    context_mask: torch.Tensor  # [Q, T]
    questions: torch.Tensor  # [Q] question index of each row
    first_tokens: torch.Tensor  # [Q, C] first continuation token of each choice
    inputs: torch.Tensor  # [Q*C, W] continuation tokens but the last, right-padded
    input_mask: torch.Tensor  # [Q*C, W]
    targets: torch.Tensor  # [Q*C, W] continuation tokens but the first, right-padded
    valid: torch.Tensor  # [Q, C] real choices (questions with fewer choices repeat the first)


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(ids, mask)`` [len(rows), longest]: each row at the right end, ``pad_id`` before it."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def right_align(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(ids, mask)`` like :func:`left_pad`, zeros before each row and a boolean mask."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = True
    return ids.to(device), mask.to(device)


def single_token_batches(
    encoded: EncodedTask, n_choices: int, pad_id: int, batch_size: int, device: torch.device
) -> list[RowBatch]:
    """One row per question (its context); ``targets`` are the choices' one-token continuations."""
    rows = []
    for qi, pairs in enumerate(encoded):
        context = pairs[0][0]
        letters = [cont[0] for _, cont in pairs]
        rows.append((context, letters, qi))
    rows.sort(key=lambda r: (-len(r[0]), r[2]))
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = left_pad([r[0] for r in chunk], pad_id, device)
        targets = torch.zeros((len(chunk), n_choices), dtype=torch.long)
        target_mask = torch.zeros((len(chunk), n_choices), dtype=torch.bool)
        for i, (_, letters, _) in enumerate(chunk):
            targets[i, : len(letters)] = torch.tensor(letters)
            target_mask[i, : len(letters)] = True
        batches.append(
            RowBatch(
                ids,
                mask,
                torch.tensor([r[2] for r in chunk]),
                torch.zeros(len(chunk), dtype=torch.long),
                targets.to(device),
                target_mask.to(device),
                keep=1,
            )
        )
    return batches


def choice_row_batches(
    encoded: EncodedTask, pad_id: int, batch_size: int, device: torch.device
) -> list[RowBatch]:
    """One row per (question, choice); ``targets`` are the continuation tokens, right-aligned."""
    rows = []
    for qi, pairs in enumerate(encoded):
        for ci, (context, cont) in enumerate(pairs):
            # lm-eval: the input is (context + continuation)[:-1]; the last len(cont)
            # positions predict the continuation tokens.
            rows.append(((context + cont)[:-1], cont, qi, ci))
    rows.sort(key=lambda r: (-len(r[0]), r[2], r[3]))
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = left_pad([r[0] for r in chunk], pad_id, device)
        targets, target_mask = right_align([r[1] for r in chunk], device)
        batches.append(
            RowBatch(
                ids,
                mask,
                torch.tensor([r[2] for r in chunk]),
                torch.tensor([r[3] for r in chunk]),
                targets,
                target_mask,
                keep=targets.shape[1],
            )
        )
    return batches


def shared_prefix_batches(
    encoded: EncodedTask, n_choices: int, pad_id: int, batch_size: int, device: torch.device
) -> list[PrefixBatch]:
    """Contexts of ``batch_size // n_choices`` questions per batch (so the continuation pass
    has about ``batch_size`` rows), each choice's continuation right-padded below them."""
    per_batch = max(1, batch_size // n_choices)  # rows of the continuation pass
    order = sorted(range(len(encoded)), key=lambda qi: (-len(encoded[qi][0][0]), qi))
    batches = []
    for start in range(0, len(order), per_batch):
        chunk = order[start : start + per_batch]
        ids, mask = left_pad([encoded[qi][0][0] for qi in chunk], pad_id, device)
        conts, valid = [], torch.zeros((len(chunk), n_choices), dtype=torch.bool)
        for row, qi in enumerate(chunk):
            pairs = encoded[qi]
            valid[row, : len(pairs)] = True
            conts += [cont for _, cont in pairs]
            conts += [pairs[0][1]] * (n_choices - len(pairs))
        width = max(len(c) for c in conts) - 1
        inputs = torch.full((len(conts), width), pad_id, dtype=torch.long)
        input_mask = torch.zeros((len(conts), width), dtype=torch.long)
        targets = torch.zeros((len(conts), width), dtype=torch.long)
        for i, cont in enumerate(conts):
            n = len(cont) - 1
            inputs[i, :n] = torch.tensor(cont[:-1], dtype=torch.long)
            targets[i, :n] = torch.tensor(cont[1:], dtype=torch.long)
            input_mask[i, :n] = 1
        first = torch.tensor([c[0] for c in conts], dtype=torch.long)
        batches.append(
            PrefixBatch(
                ids,
                mask,
                torch.tensor(chunk),
                first.view(len(chunk), n_choices).to(device),
                inputs.to(device),
                input_mask.to(device),
                targets.to(device),
                valid,
            )
        )
    return batches
