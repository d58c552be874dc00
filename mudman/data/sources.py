"""Where texts come from: a Hub dataset (or a local copy in the Hub's layout), a JSONL file,
or an offline asset prepared by ``make assets``. Each kind is one registered loader."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from mudman.errors import ConfigError
from mudman.registry import Registry

SourceLoader = Callable[[DictConfig, str, "str | None"], list[str]]
SOURCES: Registry[SourceLoader] = Registry("text source kind")


def read_jsonl_rows(path: Path, key: str) -> list[dict]:
    """Rows of a JSONL file: a clear error for a missing, empty or malformed file."""
    return [row for _, row in read_jsonl_lines(path, key)]


def read_jsonl_lines(path: Path, key: str) -> list[tuple[int, dict]]:
    """``(line number, row)`` of every non-blank line; invalid UTF-8, invalid JSON or a
    non-object fail with the file, the line and what is allowed."""
    if not path.is_file():
        raise ConfigError(f"{key}.path={str(path)!r}: file not found")
    rows = []
    where = f"{key}.path={str(path)!r}"
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(
                    f"{where} line {lineno}: not valid UTF-8 (byte {raw[err.start]:#04x} at "
                    f"column {err.start + 1}); allowed: UTF-8 text, one JSON object per line"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{where} line {lineno}: not JSON ({err})") from err
            if not isinstance(row, dict):
                raise ConfigError(f"{where} line {lineno}: not a JSON object")
            rows.append((lineno, row))
    if not rows:
        raise ConfigError(f"{where} is empty")
    return rows


def select_rows(rows: list[dict], spec: DictConfig, key: str) -> list[dict]:
    """Keep rows whose fields equal ``filter`` values and drop those listed in ``exclude``.

    ``filter: {split: train}`` keeps one split; ``exclude: {title: [Algae, Anatomy]}`` drops
    named rows (e.g. biology articles from a "non-biology English" retain set).
    """
    for kind in ("filter", "exclude"):
        for column in spec.get(kind) or {}:
            if rows and column not in rows[0]:
                raise ConfigError(
                    f"{key}.{kind}: field {column!r} is not in the rows; fields: {sorted(rows[0])}"
                )
    for column, wanted in (spec.get("filter") or {}).items():
        rows = [row for row in rows if row.get(column) == wanted]
    for column, unwanted in (spec.get("exclude") or {}).items():
        drop = set(unwanted)
        rows = [row for row in rows if row.get(column) not in drop]
    if not rows:
        raise ConfigError(f"{key}: no rows left after filter/exclude")
    return rows


def row_texts(
    rows: list[dict], spec: DictConfig, key: str, path: Path, lines: list[int] | None = None
) -> list[str]:
    """One text per row: ``spec.template`` (``"{term}: {text}"``) or the field ``spec.field``,
    which must be a string (a null or a number is refused, never trained on as "None" or
    digits); ``lines`` are the rows' line numbers in the file, for the messages."""
    template = spec.get("template")
    field = spec.get("field", "text")
    texts = []
    for number, row in enumerate(rows, 1):
        where = f"{key}.path={str(path)!r} line {lines[number - 1] if lines else number}"
        try:
            if template:
                nulls = [k for k, v in row.items() if v is None and "{" + k in template]
                if nulls:
                    raise ConfigError(
                        f"{where}: field {nulls[0]!r} is null; allowed: a value for every "
                        f"field of {key}.template={template!r}"
                    )
                texts.append(template.format(**row))
                continue
            value = row[field]
        except KeyError as err:
            what = (
                f"{key}.template={template!r} needs field "
                if template
                else f"no field {key}.field="
            )
            raise ConfigError(f"{where}: {what}{err}; fields: {sorted(row)}") from None
        if not isinstance(value, str):
            shown = "null" if value is None else f"a {type(value).__name__} ({value!r:.40})"
            raise ConfigError(f"{where}: field {field!r} is {shown}; allowed: a string")
        texts.append(value)
    return texts


def _read_jsonl(path: Path, spec: DictConfig, key: str) -> list[str]:
    numbered = read_jsonl_lines(path, key)
    line_of = {id(row): line for line, row in numbered}
    rows = select_rows([row for _, row in numbered], spec, key)
    texts = row_texts(rows, spec, key, path, [line_of[id(row)] for row in rows])
    limit = spec.get("max_texts")
    return texts[:limit] if limit else texts


@SOURCES.register("jsonl")
def load_jsonl(spec: DictConfig, key: str, cache_dir: str | None) -> list[str]:
    """A user's own file: one JSON object per line, text in ``spec.field`` (default ``text``)."""
    return _read_jsonl(Path(spec.path).expanduser(), spec, key)


@SOURCES.register("asset")
def load_asset(spec: DictConfig, key: str, cache_dir: str | None) -> list[str]:
    """An offline asset (real text shipped in PyPI wheels), prepared once by ``make assets``."""
    from mudman.assets import require_asset

    directory = require_asset(spec.asset, cache_dir)
    return _read_jsonl(directory / spec.file, spec, key)


@SOURCES.register("hf")
def load_hf(spec: DictConfig, key: str, cache_dir: str | None) -> list[str]:
    """A Hugging Face dataset by Hub id, or a local directory/file in the same schema."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            spec.path, spec.get("name"), split=spec.get("split", "train")
        )
    except Exception as err:  # datasets raises many types for "not reachable / not found"
        raise ConfigError(
            f"{key}: could not load dataset {spec.path!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Offline? Use data.source=offline "
            "or point the path at a local copy."
        ) from err
    field = spec.get("field", "text")
    if field not in dataset.column_names:
        raise ConfigError(
            f"{key}.field={field!r} is not a column of {spec.path!r}; "
            f"columns: {dataset.column_names}"
        )
    for column, wanted in (spec.get("filter") or {}).items():
        dataset = dataset.filter(lambda row, c=column, w=wanted: row[c] == w)
    limit = spec.get("max_texts")
    texts = []
    for text in dataset[field]:
        if text and text.strip():
            texts.append(text)
            if limit and len(texts) >= limit:
                break
    return texts


def load_texts(spec: DictConfig, key: str, cache_dir: str | None = None) -> list[str]:
    """Load raw texts for one side (forget or retain) and apply its preprocessors in order."""
    from mudman.data.preprocess import PREPROCESSORS

    texts = SOURCES.get(spec.kind, f"{key}.kind")(spec, key, cache_dir)
    for name in spec.get("preprocess") or []:
        texts = PREPROCESSORS.get(name, f"{key}.preprocess")(texts)
    return texts
