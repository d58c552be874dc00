"""What the model reads and what is scored after it, as lm-evaluation-harness writes them (0-shot).

``letters`` (lm-eval's MMLU/WMDP template): the description, the question, the choices as
``A. ...`` lines and ``Answer:``; each choice's continuation is ``" A"``, ``" B"``, ...

``choice_text`` (lm-eval's plain ``multiple_choice`` form, as in ARC, HellaSwag, SciQ): the
description, the question and ``Answer:`` (choices not listed); each choice's continuation is
``" " + choice text``. Small models that cannot map letters to answers still rank answer texts,
so this is where they show a signal.
"""

from __future__ import annotations

from mudman.evaluation.questions import LETTERS, MultipleChoiceTask, Question, check_scoring


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
