"""Torch CPU threads on a shared machine: 1 vs 2 threads, idle vs loaded, side by side.

For each model, one process loads the model and the trial's batches once and measures every
cell (threads x load): one warm-up loop, then ``--loops`` MUDMAN loops and ``--steps``
relearning SGD steps, timed (``torch.set_num_threads`` switches between cells). Loaded cells run
``--hogs`` busy-looping processes beside it. Cells are interleaved round by round (the thread
order alternates) so drift in the background load hits every cell alike; the 1-minute load
average is recorded with every measurement.

    python -m scripts.bench threads --models tiny-llama house --rounds 2
    python -m scripts.bench threads --models smollm2-135m --loops 2 --steps 2 --batch 8 --context 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from scripts.bench.common import HOG, compose, load_model_and_batches


def measure(args: argparse.Namespace, model_name: str) -> list[dict]:
    """All cells of one model in one process (start-up once), interleaved round by round."""
    import torch

    from mudman.attack.relearning import relearn
    from mudman.config import validate_config
    from mudman.methods.monitor import PassMonitor
    from mudman.models.loading import resolve_device
    from mudman.models.targets import select_target_params

    overrides = [f"model={model_name}", f"batch_size={args.batch}", f"context_len={args.context}"]
    cfg = compose(overrides + args.overrides)
    method = validate_config(cfg)
    device = resolve_device(cfg.device)
    _dtype, model, _tokenizer, data = load_model_and_batches(cfg, device)
    params = select_target_params(model, cfg.target_modules)
    monitor = PassMonitor(lambda: {}, 10**9, 0.05, 0.0, None)

    def timed_cell(threads: int) -> dict:
        torch.set_num_threads(threads)
        for name, param in model.named_parameters():
            param.requires_grad_(name in params)
        method.unlearn(model, params, data, 1, monitor)  # warm-up
        start = time.perf_counter()
        method.unlearn(model, params, data, args.loops, monitor)
        loop_s = (time.perf_counter() - start) / args.loops
        relearn(model, data.relearn_forget, data.forget_eval, cfg.attack.lr, 2, 10**9)
        start = time.perf_counter()
        relearn(model, data.relearn_forget, data.forget_eval, cfg.attack.lr, 2 * args.steps, 10**9)
        step_s = (time.perf_counter() - start) / args.steps
        return {"loop_s": loop_s, "relearn_step_s": step_s, "threads": torch.get_num_threads()}

    rows = []
    for round_num in range(args.rounds):
        for hogs in (0, args.hogs):
            hog_procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
            try:
                time.sleep(1.0 if hogs else 0.0)
                for threads in args.threads if round_num % 2 == 0 else args.threads[::-1]:
                    load = os.getloadavg()[0]
                    row = {"model": model_name, "round": round_num, "hogs": hogs}
                    row.update(timed_cell(threads))
                    row["load_1min"] = round(load, 2)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            finally:
                for proc in hog_procs:
                    proc.kill()
                    proc.wait()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints one JSON record per cell and a summary table (medians)."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench threads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", nargs="+", default=["tiny-llama"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--hogs", type=int, default=2, help="busy processes in loaded cells")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args(argv)
    rows = [row for model in args.models for row in measure(args, model)]
    print(f"\n{'model':14} {'threads':>7} {'hogs':>4} {'loop_s':>8} {'step_s':>8}  load (1 min)")
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["model"], row["threads"], row["hogs"]), []).append(row)
    for (model, threads, hogs), rs in sorted(cells.items()):
        loop = statistics.median(r["loop_s"] for r in rs)
        step = statistics.median(r["relearn_step_s"] for r in rs)
        loads = "/".join(f"{r['load_1min']:.1f}" for r in rs)
        print(f"{model:14} {threads:7d} {hogs:4d} {loop:8.3f} {step:8.3f}  {loads}")
    return 0
