"""The data model of multiple-choice evaluation: a question, a task, and how a task is scored.

A task is a named list of questions, the description line put above each one and its
``scoring``: ``letters`` (lm-eval's MMLU/WMDP form: the choices are listed as ``A. ...`` and the
letters are scored) or ``choice_text`` (lm-eval's plain ``multiple_choice`` form: each choice's
own text is scored). ``tasks.py`` builds tasks from ``conf/eval/``; ``mc_sources.py`` reads the
questions.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from mudman.errors import ConfigError

LETTERS = string.ascii_uppercase
SCORINGS = ("letters", "choice_text")
MIN_CHOICES, MAX_CHOICES = 2, len(LETTERS)


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


@dataclass
class MultipleChoiceTask:
    """A named list of questions, the description line's template and the scoring."""

    name: str
    questions: list[Question]
    description: str  # may contain {subject}; "" drops the line
    scoring: str = "letters"  # letters | choice_text

    def __post_init__(self) -> None:
        check_scoring(self.scoring, "scoring")
