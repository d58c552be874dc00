"""Benchmark the sweep machinery: trials per hour and its overhead relative to the trials.

Runs one real Optuna study through `python -m mudman -m hydra/sweeper=mudman_optuna` (one
process, as a user would) and compares the wall time with the sum of the trials' own
`total_s` (load + data + unlearning + relearning + baseline, from results.json):

    overhead ratio = (sweep wall time - sum of trial times) / sum of trial times

The difference is Hydra start-up, config composition per trial, the Optuna sampler, storage
writes, heartbeats and results parsing.

    python scripts/bench_sweep.py                                  # tiny model, ~1 min
    python scripts/bench_sweep.py --preset ablation/house_python --trials 5   # offline preset
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

REPO = Path(__file__).resolve().parents[1]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", help="experiment preset, e.g. ablation/house_python")
    parser.add_argument("--method", default="mudman")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mudman-bench-sweep-"))
    url = f"sqlite:///{work}/bench.db"
    overrides = [f"experiment={args.preset}", f"method={args.method}"] if args.preset else TINY
    cmd = [
        sys.executable,
        "-m",
        "mudman",
        "-m",
        "hydra/sweeper=mudman_optuna",
        *overrides,
        "logger=none",
        "progress=false",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.n_trials={args.trials}",
        "hydra.sweeper.study_name=bench",
        f"hydra.sweep.dir={work}/multirun",
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="bench", storage=url).trials
    own = [t.user_attrs["timings"]["total_s"] for t in trials if "timings" in t.user_attrs]
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    print(f"setup: {' '.join(overrides)}; {len(trials)} trials {states}")
    print(f"sweep wall time          {wall:8.1f} s")
    print(f"sum of trial times       {sum(own):8.1f} s  (mean {sum(own) / len(own):.2f} s)")
    print(f"trials per hour          {3600 * len(trials) / wall:8.1f}")
    print(f"overhead per trial       {(wall - sum(own)) / len(trials):8.2f} s")
    print(f"overhead ratio           {(wall - sum(own)) / sum(own):8.3f}  (0 = no overhead)")


if __name__ == "__main__":
    main()
