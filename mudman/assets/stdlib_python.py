"""Python functions from the running interpreter's standard library, as a code corpus.

Real code that is on every machine and needs no download: every ``def``/``async def`` (methods and
nested functions included) of the stdlib outside its test folders, with docstrings, comments and
blank lines removed, dedented, at least three lines long and deduplicated by exact text.

Choices, so that the corpus stays valid Python and is reproducible:
  * decorators are kept (the text starts at the first ``@`` line); ``source`` is the path relative
    to the stdlib root and the line where the text starts;
  * a docstring that is the only statement of its body becomes ``pass`` (so the code still parses);
  * comments are found with ``tokenize``, so a ``#`` inside a string is never touched, and blank
    lines or trailing spaces that belong to a multi-line string are kept;
  * dedenting removes the ``def`` line's indentation from every line except lines that start
    inside a multi-line string, whose content is left exactly as written.
"""

from __future__ import annotations

import ast
import io
import json
import platform
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RECIPE = 1
OUTPUT_FILE = "functions.jsonl"
LICENCE = "PSF-2.0"
MIN_LINES = 3
# Directory names that hold tests (test, tests, idlelib/idle_test, lib2to3/tests, ...) or
# third-party code, none of which is "the standard library".
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)

_FUNC_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def default_stdlib_root() -> Path:
    """The stdlib directory of the interpreter running this code."""
    return Path(sysconfig.get_paths()["stdlib"])


def _normalize_newlines(source: str) -> str:
    return source.replace("\r\n", "\n").replace("\r", "\n")


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. are not our business
        return ast.parse(source)


def _walk_statements(node: ast.AST) -> Iterator[ast.AST]:
    """Every statement under ``node`` (and ``node``); defs and classes are always statements, so
    skipping expressions makes this much faster than ``ast.walk``."""
    yield node
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, ()) or ():
            if isinstance(child, ast.AST):
                yield from _walk_statements(child)


