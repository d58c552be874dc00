"""Pretrain the house model into a directory of your choice (the asset step does the same).

``python -m mudman.assets --only house`` is the normal way (it records the result in the asset
cache with a manifest, so ``model=house`` finds it). This script runs the identical recipe
(:func:`mudman.assets.house.pretrain`) into ``--out``, optionally with fewer ``--steps`` to
experiment, and prints the held-out losses next to the uniform-guess loss.

    python scripts/pretrain_house_model.py --out /tmp/house [--steps 2500] [--cache-dir DIR]
    python -m mudman model=house model.path=/tmp/house   # use it
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mudman.assets.house import TRAIN, pretrain


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--steps", type=int, default=TRAIN["steps"], help="optimizer steps")
    parser.add_argument("--cache-dir", help="asset cache with the corpora (default: usual cache)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps={args.steps} must be >= 1")
    stats = pretrain(args.out, cache_dir=args.cache_dir, steps=args.steps)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
