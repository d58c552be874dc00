"""Command line: ``python -m mudman.assets [--only NAME]... [--force] [--cache-dir DIR] [--list]``.

Prints one line per asset with its status and the time taken; exit code 1 if any asset failed.
``--house-out DIR [--house-steps N]`` instead pretrains the house model (the same recipe) into
``DIR`` outside the cache, e.g. a shorter run to experiment with (``model=house model.path=DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

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
    parser.add_argument(
        "--house-out",
        type=Path,
        metavar="DIR",
        help="pretrain the house model into DIR instead of the cache (no manifest; use it with "
        "model=house model.path=DIR); prints the held-out losses",
    )
    parser.add_argument(
        "--house-steps",
        type=int,
        metavar="N",
        help="optimizer steps of the --house-out run (default: the asset's recipe)",
    )
    return parser


def _pretrain_house(parser: argparse.ArgumentParser, args: argparse.Namespace, cache) -> int:
    """``--house-out``: the house recipe into a directory of the user's, outside the cache (a
    shorter run must never replace the cached asset that ``model=house`` reads)."""
    from mudman.assets.house import pretrain

    if args.only or args.force or args.list:
        parser.error("--house-out builds only the house model; drop --only, --force and --list")
    if args.house_steps is not None and args.house_steps < 1:
        parser.error(f"--house-steps={args.house_steps}; allowed: an integer >= 1")
    stats = pretrain(args.house_out, cache_dir=cache, steps=args.house_steps)
    print(json.dumps(stats, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    cache = resolve_cache_dir(args.cache_dir)
    if args.house_out is not None:
        return _pretrain_house(parser, args, cache)
    if args.house_steps is not None:
        parser.error("--house-steps needs --house-out DIR (the cached asset keeps its recipe)")
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
