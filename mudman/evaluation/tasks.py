"""Tasks as data: one ``conf/eval/<name>.yaml`` block becomes a :class:`MultipleChoiceTask`.

A block names where the questions come from (a ``source`` block: ``offline``, ``hub`` or
``local``, each with a ``kind`` of ``mc_sources.py``), which subjects to keep, a seeded
subsample, the description line and the ``scoring``. Everything is checked here, before any
model loads; bad input fails with a ``ConfigError`` naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import random

from omegaconf import DictConfig, ListConfig, OmegaConf

from mudman.errors import ConfigError
from mudman.evaluation.mc_sources import MC_SOURCES
from mudman.evaluation.questions import MultipleChoiceTask, Question, check_scoring

DEFAULT_SEED = 42
SOURCE_BLOCKS = ("offline", "hub", "local")


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
