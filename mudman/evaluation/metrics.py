"""The metrics of a task from the log-likelihood of every choice, as lm-evaluation-harness's.

``letters``: ``accuracy`` (argmax of the letter log-likelihoods == answer, lm-eval's ``acc``,
"temperature 0") and ``correct_letter_prob`` (softmax over the letter log-likelihoods, the
probability of the correct letter averaged over questions: "temperature 1", what the MUDMAN
paper reports for MMLU).

``choice_text``: ``accuracy`` (argmax of the summed log-likelihoods, lm-eval's ``acc``),
``accuracy_norm`` (argmax of log-likelihood / ``len(choice text)``, lm-eval's ``acc_norm``, which
counts characters of the choice without the leading space) and ``correct_choice_prob`` (softmax
over the choices' summed log-likelihoods, the probability of the correct choice averaged over
questions).
"""

from __future__ import annotations

import torch

from mudman.evaluation.questions import check_scoring

_METRIC_NAMES = {
    "letters": ("accuracy", "correct_letter_prob"),
    "choice_text": ("accuracy", "accuracy_norm", "correct_choice_prob"),
}


def metric_names(scoring: str) -> tuple[str, ...]:
    """The metric names an evaluator with this ``scoring`` returns (for validating configs)."""
    return _METRIC_NAMES[check_scoring(scoring, "scoring")]


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
