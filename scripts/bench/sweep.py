"""Benchmark the sweep machinery: trials per hour and its overhead relative to the trials.

Runs one real Optuna study through `python -m mudman -m hydra/sweeper=mudman_optuna` (one
process, as a user would) and compares the wall time with the sum of the trials' own
`total_s` (load + data + unlearning + relearning + baseline, from results.json):

    overhead ratio = (sweep wall time - sum of trial times) / sum of trial times

The difference is Hydra start-up, config composition per trial, the Optuna sampler, storage
writes, heartbeats and results parsing.

With ``--n-jobs 1 2 4`` it runs one fresh study per worker count (``hydra.sweeper.n_jobs``),
side by side, and prints trials per hour and the speed-up over the first count: this is how
many trials at once one machine (or one GPU: add ``device=cuda``) sustains through the real
sweeper. Every trial runs its full budget (``retain_loss_budget=1e9``: nothing is rejected
early) and no relearn-only baseline is computed, so the cost of a trial does not depend on
which parameters were sampled or on what an earlier run cached.

    python -m scripts.bench sweep                                  # tiny model, ~1 min
    python -m scripts.bench sweep --preset ablation/house_python --trials 5   # offline preset
    python -m scripts.bench sweep --preset ablation/house_python --trials 4 --n-jobs 1 2
    python -m scripts.bench sweep --preset ablation/pythia_python --trials 64 device=cuda \
        --n-jobs 1 4 8 16                            # GPU + Hub: overrides before --n-jobs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from scripts.bench.common import OFFLINE_ENV, REPO

TINY = [
    "model=tiny-llama",
    "data=python",
    "unlearn_passes=30",
    "relearn_passes=10",
    "batch_size=4",
    "context_len=32",
    "eval_every_passes=10",
    "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
]


def run_study(args, overrides: list[str], work: Path, n_jobs: int) -> dict:
    """One fresh study with ``n_jobs`` workers; wall time and the trials' own times."""
    url = f"sqlite:///{work}/bench.db"
    name = f"bench-{n_jobs}"
    cmd = [
        sys.executable,
        "-m",
        "mudman",
        "-m",
        "hydra/sweeper=mudman_optuna",
        *overrides,
        "logger=none",
        "progress=false",
        "compare_baseline=false",
        "retain_loss_budget=1e9",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweep.dir={work}/multirun-{n_jobs}",
    ]
    env = {**os.environ, **OFFLINE_ENV}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name=name, storage=url).trials
    own = [t.user_attrs["timings"]["total_s"] for t in trials if "timings" in t.user_attrs]
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    return {"n_jobs": n_jobs, "wall": wall, "own": own, "n": len(trials), "states": states}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench sweep", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--preset", help="experiment preset, e.g. ablation/house_python")
    parser.add_argument("--method", default="mudman")
    parser.add_argument("--trials", type=int, default=8, help="trials per study")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1], help="worker counts")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (device=cuda ...)")
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="mudman-bench-sweep-"))
    overrides = [f"experiment={args.preset}", f"method={args.method}"] if args.preset else TINY
    overrides = [*overrides, *args.overrides]
    print(f"setup: {' '.join(overrides)}; {args.trials} trials per study")
    results = []
    for n_jobs in args.n_jobs:
        r = run_study(args, overrides, work, n_jobs)
        results.append(r)
        own = r["own"]
        print(f"\n{n_jobs} worker(s): {r['n']} trials {r['states']}")
        print(f"sweep wall time          {r['wall']:8.1f} s")
        print(f"sum of trial times       {sum(own):8.1f} s  (mean {sum(own) / len(own):.2f} s)")
        print(f"trials per hour          {3600 * r['n'] / r['wall']:8.1f}")
        if n_jobs == 1:
            print(f"overhead per trial       {(r['wall'] - sum(own)) / r['n']:8.2f} s")
            print(f"overhead ratio           {(r['wall'] - sum(own)) / sum(own):8.3f}  (0 = none)")
        else:
            print(f"trial-seconds per second {sum(own) / r['wall']:8.2f}  (concurrency)")
    if len(results) > 1:
        first = results[0]
        rate = lambda r: r["n"] / r["wall"]  # noqa: E731
        print(f"\n{'workers':>7} {'trials/h':>9} {'vs ' + str(first['n_jobs']) + ' worker(s)':>16}")
        for r in results:
            print(f"{r['n_jobs']:>7} {3600 * rate(r):>9.1f} {rate(r) / rate(first):>15.2f}x")
    return 0
