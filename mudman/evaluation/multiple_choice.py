"""Multiple-choice evaluation, scored the way lm-evaluation-harness does (0-shot loglikelihood).

A task is data (``conf/eval/<name>.yaml``): where the questions come from, which subjects to
keep, a seeded subsample, the description line and how choices are scored (``scoring``):

``letters`` (default): lm-eval's MMLU/WMDP template, choices listed as ``A. ...`` in the prompt;
each choice's score is the log-likelihood of the continuation ``" A"``, ``" B"``, ... Metrics:

* ``accuracy``: argmax of the letter log-likelihoods == answer (lm-eval's ``acc``,
  "temperature 0");
* ``correct_letter_prob``: softmax over the letter log-likelihoods, probability of the correct
  letter, averaged over questions ("temperature 1", what the MUDMAN paper reports for MMLU).

``choice_text``: lm-eval's plain ``multiple_choice`` form (ARC, HellaSwag, SciQ): the prompt is
the question and ``"\\nAnswer:"`` (choices not listed); each choice's score is the summed
log-likelihood of ``" " + choice text``. Small models that cannot map letters to answers still
rank answer texts, so this is where they show a signal. Metrics:

* ``accuracy``: argmax of the summed log-likelihoods (lm-eval's ``acc``);
* ``accuracy_norm``: argmax of log-likelihood / ``len(choice text)`` (lm-eval's ``acc_norm``,
  which counts characters of the choice without the leading space);
* ``correct_choice_prob``: softmax over the choices' summed log-likelihoods, probability of
  the correct choice, averaged over questions.

Both use the context/continuation token split of lm-eval's ``HFLM``.

The evaluator tokenizes and pads everything once, so a trial or sweep can score many models (or
one model many times) without re-tokenizing.
"""

from __future__ import annotations

import inspect
import logging
import random
import string
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from mudman.errors import ConfigError

log = logging.getLogger(__name__)
# The KV-cache keyword of ``forward``: ``cache`` from transformers 5.24 on (the old name still
# works there, with a deprecation warning), ``past_key_values`` before.
_CACHE_KWARGS = ("cache", "past_key_values")

LETTERS = string.ascii_uppercase
SCORINGS = ("letters", "choice_text")
_METRIC_NAMES = {
    "letters": ("accuracy", "correct_letter_prob"),
    "choice_text": ("accuracy", "accuracy_norm", "correct_choice_prob"),
}
MIN_CHOICES, MAX_CHOICES = 2, len(LETTERS)
DEFAULT_SEED = 42
SOURCE_BLOCKS = ("offline", "hub", "local")
# Where transformers configs keep the context window (lm-eval checks the same attributes).
_MAX_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


@dataclass(frozen=True)
class Question:
    """One question with its choices (A, B, ...) and the index of the correct one."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not MIN_CHOICES <= len(self.choices) <= MAX_CHOICES:
            raise ValueError(
                f"{len(self.choices)} choices; want {MIN_CHOICES} to {MAX_CHOICES} (A-Z)"
            )
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"answer={self.answer} is not an index of {len(self.choices)} choices")


def check_scoring(value: Any, key: str = "eval.scoring") -> str:
    """``value`` if it is a known scoring, else a ConfigError naming ``key`` and the choices."""
    if not isinstance(value, str) or value not in SCORINGS:
        raise ConfigError(f"{key}={value!r}; allowed: {', '.join(SCORINGS)}")
    return value


def metric_names(scoring: str) -> tuple[str, ...]:
    """The metric names an evaluator with this ``scoring`` returns (for validating configs)."""
    return _METRIC_NAMES[check_scoring(scoring, "scoring")]


@dataclass
class MultipleChoiceTask:
    """A named list of questions, the description line's template and the scoring."""

    name: str
    questions: list[Question]
    description: str  # may contain {subject}; "" drops the line
    scoring: str = "letters"  # letters | choice_text

    def __post_init__(self) -> None:
        check_scoring(self.scoring, "scoring")


# ------------------------------------------------------------------------------ prompt


def format_description(template: str, subject: str | None) -> str:
    """The description line with ``{subject}`` filled in (underscores become spaces).

    Only the literal ``{subject}`` is replaced, so other braces in a template are kept as-is.
    """
    if not template:
        return ""
    return template.replace("{subject}", (subject or "").replace("_", " "))


