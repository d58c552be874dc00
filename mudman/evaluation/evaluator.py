"""Scores a model on a multiple-choice task the way lm-evaluation-harness does (0-shot
loglikelihood): the prompts and continuations of ``prompts.py``, split into tokens by
``encoding.py``, padded once by ``batches.py``; each call is then forwards only, and the
log-likelihoods become the metrics of ``metrics.py``. So a trial or sweep scores many models (or
one model many times) without re-tokenizing.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from mudman.evaluation.batches import (
    PrefixBatch,
    RowBatch,
    choice_row_batches,
    shared_prefix_batches,
    single_token_batches,
)
from mudman.evaluation.encoding import encode_pairs
from mudman.evaluation.metrics import choice_text_metrics, metric_names, multiple_choice_metrics
from mudman.evaluation.prompts import continuations, format_prompt
from mudman.evaluation.questions import MultipleChoiceTask

log = logging.getLogger(__name__)
# The KV-cache keyword of ``forward``: ``cache`` from transformers 5.24 on (the old name still
# works there, with a deprecation warning), ``past_key_values`` before.
_CACHE_KWARGS = ("cache", "past_key_values")
# Where transformers configs keep the context window (lm-eval checks the same attributes).
_MAX_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


def model_max_length(model: Any) -> int | None:
    """The model's context window from its config, or None if it does not say."""
    config = getattr(model, "config", None)
    for attr in _MAX_LENGTH_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class MultipleChoiceEvaluator:
    """Scores a model on a task; tokenizes once, then each call is forwards only.

    The task's ``scoring`` picks prompt, continuations and metrics (prompts.py, metrics.py).
    When every continuation is a single token (real tokenizers: " A" is one token) one forward
    per question scores all its choices at the last position (lm-eval does the same through its
    one-token-continuation cache). Otherwise each (question, choice) pair is its own row. Rows
    are sorted by length and left-padded with an attention mask and position ids that restart
    at 0 on the first real token, so batching does not change the scores (up to float rounding).

    With multi-token continuations (``choice_text``) and a model that takes a KV cache
    (``past_key_values``), the context is run once per question and each choice's continuation
    runs on a copy of its cache (``share_prefix``, default on): the same positions and the same
    attended tokens as the one-row-per-choice path, so the same scores up to float rounding, for
    about 1/n_choices of the compute on long prompts. Models without a cache, and tasks with
    prompts over the window, use the one-row-per-choice path.

    Prompts longer than the model's window (``max_length``, default from the model config) are
    truncated from the left, as lm-eval does: the model sees the last ``max_length`` input tokens.
    """

    def __init__(
        self,
        task: MultipleChoiceTask,
        tokenizer: Any,
        device: torch.device | str = "cpu",
        batch_size: int = 16,
        max_length: int | None = None,
        share_prefix: bool = True,
    ) -> None:
        if not task.questions:
            raise ValueError(f"task {task.name!r} has no questions")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; want >= 1")
        self.task = task
        self.scoring = task.scoring
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.share_prefix = share_prefix
        self.n_questions = len(task.questions)
        self.n_choices = max(len(q.choices) for q in task.questions)
        self.answers = torch.tensor([q.answer for q in task.questions], dtype=torch.long)
        # lm-eval's acc_norm divides by len(choice) (characters, no delimiter); 1 = missing.
        self.choice_lengths = torch.ones((self.n_questions, self.n_choices), dtype=torch.float64)
        for qi, q in enumerate(task.questions):
            if self.scoring == "choice_text" and not all(q.choices):
                raise ValueError(f"question {qi} has an empty choice; choice_text cannot score it")
            self.choice_lengths[qi, : len(q.choices)] = torch.tensor(
                [float(len(c)) for c in q.choices], dtype=torch.float64
            )
        self.prompts = [format_prompt(task, q) for q in task.questions]
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._pad_id = int(pad_id)
        encoded = [
            encode_pairs(tokenizer, prompt, continuations(q, self.scoring))
            for prompt, q in zip(self.prompts, task.questions, strict=True)
        ]
        self.single_token = all(len(cont) == 1 for pairs in encoded for _, cont in pairs)
        if self.single_token:
            self._batches = single_token_batches(
                encoded, self.n_choices, self._pad_id, batch_size, self.device
            )
        else:
            self._batches = choice_row_batches(encoded, self._pad_id, batch_size, self.device)
        # model input tokens per full pass, for throughput reports
        self.n_tokens = sum(int(batch.attention_mask.sum()) for batch in self._batches)
        self._longest = max(len(ctx) + len(cont) - 1 for pairs in encoded for ctx, cont in pairs)
        # letters keep their one-row-per-choice path exactly; shared prefixes are for choice_text
        shared = self.scoring == "choice_text" and not self.single_token
        self._prefix = (
            shared_prefix_batches(encoded, self.n_choices, self._pad_id, batch_size, self.device)
            if shared
            else None
        )
        self.used_shared_prefix = False  # which path the last call took (for reports and tests)
        self._warned_fallback = False

    # -------------------------------------------------------------- scoring

    def _prefix_scores(self, model: Any, batch: PrefixBatch) -> torch.Tensor | None:
        """[Q, C] float64 summed log-likelihoods, or None if the model returned no usable
        cache (then the caller falls back to one row per choice)."""
        mask = batch.context_mask
        kwargs: dict[str, Any] = {
            "input_ids": batch.context_ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(dim=-1) - 1).clamp(min=0),
            "use_cache": True,
        }
        if self._accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        out = model(**kwargs)
        logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        scores = logprobs.gather(1, batch.first_tokens).double()
        width = batch.inputs.shape[1]
        if width == 0:
            return scores
        cache_kwarg = self._cache_kwarg(model)
        cache = getattr(out, cache_kwarg, None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            self._fallback(f"the model returned no reusable KV cache (got {type(cache).__name__})")
            return None
        cache.batch_repeat_interleave(self.n_choices)
        context_mask = mask.repeat_interleave(self.n_choices, dim=0)
        start = context_mask.sum(dim=1, keepdim=True)  # the first continuation's position
        positions = start + torch.arange(width, device=mask.device)[None, :]
        out = model(
            input_ids=batch.inputs,
            attention_mask=torch.cat([context_mask, batch.input_mask], dim=1),
            position_ids=positions,
            use_cache=True,
            **{cache_kwarg: cache},
        )
        logprobs = torch.log_softmax(out.logits[:, -width:, :].float(), dim=-1)
        tokens = logprobs.gather(2, batch.targets[..., None]).squeeze(-1).double()
        rest = (tokens * batch.input_mask).sum(dim=1).view(-1, self.n_choices)
        return scores + rest

    def _can_share_prefix(self, model: Any, limit: int | None) -> bool:
        if not self.share_prefix or self._prefix is None:
            return False
        if limit is not None and self._longest > limit:
            self._fallback(f"a prompt of {self._longest} tokens exceeds the window of {limit}")
            return False
        if self._cache_kwarg(model) is None or not self._accepts(model, "use_cache"):
            self._fallback(f"{type(model).__name__}.forward takes no KV cache")
            return False
        return True

    def _cache_kwarg(self, model: Any) -> str | None:
        """The name under which ``model.forward`` takes a KV cache, or None."""
        return next((name for name in _CACHE_KWARGS if self._accepts(model, name)), None)

    def _fallback(self, why: str) -> None:
        """Say once per evaluator that the shared-prefix path is not taken (it is ~n_choices
        times cheaper on long prompts; the scores are the same up to float rounding)."""
        if not self._warned_fallback:
            self._warned_fallback = True
            log.warning(
                "task %s: scoring one row per choice instead of sharing each question's prefix: %s",
                self.task.name,
                why,
            )

    def _forward_logprobs(self, model: Any, batch: RowBatch, limit: int | None) -> torch.Tensor:
        """float32 log-softmax over the vocabulary at the last ``batch.keep`` positions."""
        ids, mask = batch.input_ids, batch.attention_mask
        if limit is not None and ids.shape[1] > limit:
            ids, mask = ids[:, -limit:], mask[:, -limit:]  # left truncation of every row
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
        }
        if self._accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = batch.keep
        if self._accepts(model, "use_cache"):
            kwargs["use_cache"] = False
        logits = model(**kwargs).logits[:, -batch.keep :, :]
        return torch.log_softmax(logits.float(), dim=-1)

    @staticmethod
    def _accepts(model: Any, name: str) -> bool:
        try:
            parameters = inspect.signature(model.forward).parameters
        except (TypeError, ValueError, AttributeError):
            return False
        return name in parameters

    def loglikelihoods(self, model: Any) -> torch.Tensor:
        """[n_questions, n_choices] float64 (CPU): log-likelihood of each choice's continuation
        (" A", " B", ... or " " + choice text, summed over its tokens) per question.

        Questions with fewer choices than the task's maximum get ``-inf`` for the missing ones.
        """
        out = torch.full((self.n_questions, self.n_choices), float("-inf"), dtype=torch.float64)
        limit = self.max_length or model_max_length(model)
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            with torch.no_grad():
                self.used_shared_prefix = False
                if self._can_share_prefix(model, limit):
                    for prefix in self._prefix or []:
                        scores = self._prefix_scores(model, prefix)
                        if scores is None:  # no usable cache: one row per choice below
                            break
                        scores = scores.cpu().masked_fill(~prefix.valid, float("-inf"))
                        out[prefix.questions] = scores
                    else:
                        self.used_shared_prefix = True
                        return out
                for batch in self._batches:
                    logprobs = self._forward_logprobs(model, batch, limit)
                    if self.single_token:
                        scores = logprobs[:, -1, :].gather(1, batch.targets)
                        scores = scores.masked_fill(~batch.target_mask, float("-inf"))
                        out[batch.questions] = scores.double().cpu()
                    else:
                        tokens = logprobs.gather(2, batch.targets[..., None]).squeeze(-1)
                        scores = (tokens.double() * batch.target_mask).sum(dim=1)
                        out[batch.questions, batch.choices] = scores.cpu()
        finally:
            if was_training:
                model.train()
        return out

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys ``__call__`` returns."""
        return metric_names(self.scoring)

    def __call__(self, model: Any) -> dict[str, float]:
        """The metrics of ``model`` on the task: ``{"accuracy", "correct_letter_prob"}``
        (letters) or ``{"accuracy", "accuracy_norm", "correct_choice_prob"}`` (choice_text)."""
        loglik = self.loglikelihoods(model)
        if self.scoring == "choice_text":
            return choice_text_metrics(loglik, self.answers, self.choice_lengths)
        return multiple_choice_metrics(loglik, self.answers)
