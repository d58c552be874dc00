"""Where multiple-choice questions come from; each source kind is one registered loader.

* ``hf``: a Hugging Face dataset by Hub id (``cais/mmlu``, ``cais/wmdp``), or a local directory
  or file in the same schema, all through ``datasets.load_dataset``;
* ``jsonl``: your own file, one JSON object per line;
* ``asset``: a JSONL file in an offline asset (``mmlu`` from ``make assets``);
* ``go_terms``: "which Gene Ontology term has this definition?", built deterministically from
  the held-out split of the ``go-definitions`` asset.

Rows use the Hub's schema (``question``, ``choices`` list, ``answer`` index, optional
``subject``); ``fields`` renames them. Bad rows fail with a ``ConfigError`` naming the key, the
value and what is allowed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mudman.data.sources import read_jsonl_rows
from mudman.errors import ConfigError
from mudman.evaluation.questions import LETTERS, MAX_CHOICES, MIN_CHOICES, Question
from mudman.registry import Registry

McLoader = Callable[[DictConfig, str, "str | None"], list[Question]]
MC_SOURCES: Registry[McLoader] = Registry("multiple-choice source kind")
FIELD_DEFAULTS = {
    "question": "question",
    "choices": "choices",
    "answer": "answer",
    "subject": "subject",
}
GO_QUESTION = "Which Gene Ontology term has this definition?\n{definition}"
GO_ONTOLOGIES = {"BP": "biological_process", "MF": "molecular_function", "CC": "cellular_component"}
_DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _fields(spec: DictConfig, key: str) -> dict[str, str]:
    given = spec.get("fields") or {}
    unknown = sorted(set(given) - set(FIELD_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{key}.fields has unknown key(s) {unknown}; allowed: {', '.join(FIELD_DEFAULTS)}"
        )
    return {**FIELD_DEFAULTS, **{k: str(v) for k, v in given.items()}}


def _answer_index(value: Any, n_choices: int, where: str) -> int:
    """An int index, or a letter ("B") for hand-written files."""
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        value = LETTERS.index(value.strip().upper())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: answer={value!r}; want an integer index (or a letter A-Z)")
    if not 0 <= value < n_choices:
        raise ConfigError(
            f"{where}: answer={value} is out of range; allowed: 0..{n_choices - 1} "
            f"({n_choices} choices)"
        )
    return value


def row_to_question(row: Any, fields: dict[str, str], where: str) -> Question:
    """Validate one row and turn it into a ``Question``."""
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: want a JSON object, got {type(row).__name__}")
    missing = [fields[f] for f in ("question", "choices", "answer") if fields[f] not in row]
    if missing:
        raise ConfigError(
            f"{where}: missing field(s) {missing}; a row needs question (str), choices (list of "
            f"{MIN_CHOICES}-{MAX_CHOICES} str), answer (index); has {sorted(row)}"
        )
    question, choices = row[fields["question"]], row[fields["choices"]]
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"{where}: {fields['question']}={question!r}; want a non-empty string")
    if (
        not isinstance(choices, list | tuple)
        or not MIN_CHOICES <= len(choices) <= MAX_CHOICES
        or not all(isinstance(c, str) for c in choices)
    ):
        raise ConfigError(
            f"{where}: {fields['choices']}={choices!r}; want a list of {MIN_CHOICES}-"
            f"{MAX_CHOICES} strings"
        )
    answer = _answer_index(row[fields["answer"]], len(choices), where)
    subject = row.get(fields["subject"])
    return Question(question, tuple(choices), answer, None if subject is None else str(subject))


def rows_to_questions(rows: Iterable[Any], spec: DictConfig, where: str) -> list[Question]:
    """Validate every row (``where`` names the file or dataset in messages)."""
    fields = _fields(spec, where)
    return [row_to_question(row, fields, f"{where} row {i}") for i, row in enumerate(rows, 1)]


def _required_path(spec: DictConfig, key: str) -> Path:
    if OmegaConf.is_missing(spec, "path") or not spec.get("path"):
        raise ConfigError(f"{key}.path is required (a JSONL file with question/choices/answer)")
    return Path(str(spec.path)).expanduser()


@MC_SOURCES.register("jsonl")
def load_jsonl(spec: DictConfig, key: str, cache_dir: str | None) -> list[Question]:
    """Your own file: one JSON object per line with question, choices, answer (, subject)."""
    path = _required_path(spec, key)
    _fields(spec, key)  # a bad `fields` key fails before the file is read
    return rows_to_questions(read_jsonl_rows(path, key), spec, f"{key}.path={str(path)!r}")


@MC_SOURCES.register("asset")
def load_asset(spec: DictConfig, key: str, cache_dir: str | None) -> list[Question]:
    """A JSONL file inside an offline asset (``make assets``), already in the Hub's schema."""
    from mudman.assets import require_asset

    path = require_asset(spec.asset, cache_dir) / spec.file
    return rows_to_questions(read_jsonl_rows(path, key), spec, f"{key} ({path})")