def _char_col(line: str, byte_col: int) -> int:
    """ast column offsets count UTF-8 bytes; string slicing needs characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))


def _scan(source: str) -> tuple[dict[int, int], set[int], set[int]]:
    """One tokenize pass: comment column per row (1-based), rows whose line end lies inside a
    string, and rows that start inside a string."""
    comment_cols: dict[int, int] = {}
    ends_inside: set[int] = set()
    starts_inside: set[int] = set()
    fstring_starts: list[int] = []
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)

    def mark(first: int, last: int) -> None:
        ends_inside.update(range(first, last))
        starts_inside.update(range(first + 1, last + 1))

    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            comment_cols[row] = min(col, comment_cols.get(row, col))
        elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            mark(tok.start[0], tok.end[0])
        elif fstring_start is not None and tok.type == fstring_start:
            fstring_starts.append(tok.start[0])
        elif fstring_end is not None and tok.type == fstring_end and fstring_starts:
            first = fstring_starts.pop()
            if tok.end[0] > first:
                mark(first, tok.end[0])
    return comment_cols, ends_inside, starts_inside


def _remove_docstrings(source: str) -> str:
    tree = _parse(source)
    lines = source.split("\n")
    spans = []
    for owner in _walk_statements(tree):
        if not isinstance(owner, _DOC_OWNERS) or not owner.body:
            continue
        first = owner.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            sole = len(owner.body) == 1 and not isinstance(owner, ast.Module)
            spans.append((first, sole))
    # Replace from the bottom up so earlier positions stay valid.
    spans.sort(key=lambda item: (item[0].lineno, item[0].col_offset), reverse=True)
    for node, sole in spans:
        assert node.end_lineno is not None and node.end_col_offset is not None
        first_row, last_row = node.lineno - 1, node.end_lineno - 1
        start = _char_col(lines[first_row], node.col_offset)
        end = _char_col(lines[last_row], node.end_col_offset)
        prefix, suffix = lines[first_row][:start], lines[last_row][end:]
        if suffix.lstrip().startswith(";"):  # "doc"; more code -> more code
            suffix = suffix.lstrip()[1:].lstrip()
        lines[first_row : last_row + 1] = [prefix + ("pass" if sole else "") + suffix]
    return "\n".join(lines)


def strip_docstrings_and_comments(source: str) -> str:
    """Source without docstrings (module, classes, functions, nested), comments or blank lines.

    Lines that belong to a multi-line string are preserved byte for byte. Raises SyntaxError if
    ``source`` is not valid Python (it must parse as a module, i.e. be dedented).
    """
    text = _remove_docstrings(_normalize_newlines(source))
    comment_cols, ends_inside, _ = _scan(text)
    out = []
    for row, line in enumerate(text.split("\n"), start=1):
        if row in comment_cols:
            line = line[: comment_cols[row]]
        if row in ends_inside:
            out.append(line)
            continue
        line = line.rstrip()
        if line.strip():
            out.append(line)
    return "\n".join(out)


def _extract(source: str, min_lines: int) -> list[tuple[int, str]]:
    """(first line, cleaned text) of every function in ``source``, in source order."""
    source = _normalize_newlines(source)
    tree = _parse(source)
    lines = source.split("\n")
    _, _, starts_inside = _scan(source)
    nodes = sorted(
        (n for n in _walk_statements(tree) if isinstance(n, _FUNC_TYPES)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    results = []
    for node in nodes:
        assert node.end_lineno is not None
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        def_line = lines[node.lineno - 1]
        indent = def_line[: len(def_line) - len(def_line.lstrip())]
        segment = []
        for row in range(first, node.end_lineno + 1):
            line = lines[row - 1]
            if row not in starts_inside and line.startswith(indent):
                line = line[len(indent) :]
            segment.append(line)
        try:
            text = strip_docstrings_and_comments("\n".join(segment))
        except (SyntaxError, tokenize.TokenError):
            continue  # odd indentation we cannot dedent safely; skip rather than emit junk
        if text.count("\n") + 1 >= min_lines:
            results.append((first, text))
    return results


def extract_functions(source: str, min_lines: int = MIN_LINES) -> list[str]:
    """Cleaned, dedented text of each function in ``source`` (>= ``min_lines``, no repeats)."""
    seen: set[str] = set()
    texts = []
    for _, text in _extract(source, min_lines):
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def iter_source_files(root: Path) -> Iterator[Path]:
    """``.py`` files under ``root`` outside test/third-party folders, sorted by relative path."""
    files = [
        path
        for path in root.rglob("*.py")
        if path.is_file() and not EXCLUDED_DIRS.intersection(path.relative_to(root).parts[:-1])
    ]
    yield from sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_source(path: Path) -> str:
    with open(path, "rb") as fh:
        encoding, _ = tokenize.detect_encoding(fh.readline)
    return path.read_bytes().decode(encoding)


def collect_functions(root: Path, min_lines: int = MIN_LINES) -> tuple[list[dict[str, str]], dict]:
    """All records ``{"text", "source"}`` under ``root`` (deduplicated) plus file statistics."""
    seen: set[str] = set()
    records: list[dict[str, str]] = []
    stats = {"files_scanned": 0, "files_skipped": 0, "duplicates_dropped": 0}
    for path in iter_source_files(root):
        rel = path.relative_to(root).as_posix()
        stats["files_scanned"] += 1
        try:
            found = _extract(_read_source(path), min_lines)
        except (SyntaxError, UnicodeDecodeError, ValueError, tokenize.TokenError):
            stats["files_skipped"] += 1
            continue
        for line, text in found:
            if text in seen:
                stats["duplicates_dropped"] += 1
                continue
            seen.add(text)
            records.append({"text": text, "source": f"{rel}:{line}"})
    return records, stats


def asset_key(stdlib_root: Path | None = None) -> dict[str, Any]:
    """What the asset depends on: recipe, interpreter version and the stdlib root."""
    root = Path(stdlib_root) if stdlib_root is not None else default_stdlib_root()
    return {"recipe": RECIPE, "python": platform.python_version(), "stdlib_root": str(root)}


def build(out_dir: Path, downloads: Path, stdlib_root: Path | None = None) -> dict[str, Any]:
    """Write ``functions.jsonl`` into ``out_dir``; returns the manifest fields."""
    del downloads  # nothing to download: the corpus is the interpreter's own stdlib
    root = Path(stdlib_root) if stdlib_root is not None else default_stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"stdlib root {root} is not a directory")
    records, stats = collect_functions(root)
    with open(out_dir / OUTPUT_FILE, "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "source": {
            "what": "CPython standard library of the interpreter that ran the prep",
            "stdlib_root": str(root),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "excluded_dirs": sorted(EXCLUDED_DIRS),
        },
        "licence": LICENCE,
        "counts": {
            "functions": len(records),
            "lines": sum(r["text"].count("\n") + 1 for r in records),
            "characters": sum(len(r["text"]) for r in records),
            **stats,
        },
    }