def format_prompt(task: MultipleChoiceTask, question: Question) -> str:
    """The 0-shot prompt: description, question, then (``letters`` only) the lettered choices,
    then "Answer:". ``letters`` is lm-eval's MMLU/WMDP template; ``choice_text`` is the plain
    ``{{question}}\\nAnswer:`` of lm-eval's choice-text tasks."""
    lines = [question.question.strip()]
    if task.scoring == "letters":
        lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices)]
    lines.append("Answer:")
    return format_description(task.description, question.subject) + "\n".join(lines)


def continuations(question: Question, scoring: str = "letters") -> list[str]:
    """What is scored after the prompt: lm-eval's target delimiter " " + the letter
    (``letters``) or + the choice text (``choice_text``)."""
    if check_scoring(scoring, "scoring") == "choice_text":
        return [f" {choice}" for choice in question.choices]
    return [f" {LETTERS[i]}" for i in range(len(question.choices))]


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


# ------------------------------------------------------------------------------ metrics


def multiple_choice_metrics(loglik: torch.Tensor, answers: torch.Tensor) -> dict[str, float]:
    """``accuracy`` (argmax, ties -> first choice, as lm-eval's ``np.argmax``) and
    ``correct_letter_prob`` (mean softmax probability of the correct letter)."""
    loglik = loglik.double()
    answers = answers.to(loglik.device)
    accuracy = (loglik.argmax(dim=-1) == answers).double().mean()
    probs = torch.softmax(loglik, dim=-1).gather(1, answers[:, None]).squeeze(1)
    return {"accuracy": float(accuracy), "correct_letter_prob": float(probs.mean())}


def choice_text_metrics(
    loglik: torch.Tensor, answers: torch.Tensor, lengths: torch.Tensor
) -> dict[str, float]:
    """``accuracy`` (argmax of summed log-likelihoods), ``accuracy_norm`` (argmax of
    log-likelihood / choice length, as lm-eval's ``acc_norm``; ``lengths`` [Q, C] are
    ``len(choice)`` in characters, any positive value for missing choices) and
    ``correct_choice_prob`` (mean softmax probability of the correct choice). Ties go to the
    first choice, as with ``np.argmax``."""
    loglik = loglik.double()
    answers = answers.to(loglik.device)
    lengths = lengths.to(loglik.device, torch.float64)
    accuracy = (loglik.argmax(dim=-1) == answers).double().mean()
    accuracy_norm = ((loglik / lengths).argmax(dim=-1) == answers).double().mean()
    probs = torch.softmax(loglik, dim=-1).gather(1, answers[:, None]).squeeze(1)
    return {
        "accuracy": float(accuracy),
        "accuracy_norm": float(accuracy_norm),
        "correct_choice_prob": float(probs.mean()),
    }


# ------------------------------------------------------------------------------ evaluator


@dataclass
class _Batch:
    input_ids: torch.Tensor  # [B, T] left-padded
    attention_mask: torch.Tensor  # [B, T]
    questions: torch.Tensor  # [B] question index of each row
    choices: torch.Tensor  # [B] choice index of each row (general path) / unused (fast path)
    targets: torch.Tensor  # fast: [B, C] letter token ids; general: [B, K] right-aligned tokens
    target_mask: torch.Tensor  # same shape as targets: which entries are real
    keep: int = field(default=1)  # how many final positions' logits are needed


