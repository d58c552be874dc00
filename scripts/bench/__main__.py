"""``python -m scripts.bench <name> [args]``: run one benchmark; ``--help`` lists them all.

Each benchmark is a module of this package; ``python -m scripts.bench <name> --help`` gives its
own options. Run from the repository root (docs/scripts.md).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

BENCHMARKS = (
    "trial",
    "precision",
    "threads",
    "relearn_grads",
    "before_after",
    "startup",
    "sweep",
    "gpu",
    "tar_representation",
)


def summary(name: str) -> str:
    """The first line of a benchmark's docstring, read without importing it (torch is slow)."""
    origin = importlib.util.find_spec(f"scripts.bench.{name}").origin
    docstring = ast.get_docstring(ast.parse(Path(origin).read_text())) or ""
    return docstring.splitlines()[0] if docstring else ""


def usage() -> str:
    lines = ["usage: python -m scripts.bench <name> [args]   (<name> --help: its options)", ""]
    lines += [f"  {name:<20} {summary(name)}" for name in BENCHMARKS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``scripts.bench.<name>.main``; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"scripts.bench.{name}")
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
