"""Does bf16 or ``torch.compile`` make the unlearning loop faster here? Measured, not assumed.

Times the same MUDMAN loops (no evaluations) on copies of one model in each variant, in
interleaved rounds so load drift on a shared machine hits all variants alike, and prints the
median seconds per loop and the ratio to float32 eager, after a correctness check: the update
of the first two loops, relative to float32 eager's (bf16 differs by rounding; a compiled model
must agree to float32 noise, and with MUDMAN's adversary it does not: docs/results.md).

    python -m scripts.bench precision model=house
    python -m scripts.bench precision model=smollm2-135m batch_size=8 --loops 2 --rounds 2
    python -m scripts.bench precision model=house device=cuda   # on a GPU box
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Sequence

import torch

from scripts.bench.common import compose, sync

VARIANTS = ("float32", "bfloat16", "float32+compile")


def build_variant(model, name: str, targets):
    """(module to call, its targeted parameters) for one variant; the model is a fresh copy."""
    from mudman.models.targets import select_target_params

    model = copy.deepcopy(model)
    if name.startswith("bfloat16"):
        model = model.to(torch.bfloat16)
    params = select_target_params(model, targets)
    for param_name, param in model.named_parameters():
        param.requires_grad_(param_name in params)
    if name.endswith("+compile"):
        # MUDMAN takes two backwards through one forward (retain_graph=True): buffers donated
        # to the first backward would be gone for the second
        torch._functorch.config.donated_buffer = False
        compiled = torch.compile(model)
        compiled.config = model.config  # methods read model.config for hidden sizes etc.
        return compiled, params
    return model, params


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench precision", description=__doc__.splitlines()[0]
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=house")
    parser.add_argument("--loops", type=int, default=6, help="loops per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mudman.config import validate_config
    from mudman.data.batching import build_trial_data
    from mudman.methods.monitor import PassMonitor
    from mudman.models.loading import load_model_and_tokenizer, resolve_device
    from mudman.trial import set_seed

    cfg = compose(list(args.overrides))
    method = validate_config(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer = load_model_and_tokenizer(
        cfg.model, device, torch.float32, cfg.paths.cache_dir
    )
    data = build_trial_data(
        cfg.data, tokenizer, cfg.context_len, cfg.batch_size, cfg.paths.cache_dir
    ).to(device)
    names = [v for v in args.variants.split(",") if v]
    built, errors = {}, {}
    for name in names:
        try:
            built[name] = build_variant(model, name, list(cfg.target_modules))
        except Exception as err:  # report, do not hide: a variant that cannot run here
            errors[name] = f"{type(err).__name__}: {err}"

    def run(name: str, loops: int) -> float:
        module, params = built[name]
        monitor = PassMonitor(lambda: {}, 10**9, 0.05, 0.0, None)
        set_seed(cfg.seed)
        sync(device)
        start = time.perf_counter()
        method.unlearn(module, params, data, loops, monitor)
        sync(device)
        return (time.perf_counter() - start) / loops

    # Correctness first: the update of the first two loops from the same start, per variant,
    # relative to float32 eager's (bf16: rounding; compile must agree to float32 noise).
    updates = {}
    for name in list(built):
        fresh = build_variant(model, name, list(cfg.target_modules))
        start = {k: p.detach().float().clone() for k, p in fresh[1].items()}
        try:
            set_seed(cfg.seed)
            method.unlearn(*fresh, data, 2, PassMonitor(lambda: {}, 10**9, 0.05, 0.0, None))
        except Exception as err:
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            del built[name]
            continue
        updates[name] = {k: p.detach().float() - start[k] for k, p in fresh[1].items()}
    update_error = {}
    if "float32" in updates:
        ref = updates["float32"]
        scale = max(float(u.abs().max()) for u in ref.values())
        for name, update in updates.items():
            diff = max(float((update[k] - ref[k]).abs().max()) for k in ref)
            update_error[name] = diff / scale

    warmup = {}
    for name in list(built):
        try:
            start = time.perf_counter()
            run(name, 1)  # compile happens here
            warmup[name] = round(time.perf_counter() - start, 2)
        except Exception as err:
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            del built[name]
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(args.rounds):
        for name in built:
            times[name].append(run(name, args.loops))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians.get("float32")
    print(
        f"{cfg.model.name}, {cfg.method.name}, batch {cfg.batch_size} x {cfg.context_len}, {device}"
    )
    print(
        f"{'variant':18} {'s/loop':>8} {'vs float32':>10} {'warm-up s':>9} "
        f"{'update error':>12}  (max |update - float32 update| / max |float32 update|, 2 loops)"
    )
    for name, seconds in medians.items():
        ratio = f"{seconds / base:.2f}x" if base else "-"
        print(
            f"{name:18} {seconds:8.4f} {ratio:>10} {warmup[name]:9.2f} "
            f"{update_error.get(name, float('nan')):12.2e}"
        )
    for name, error in errors.items():
        print(f"{name:18} could not run: {error}")
    print(
        json.dumps(
            {
                "model": cfg.model.name,
                "device": str(device),
                "seconds_per_loop": medians,
                "warmup_seconds": warmup,
                "relative_update_error_vs_float32": update_error,
                "errors": errors,
            }
        )
    )
    return 0
