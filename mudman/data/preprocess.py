"""Text preprocessors named in data configs (``preprocess: [strip_python, paragraphs]``)."""

from __future__ import annotations

import re
from collections.abc import Callable

from mudman.registry import Registry

Preprocessor = Callable[[list[str]], list[str]]
PREPROCESSORS: Registry[Preprocessor] = Registry("text preprocessor")

_TRIPLE_QUOTED = re.compile(r'("""|\'\'\')[\s\S]*?\1')
_COMMENT = re.compile(r"(?m)#.*$")


def _strip_python_regex(code: str) -> str:
    """Fallback for code the ast cannot parse (e.g. Python 2 in CodeSearchNet)."""
    code = _TRIPLE_QUOTED.sub("", code)
    code = _COMMENT.sub("", code)
    return "\n".join(line.rstrip() for line in code.splitlines() if line.strip())


@PREPROCESSORS.register("strip_python")
def strip_python(texts: list[str]) -> list[str]:
    """Remove docstrings, comments and blank lines so unlearning Python spares English."""
    from mudman.assets.stdlib_python import strip_docstrings_and_comments

    out = []
    for code in texts:
        try:
            out.append(strip_docstrings_and_comments(code))
        except (SyntaxError, ValueError, IndentationError):
            out.append(_strip_python_regex(code))
    return out


@PREPROCESSORS.register("paragraphs")
def paragraphs(texts: list[str]) -> list[str]:
    """Split articles into paragraphs (blank-line separated): one example per paragraph."""
    return [p.strip() for text in texts for p in re.split(r"\n\s*\n", text) if p.strip()]


@PREPROCESSORS.register("strip")
def strip(texts: list[str]) -> list[str]:
    """Trim whitespace and drop empty rows (WikiText has many)."""
    return [t.strip() for t in texts if t.strip()]


PACK_CHARS = 1000


@PREPROCESSORS.register("pack")
def pack(texts: list[str]) -> list[str]:
    """Join consecutive short texts (blank-line separated) into examples of >= 1000 characters.

    Gene Ontology definitions average ~50 tokens, so most would be dropped by the exactly-N-token
    rule; packed in order they become ~250-token documents, like Pile-Bio chunks. The order is
    the corpus order, so packing is deterministic.
    """
    packed, current, size = [], [], 0
    for text in texts:
        text = text.strip()
        if not text:
            continue
        current.append(text)
        size += len(text) + 2
        if size >= PACK_CHARS:
            packed.append("\n\n".join(current))
            current, size = [], 0
    if current:
        packed.append("\n\n".join(current))
    return packed