@MC_SOURCES.register("hf")
def load_hf(spec: DictConfig, key: str, cache_dir: str | None) -> list[Question]:
    """A Hub dataset, or a local copy in the Hub's layout (directory, or one data file)."""
    import datasets

    location = str(spec.path)
    split = spec.get("split", "test")
    local = Path(location).expanduser()
    looks_local = location.startswith(("/", ".", "~")) or local.exists()
    if looks_local and not local.exists():
        raise ConfigError(f"{key}.path={location!r}: no such file or directory")
    try:
        if local.is_file():
            builder = _DATA_FILE_BUILDERS.get(local.suffix)
            if builder is None:
                raise ConfigError(
                    f"{key}.path={location!r}: unknown data file type; allowed: "
                    f"{', '.join(_DATA_FILE_BUILDERS)} (or a directory)"
                )
            dataset = datasets.load_dataset(builder, data_files={split: str(local)}, split=split)
        else:
            dataset = datasets.load_dataset(
                str(local) if looks_local else location, spec.get("name"), split=split
            )
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many types for "not reachable / not found"
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(
            f"{key}: could not load dataset {location!r} (name={spec.get('name')!r}, "
            f"split={split!r}; {type(err).__name__}: {first}). Offline? Use the task's "
            "offline source (source=offline) or point path at a local copy."
        ) from err
    fields = _fields(spec, key)
    needed = [fields[f] for f in ("question", "choices", "answer")]
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise ConfigError(
            f"{key}: dataset {location!r} lacks column(s) {missing}; columns: "
            f"{dataset.column_names} (rename with {key}.fields)"
        )
    return rows_to_questions(dataset.to_list(), spec, f"{key} ({location})")


# ------------------------------------------------------------------------------ GO terms


def build_go_term_rows(
    definitions: Iterable[dict[str, Any]], seed: int = 0, n_choices: int = 4
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Definition -> term questions from the ``heldout`` split only, in go_id order.

    The three distractors are other held-out terms of the same ontology, drawn with a
    ``Random(f"{seed}:{go_id}")`` of their own (so one question does not depend on the others),
    which also places the correct term. Held-out definitions whose text also occurs in the
    train split are dropped, so nothing asked was seen in unlearning/relearning text (which uses
    ``split == "train"``). The subject is the ontology (``biological_process`` ...).
    """
    rows = list(definitions)
    train_texts = {r["text"] for r in rows if r.get("split") == "train"}
    heldout = sorted((r for r in rows if r.get("split") == "heldout"), key=lambda r: r["go_id"])
    stats = {"heldout": len(heldout), "dropped_seen_in_train": 0, "dropped_few_terms": 0}
    kept = []
    for row in heldout:
        if row["text"] in train_texts:
            stats["dropped_seen_in_train"] += 1
        else:
            kept.append(row)
    terms: dict[str, list[str]] = {}
    for row in kept:
        terms.setdefault(row["ontology"], [])
        if row["term"] not in terms[row["ontology"]]:
            terms[row["ontology"]].append(row["term"])
    questions = []
    for row in kept:
        rng = random.Random(f"{seed}:{row['go_id']}")
        pool = [t for t in terms[row["ontology"]] if t.lower() != row["term"].lower()]
        if len(pool) < n_choices - 1:
            stats["dropped_few_terms"] += 1
            continue
        choices = rng.sample(pool, n_choices - 1)
        answer = rng.randrange(n_choices)
        choices.insert(answer, row["term"])
        questions.append(
            {
                "question": GO_QUESTION.format(definition=row["text"].strip()),
                "choices": choices,
                "answer": answer,
                "subject": GO_ONTOLOGIES.get(row["ontology"], str(row["ontology"])),
                "go_id": row["go_id"],
            }
        )
    stats["questions"] = len(questions)
    return questions, stats


@MC_SOURCES.register("go_terms")
def load_go_terms(spec: DictConfig, key: str, cache_dir: str | None) -> list[Question]:
    """GO definition -> term questions from ``path`` (a definitions.jsonl in the
    ``go-definitions`` schema) or, by default, the ``go-definitions`` asset."""
    if spec.get("path"):
        path = Path(str(spec.path)).expanduser()
    else:
        from mudman.assets import require_asset

        path = require_asset(spec.get("asset", "go-definitions"), cache_dir) / spec.get(
            "file", "definitions.jsonl"
        )
    definitions = read_jsonl_rows(path, key)
    needed = ("go_id", "term", "ontology", "text", "split")
    for i, row in enumerate(definitions, 1):
        if not isinstance(row, dict) or any(f not in row for f in needed):
            raise ConfigError(
                f"{key} ({path}) row {i}: want the go-definitions schema with fields {list(needed)}"
            )
    seed = spec.get("distractor_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{key}.distractor_seed={seed!r}: want an integer")
    rows, _ = build_go_term_rows(definitions, seed=seed)
    if not rows:
        raise ConfigError(f"{key} ({path}): no held-out definitions to build questions from")
    return rows_to_questions(rows, OmegaConf.create({}), f"{key} ({path})")
