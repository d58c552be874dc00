"""Relearning's gradient buffers: ``zero_grad(set_to_none=True)`` vs zeroing in place.

Autograd allocates every weight gradient afresh in the backward either way; ``set_to_none``
lets ``AccumulateGrad`` keep that buffer, zeroing in place adds a zero-fill and an add over
all parameters. This measures both side by side in one process (interleaved steps, minor
page faults from ``getrusage``), with and without the allocator tuning of mudman/runtime.py.

    python -m scripts.bench relearn_grads model=smollm2-135m batch_size=8 context_len=64
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Sequence

import torch

from scripts.bench.common import compose, load_model_and_batches


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints seconds and minor faults per SGD step for each variant."""
    from mudman.losses import cross_entropy
    from mudman.models.loading import resolve_device
    from mudman.runtime import apply_thread_policy, tune_allocator

    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench relearn_grads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=4, help="steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tune", action="store_true", help="apply tune_allocator() first")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    device = resolve_device(cfg.device)
    apply_thread_policy(cfg.threads, device)
    if args.tune:
        tune_allocator()
    _dtype, model, _tokenizer, data = load_model_and_batches(cfg, device)
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)
    batch = data.relearn_forget[0]
    rows: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for to_none in (True, False):
            for _ in range(args.steps):
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=to_none)
                cross_entropy(model(input_ids=batch).logits, batch).backward()
                optimizer.step()
                seconds = time.perf_counter() - start
                rows[to_none].append(
                    (seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
                )
    for to_none, rs in rows.items():
        print(
            json.dumps(
                {
                    "set_to_none": to_none,
                    "allocator_tuned": args.tune,
                    "threads": torch.get_num_threads(),
                    "median_step_s": round(statistics.median(s for s, _ in rs[1:]), 4),
                    "median_minor_faults_per_step": statistics.median(f for _, f in rs[1:]),
                }
            )
        )
    return 0
