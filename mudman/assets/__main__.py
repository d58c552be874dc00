"""Command line: ``python -m mudman.assets [--only NAME]... [--force] [--cache-dir DIR] [--list]``.

Prints one line per asset with its status and the time taken; exit code 1 if any asset failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence

from mudman.assets.prepare import asset_status, prepare_one
from mudman.assets.store import ASSET_NAMES, asset_path, resolve_cache_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mudman.assets",
        description="Prepare the real offline assets (idempotent, checksum-verified).",
    )
    parser.add_argument(
        "--cache-dir", help="cache root (default: $MUDMAN_CACHE or ~/.cache/mudman)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached and intact")
    parser.add_argument(
        "--only",
        action="append",
        choices=ASSET_NAMES,
        metavar="NAME",
        help=f"prepare only this asset (repeatable): {', '.join(ASSET_NAMES)}",
    )
    parser.add_argument("--list", action="store_true", help="show each asset's status and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    cache = resolve_cache_dir(args.cache_dir)
    names = list(dict.fromkeys(args.only)) if args.only else list(ASSET_NAMES)
    if args.list:
        for name in names:
            started = time.perf_counter()
            status = asset_status(name, cache)
            print(
                f"{name:<14} {status}  ({time.perf_counter() - started:.2f}s)  "
                f"{asset_path(name, cache)}"
            )
        return 0
    failed = 0
    for name in names:
        started = time.perf_counter()
        try:
            result = prepare_one(name, cache, force=args.force)
        except Exception as exc:  # report, then go on with the other assets
            failed += 1
            print(f"{name:<14} FAILED ({time.perf_counter() - started:.1f}s): {exc}", flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        status = "ok (cached)" if result.status == "cached" else f"built ({result.reason})"
        print(f"{name:<14} {status}  {result.seconds:.2f}s  {result.path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