@dataclass
class _PrefixBatch:
    """Questions whose context is run once; each choice's continuation then runs on its cache."""

    context_ids: torch.Tensor  # [Q, T] left-padded
    context_mask: torch.Tensor  # [Q, T]
    questions: torch.Tensor  # [Q] question index of each row
    first_tokens: torch.Tensor  # [Q, C] first continuation token of each choice
    inputs: torch.Tensor  # [Q*C, W] continuation tokens but the last, right-padded
    input_mask: torch.Tensor  # [Q*C, W]
    targets: torch.Tensor  # [Q*C, W] continuation tokens but the first, right-padded
    valid: torch.Tensor  # [Q, C] real choices (questions with fewer choices repeat the first)


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _right_align(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = True
    return ids.to(device), mask.to(device)


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

    The task's ``scoring`` picks prompt, continuations and metrics (see the module docstring).
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
        self.n_tokens = 0  # model input tokens per full pass, for throughput reports
        self._batches = (
            self._fast_batches(encoded) if self.single_token else self._general_batches(encoded)
        )
        self._longest = max(len(ctx) + len(cont) - 1 for pairs in encoded for ctx, cont in pairs)
        # letters keep their one-row-per-choice path exactly; shared prefixes are for choice_text
        shared = self.scoring == "choice_text" and not self.single_token
        self._prefix = self._prefix_batches(encoded) if shared else None
        self.used_shared_prefix = False  # which path the last call took (for reports and tests)
        self._warned_fallback = False

    # -------------------------------------------------------------- batch building (once)

    def _fast_batches(self, encoded: list[list[tuple[list[int], list[int]]]]) -> list[_Batch]:
        rows = []
        for qi, pairs in enumerate(encoded):
            context = pairs[0][0]
            letters = [cont[0] for _, cont in pairs]
            rows.append((context, letters, qi))
        rows.sort(key=lambda r: (-len(r[0]), r[2]))
        batches = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            ids, mask = _left_pad([r[0] for r in chunk], self._pad_id, self.device)
            targets = torch.zeros((len(chunk), self.n_choices), dtype=torch.long)
            target_mask = torch.zeros((len(chunk), self.n_choices), dtype=torch.bool)
            for i, (_, letters, _) in enumerate(chunk):
                targets[i, : len(letters)] = torch.tensor(letters)
                target_mask[i, : len(letters)] = True
            self.n_tokens += int(mask.sum())
            batches.append(
                _Batch(
                    ids,
                    mask,
                    torch.tensor([r[2] for r in chunk]),
                    torch.zeros(len(chunk), dtype=torch.long),
                    targets.to(self.device),
                    target_mask.to(self.device),
                    keep=1,
                )
            )
        return batches

    def _general_batches(self, encoded: list[list[tuple[list[int], list[int]]]]) -> list[_Batch]:
        rows = []
        for qi, pairs in enumerate(encoded):
            for ci, (context, cont) in enumerate(pairs):
                # lm-eval: the input is (context + continuation)[:-1]; the last len(cont)
                # positions predict the continuation tokens.
                rows.append(((context + cont)[:-1], cont, qi, ci))
        rows.sort(key=lambda r: (-len(r[0]), r[2], r[3]))
        batches = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            ids, mask = _left_pad([r[0] for r in chunk], self._pad_id, self.device)
            targets, target_mask = _right_align([r[1] for r in chunk], self.device)
            self.n_tokens += int(mask.sum())
            batches.append(
                _Batch(
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

    def _prefix_batches(self, encoded: list[list[tuple[list[int], list[int]]]]) -> list:
        per_batch = max(1, self.batch_size // self.n_choices)  # rows of the continuation pass
        order = sorted(range(len(encoded)), key=lambda qi: (-len(encoded[qi][0][0]), qi))
        batches = []
        for start in range(0, len(order), per_batch):
            chunk = order[start : start + per_batch]
            ids, mask = _left_pad([encoded[qi][0][0] for qi in chunk], self._pad_id, self.device)
            conts, valid = [], torch.zeros((len(chunk), self.n_choices), dtype=torch.bool)
            for row, qi in enumerate(chunk):
                pairs = encoded[qi]
                valid[row, : len(pairs)] = True
                conts += [cont for _, cont in pairs]
                conts += [pairs[0][1]] * (self.n_choices - len(pairs))
            width = max(len(c) for c in conts) - 1
            inputs = torch.full((len(conts), width), self._pad_id, dtype=torch.long)
            input_mask = torch.zeros((len(conts), width), dtype=torch.long)
            targets = torch.zeros((len(conts), width), dtype=torch.long)
            for i, cont in enumerate(conts):
                n = len(cont) - 1
                inputs[i, :n] = torch.tensor(cont[:-1], dtype=torch.long)
                targets[i, :n] = torch.tensor(cont[1:], dtype=torch.long)
                input_mask[i, :n] = 1
            first = torch.tensor([c[0] for c in conts], dtype=torch.long)
            batches.append(
                _PrefixBatch(
                    ids,
                    mask,
                    torch.tensor(chunk),
                    first.view(len(chunk), self.n_choices).to(self.device),
                    inputs.to(self.device),
                    input_mask.to(self.device),
                    targets.to(self.device),
                    valid,
                )
            )
        return batches

    # -------------------------------------------------------------- scoring

    def _prefix_scores(self, model: Any, batch: _PrefixBatch) -> torch.Tensor | None:
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

    def _forward_logprobs(self, model: Any, batch: _Batch, limit: int | None) -> torch.Tensor:
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


# ------------------------------------------------------------------------------ tasks as data


def _source_block(spec: DictConfig, key: str) -> tuple[DictConfig, str]:
    """The block to load from: ``spec[spec.source]`` (offline | hub | local), or ``spec`` itself
    when it is a bare source (has ``kind``)."""
    if spec.get("source") is None:
        if spec.get("kind") is not None:
            return spec, key
        raise ConfigError(f"{key} sets neither source (one of {', '.join(SOURCE_BLOCKS)}) nor kind")
    choice = spec.source
    available = [name for name in SOURCE_BLOCKS if spec.get(name) is not None]
    if choice not in SOURCE_BLOCKS or spec.get(choice) is None:
        raise ConfigError(
            f"{key}.source={choice!r} is not available for {key}={spec.get('name', key)}; "
            f"allowed: {', '.join(available) or 'none (the task defines no source block)'}"
        )
    return spec[choice], f"{key}.{choice}"


def _subject_list(spec: DictConfig, key: str, which: str) -> list[str] | None:
    value = (spec.get("subjects") or {}).get(which)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple | ListConfig):
        raise ConfigError(f"{key}.subjects.{which}={value!r}: want a list of subject names")
    return [str(v) for v in value]


def filter_subjects(
    questions: list[Question],
    include: list[str] | None,
    exclude: list[str] | None,
    key: str = "eval",
) -> list[Question]:
    """Keep the ``include`` subjects (all if None), then drop the ``exclude`` ones.

    Unknown subject names fail, listing what the data holds: a typo must not silently keep or
    drop nothing.
    """
    if include is None and exclude is None:
        return questions
    present = sorted({q.subject for q in questions if q.subject is not None})
    if not present:
        raise ConfigError(f"{key}.subjects is set but the questions have no subject field")
    for which, names in (("include", include), ("exclude", exclude)):
        unknown = [n for n in names or [] if n not in present]
        if unknown:
            raise ConfigError(
                f"{key}.subjects.{which}: unknown subject(s) {unknown}; "
                f"allowed: {', '.join(present)}"
            )
    kept = [q for q in questions if include is None or q.subject in include]
    return [q for q in kept if exclude is None or q.subject not in exclude]


def subsample(questions: list[Question], limit: int | None, seed: int) -> list[Question]:
    """A seeded subsample of ``limit`` questions in their original order (all if None or
    ``limit >= len``); the same seed gives the same questions on every call and machine."""
    if limit is None or limit >= len(questions):
        return list(questions)
    picked = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in picked]


def _optional_int(spec: DictConfig, key: str, name: str, default: int | None, minimum: int):
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}.{name}={value!r}: want an integer >= {minimum} (or null)")
    return value


def load_task(spec: DictConfig, cache_dir: str | None, key: str = "eval") -> MultipleChoiceTask:
    """Build a task from one conf/eval/<name>.yaml block (source kinds hf | jsonl | asset |
    go_terms), apply subject include/exclude filters, then a seeded subsample of ``limit``;
    ``scoring`` (letters | choice_text, default letters) is checked here, before any model."""
    from mudman.evaluation.mc_sources import MC_SOURCES

    if not isinstance(spec, DictConfig):
        spec = OmegaConf.create(spec)
    name = str(spec.get("name") or key)
    block, block_key = _source_block(spec, key)
    kind = block.get("kind")
    questions = MC_SOURCES.get(str(kind), f"{block_key}.kind")(block, block_key, cache_dir)
    if not questions:
        raise ConfigError(f"{block_key}: the source holds no questions")
    questions = filter_subjects(
        questions,
        _subject_list(spec, key, "include"),
        _subject_list(spec, key, "exclude"),
        key,
    )
    if not questions:
        raise ConfigError(f"{key}.subjects: the filters leave no questions")
    limit = _optional_int(spec, key, "limit", None, 1)
    seed = _optional_int(spec, key, "seed", DEFAULT_SEED, 0)
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{key}.description={description!r}: want a string ('' for none)")
    if "{subject}" in description and any(q.subject is None for q in questions):
        raise ConfigError(
            f"{key}.description uses {{subject}} but some questions have no subject; "
            "set a description without {subject} or add a subject field"
        )
    scoring = check_scoring(spec.get("scoring", "letters"), f"{key}.scoring")
    return MultipleChoiceTask(
        name,
        subsample(questions, limit, DEFAULT_SEED if seed is None else seed),
        description,
        scoring,
    )
