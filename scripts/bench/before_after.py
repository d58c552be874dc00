"""Full trials of the previous commit and of this tree, side by side in one run.

Each trial runs in a fresh process (so start-up, allocator state and peak memory are its own):
``before`` imports the package from ``--before-tree`` (a git worktree of the previous commit,
``git worktree add --detach ../before HEAD~1``), ``after`` from this tree. Variants are
interleaved round by round (alternating order) so background load drifts hit both alike; the
1-minute load average is recorded with every trial. A variant may force threads
(``OMP_NUM_THREADS``), switch the allocator tuning off (``MUDMAN_BENCH_NO_MALLOPT=1``) or run
CPU hogs beside it. Prints one JSON line per trial, then medians, ratios to ``before`` and
whether every objective equals ``before``'s to the last digit.

    python -m scripts.bench before_after --before-tree ../before --rounds 2 \\
        model=house model.path=/tmp/house unlearn_passes=300 relearn_passes=300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.bench.common import HOG, REPO

CHILD = r"""
import json, resource, sys, time
tree, overrides = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, tree)  # the tree under test is imported first: that is the measurement
import os
if os.environ.get("MUDMAN_BENCH_NO_MALLOPT") == "1":  # measure without the allocator tuning
    import mudman.runtime
    mudman.runtime.tune_allocator = lambda: False
    import mudman.trial
    mudman.trial.tune_allocator = lambda: False
import torch
import mudman
from hydra import compose, initialize_config_dir
from mudman.trial import run_trial
base = ["logger=none", "compare_baseline=false", "progress=false"]
with initialize_config_dir(config_dir=tree + "/conf", version_base="1.3"):
    cfg = compose("config", overrides=base + overrides)
start = time.perf_counter()
record = run_trial(cfg)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "package": mudman.__file__, "status": record["status"], "objective": record["objective"],
    "objective_repr": repr(record["objective"]), "timings": record["timings"],
    "passes": record["passes"], "threads": torch.get_num_threads(),
    "rejection": record["rejection"],
    "minor_faults": usage.ru_minflt, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    "seconds_in_run_trial": round(time.perf_counter() - start, 3),
}))
"""


def variant_specs(names: list[str], before_tree: Path, loaded_hogs: int = 1) -> dict[str, dict]:
    """``before[_Nt]``, ``after[_Nt][_nomalloc][_loaded]`` -> tree, env, hogs."""
    specs = {}
    for name in names:
        parts = name.split("_")
        tree = before_tree if parts[0] == "before" else REPO
        if parts[0] not in ("before", "after"):
            raise SystemExit(f"variant {name!r}: must start with before or after")
        env, hogs = {}, 0
        for part in parts[1:]:
            if part.endswith("t") and part[:-1].isdigit():
                env["OMP_NUM_THREADS"] = part[:-1]
            elif part == "nomalloc":
                env["MUDMAN_BENCH_NO_MALLOPT"] = "1"
            elif part == "loaded":
                hogs = loaded_hogs
            else:
                raise SystemExit(f"variant {name!r}: unknown part {part!r} (Nt, nomalloc, loaded)")
        specs[name] = {"tree": tree.resolve(), "env": env, "hogs": hogs}
    return specs


def run_one(spec: dict, overrides: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(spec["env"])
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(spec["hogs"])]
    try:
        load = os.getloadavg()[0]
        cmd = [sys.executable, "-c", CHILD, str(spec["tree"]), json.dumps(overrides)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        for proc in hogs:
            proc.kill()
            proc.wait()
    if out.returncode:
        raise SystemExit(f"trial failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["package"].startswith(str(spec["tree"])):
        raise SystemExit(f"imported {result['package']}, expected the tree {spec['tree']}")
    return {**result, "load_1min": round(load, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exits 1 when an objective differs from ``before``'s."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench before_after", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--before-tree", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["before", "after"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hogs", type=int, default=1, help="busy processes beside *_loaded")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    specs = variant_specs(args.variants, args.before_tree, args.hogs)
    rows: dict[str, list[dict]] = {name: [] for name in specs}
    for round_num in range(args.rounds):
        order = list(specs) if round_num % 2 == 0 else list(specs)[::-1]
        for name in order:
            result = run_one(specs[name], args.overrides)
            rows[name].append(result)
            print(json.dumps({"round": round_num, "variant": name, **result}), flush=True)
    ref = statistics.median(r["timings"]["total_s"] for r in rows[args.variants[0]])
    first = rows[args.variants[0]][0]
    ref_objective = f"{first['objective_repr']} [{first['status']}]"
    same = True
    print(
        f"\n{'variant':22} {'total_s':>8} {'ratio':>6} {'unlearn_s':>9} {'relearn_s':>9} "
        f"{'faults':>9} {'rss_mb':>7} {'thr':>3} objective (load)"
    )
    for name, rs in rows.items():
        med = {  # a rejected trial has no relearning: nan
            k: statistics.median(r["timings"].get(k, float("nan")) for r in rs)
            for k in ("total_s", "unlearning_s", "relearning_s")
        }
        faults = statistics.median(r["minor_faults"] for r in rs)
        rss = statistics.median(r["peak_rss_mb"] for r in rs)
        objectives = {f"{r['objective_repr']} [{r['status']}]" for r in rs}
        same &= objectives == {ref_objective}
        loads = "/".join(f"{r['load_1min']:.1f}" for r in rs)
        print(
            f"{name:22} {med['total_s']:8.2f} {med['total_s'] / ref:6.3f} "
            f"{med['unlearning_s']:9.2f} {med['relearning_s']:9.2f} {faults:9.0f} {rss:7.0f} "
            f"{rs[0]['threads']:3d} {','.join(sorted(objectives))} ({loads})"
        )
    print("objectives identical to the first variant's:", same)
    return 0 if same else 1
