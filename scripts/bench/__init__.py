"""The benchmarks, one module each: ``python -m scripts.bench <name> [args]`` (docs/scripts.md).

Every module has a one-line docstring summary (what ``--help`` lists) and ``main(argv)``;
shared helpers live in :mod:`scripts.bench.common`.
"""
