"""Benchmark the start-up of ``python -m mudman``: this tree against a git ref, side by side.

Hydra imports every module of the ``hydra_plugins`` namespace on every run (a single trial,
``--cfg job``, ``--help``) to discover plugins; the sweeper's module used to import Optuna and
the whole sweep logic there. This script runs the same commands in this checkout and in a
temporary ``git worktree`` of ``--base`` (default: ``origin/main``), interleaved, with the same
interpreter, and prints the median wall time of each and the ratio:

- ``--cfg job``: compose and print the config (nothing runs);
- ``--help``;
- a tiny trial (built-in 2-layer model, 10 + 10 passes, no baseline): the whole process, and
  its overhead = process wall time - the trial's work (``unlearning_s + relearning_s +
  scoring_s`` from results.json; both trees record these three the same way);
- ``import optuna`` alone, for scale.

    python -m scripts.bench startup                     # vs origin/main, 5 repeats
    python -m scripts.bench startup --base HEAD~3 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.bench.common import OFFLINE_ENV, REPO

WHICH = "import mudman, hydra_plugins.mudman_sweeper as p; print(mudman.__file__, p.__file__)"


def _texts(path: Path, prefix: str) -> None:
    rng = random.Random(0)
    words = ["def", "return", "the", "river", "value", "print", "city", "(", ")", "list"]
    with path.open("w") as handle:
        for i in range(200):
            text = f"{prefix} {i} " + " ".join(rng.choice(words) for _ in range(60))
            handle.write(json.dumps({"text": text}) + "\n")


def _run(cwd: Path, args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return time.perf_counter() - start


def _trial(cwd: Path, env: dict[str, str], data: Path, run_dir: Path) -> tuple[float, float]:
    """(process wall time, the trial's work: unlearning + relearning + scoring) of a tiny trial."""
    args = [
        "-m",
        "mudman",
        "model=tiny-llama",
        "data=jsonl",
        f"data.forget.local.path={data / 'forget.jsonl'}",
        f"data.retain.local.path={data / 'retain.jsonl'}",
        "logger=none",
        "compare_baseline=false",
        "unlearn_passes=10",
        "relearn_passes=10",
        "eval_every_passes=10",
        "batch_size=4",
        "context_len=32",
        f"hydra.run.dir={run_dir}",
    ]
    wall = _run(cwd, args, env)
    timings = json.loads((run_dir / "results.json").read_text())["timings"]
    return wall, sum(float(timings[k]) for k in ("unlearning_s", "relearning_s", "scoring_s"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints a Markdown table of median seconds per command and tree."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench startup", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base", default="origin/main", help="git ref to compare with")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command per tree")
    args = parser.parse_args(argv)
    env = {**os.environ, **OFFLINE_ENV}
    env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        tmp_path = Path(tmp)
        base = tmp_path / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=REPO, check=True
        )
        try:
            data = tmp_path / "data"
            data.mkdir()
            _texts(data / "forget.jsonl", "forget")
            _texts(data / "retain.jsonl", "retain")
            env["MUDMAN_CACHE"] = str(tmp_path / "cache")
            trees = {"this tree": REPO, f"base {args.base}": base}
            for name, tree in trees.items():  # each tree must run its own code
                where = subprocess.run(
                    [sys.executable, "-c", WHICH],
                    cwd=tree,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                assert all(p.startswith(str(tree)) for p in where), (name, where)
                _trial(tree, env, data, tmp_path / f"warm-{len(name)}")  # warm the data cache
            results: dict[str, dict[str, list[float]]] = {n: {} for n in trees}
            for repeat in range(args.repeats):
                for name, tree in trees.items():  # interleaved: load changes hit both alike
                    row = results[name]
                    row.setdefault("--cfg job", []).append(
                        _run(tree, ["-m", "mudman", "--cfg", "job"], env)
                    )
                    row.setdefault("--help", []).append(_run(tree, ["-m", "mudman", "--help"], env))
                    wall, work = _trial(tree, env, data, tmp_path / f"run-{repeat}-{len(name)}")
                    row.setdefault("tiny trial (process)", []).append(wall)
                    row.setdefault("tiny trial overhead (process - work)", []).append(wall - work)
                    row.setdefault("import optuna", []).append(
                        _run(tree, ["-c", "import optuna"], env)
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False
            )
    names = list(results)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    print(f"median of {args.repeats} runs each, interleaved; this tree = {commit}")
    print(f"| command | {names[0]} (s) | {names[1]} (s) | ratio base / this |")
    print("|---|---|---|---|")
    for command in results[names[0]]:
        this = statistics.median(results[names[0]][command])
        before = statistics.median(results[names[1]][command])
        print(f"| `{command}` | {this:.2f} | {before:.2f} | {before / this:.2f} |")
    return 0
