"""Where a trial's time and memory go: the unlearning loop against its bare passes, and more.

For one model and method, in one process (so the numbers are comparable side by side):

* ``passes alone``: the loop's forward/backward passes with no state updates (what the loop
  cannot avoid), timed per loop; ``loop``: the method's own ``unlearn`` for the same number of
  loops (no evaluations); **overhead ratio** = loop / passes alone (target <= 1.10);
* passes per second of the loop, relearning SGD steps per second, and one full trial
  (``run_trial``, with evaluations, no baseline) at the configured budgets;
* memory, each phase measured on its own (CUDA: the allocator's peak, reset before the phase;
  CPU: the kernel's resident high-water mark ``VmHWM``, reset before the phase through
  ``/proc/self/clear_refs`` after glibc handed free memory back with ``malloc_trim``), as the
  peak above what was resident when the phase began:
  - unlearning: loop peak minus passes-alone peak = what the method's state and updates add,
    against the paper's bound of 3 x size(targeted) (adversary, accumulator, gradients);
  - relearning: the SGD steps' peak, against its own bound of 1 x size(model) of gradients on
    top of the passes' activations (plain SGD keeps no state);
  - the full trial runs in a fresh process; its peak RSS (``ru_maxrss``, the whole process) is
    reported next to size(model).

    python -m scripts.bench trial model=house                     # any config overrides
    python -m scripts.bench trial model=tiny-llama --loops 20 --no-trial
    python -m scripts.bench trial model=smollm2-135m --loops 3 --relearn-steps 3 --no-trial
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from scripts.bench.common import child_env, compose, load_model_and_batches, sync


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def reset_peak(device: torch.device) -> int:
    """Start a phase: free what can be freed, reset the peak; returns the bytes resident now."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc_trim(0)  # so freed heap pages do not count as resident
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    return _status_kb("VmRSS") * 1024


def peak_bytes(device: torch.device) -> int:
    """The high-water mark since the last ``reset_peak``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _status_kb("VmHWM") * 1024


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def passes_alone(model, params, data, method_cfg, shared: bool) -> Callable[[], None]:
    """One loop's passes with no updates: retain fwd+bwd, forget fwd, its backward(s)."""
    from mudman.losses import cross_entropy, get_loss

    targets = list(params.values())
    unlearning_loss = get_loss(method_cfg.get("unlearning_loss", "neg_cross_entropy"))
    meta = bool(method_cfg.get("meta_learning", False))
    retain, forget = data.retain_train[0], data.forget_train[0]

    def run() -> None:
        loss = cross_entropy(model(input_ids=retain).logits, retain)
        torch.autograd.grad(loss, targets)
        logits = model(input_ids=forget).logits
        if shared:  # the loop's one shared backward (grad(-CE) = -grad(CE))
            torch.autograd.grad(cross_entropy(logits, forget), targets)
            return
        if meta:
            torch.autograd.grad(cross_entropy(logits, forget), targets, retain_graph=True)
        torch.autograd.grad(unlearning_loss(logits, forget), targets)

    return run


def bench(overrides: list[str], loops: int, relearn_steps: int, full_trial: bool) -> dict:
    """Run every measurement for one configuration; returns the numbers and ratios."""
    from mudman.attack.relearning import relearn
    from mudman.config import validate_config
    from mudman.methods.monitor import PassMonitor
    from mudman.models.loading import resolve_device
    from mudman.models.targets import select_target_params
    from mudman.runtime import apply_thread_policy, tune_allocator
    from mudman.trial import set_seed

    cfg = compose(overrides)
    method = validate_config(cfg)
    device = resolve_device(cfg.device)
    apply_thread_policy(cfg.threads, device)  # as a trial does
    tune_allocator()
    dtype, model, _tokenizer, data = load_model_and_batches(cfg, device)
    params = select_target_params(model, cfg.target_modules)
    for name, param in model.named_parameters():
        param.requires_grad_(name in params)
    size_model = nbytes(model.parameters())
    size_targeted = nbytes(params.values())
    passes_per_loop = method.passes_per_loop()

    shared = bool(getattr(method, "shares_ce_backward", lambda: False)())
    passes = passes_alone(model, params, data, cfg.method, shared)
    monitor = PassMonitor(lambda: {}, 10**9, 0.05, 0.0, None)  # no evaluations in the loop

    def loop(n: int) -> None:
        set_seed(cfg.seed)
        method.unlearn(model, params, data, n, monitor)

    def block(fn: Callable[[], object]) -> tuple[float, int]:
        """Seconds of one block and its memory peak above what was resident before it."""
        method.state = {}  # the previous block's state must not count in this one
        resident = reset_peak(device)
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start, peak_bytes(device) - resident

    loop(1), passes()  # warm-up
    # Interleaved rounds, so load drift on a shared machine hits both sides alike.
    rounds, per_round = 4, max(1, loops // 4)
    t_passes = t_loop = 0.0
    peak_passes = peak_loop = 0
    for _ in range(rounds):
        seconds, peak = block(lambda: [passes() for _ in range(per_round)])
        t_passes, peak_passes = t_passes + seconds, max(peak_passes, peak)
        seconds, peak = block(lambda: loop(per_round))
        t_loop, peak_loop = t_loop + seconds, max(peak_loop, peak)
    t_passes /= rounds * per_round
    t_loop /= rounds * per_round
    own = {p.data_ptr() for p in model.parameters()}
    state_bytes = sum(
        nbytes([t])
        for tensors in method.state.values()
        for t in tensors.values()
        if t.data_ptr() not in own
    )

    t_relearn = peak_relearn = None
    if relearn_steps:
        method.state = {}
        resident = reset_peak(device)
        start = time.perf_counter()
        relearn(
            model, data.relearn_forget, data.forget_eval, cfg.attack.lr, 2 * relearn_steps, 10**9
        )
        sync(device)
        t_relearn = (time.perf_counter() - start) / relearn_steps
        peak_relearn = peak_bytes(device) - resident
    model = params = method = None

    trial = run_trial_in_own_process(overrides) if full_trial else None
    if trial is not None:
        trial["passes"] = f"{cfg.unlearn_passes} + {cfg.relearn_passes}"
        trial["peak_rss_in_model_sizes"] = round(trial["peak_rss_mb"] * 2**20 / size_model, 2)
    extra = peak_loop - peak_passes
    return {
        "model": cfg.model.name,
        "method": cfg.method.name,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "batch": f"{cfg.batch_size} x {cfg.context_len}",
        "threads": torch.get_num_threads(),
        "passes_per_loop": passes_per_loop,
        "loop_s": round(t_loop, 5),
        "passes_alone_s": round(t_passes, 5),
        "overhead_ratio": round(t_loop / t_passes, 3),
        "unlearning_passes_per_s": round(passes_per_loop / t_loop, 2),
        "relearn_steps_per_s": round(1 / t_relearn, 2) if t_relearn else None,
        "memory": {
            "measure": "cuda max_memory_allocated"
            if device.type == "cuda"
            else "VmHWM reset per phase",
            "size_model_mb": round(size_model / 2**20, 2),
            "size_targeted_mb": round(size_targeted / 2**20, 2),
            "peak_passes_alone_mb": round(peak_passes / 2**20, 1),
            "peak_loop_mb": round(peak_loop / 2**20, 1),
            "loop_extra_over_passes_mb": round(extra / 2**20, 2),
            "loop_extra_in_targeted_sizes": round(extra / size_targeted, 2),
            "method_state_in_targeted_sizes": round(state_bytes / size_targeted, 2),
            "paper_bound_extra_in_targeted_sizes": 3,
            "peak_relearning_mb": None if peak_relearn is None else round(peak_relearn / 2**20, 1),
            "relearning_extra_over_passes_in_model_sizes": None
            if peak_relearn is None
            else round((peak_relearn - peak_passes) / size_model, 2),
            "relearning_bound_extra_in_model_sizes": 1,
        },
        "trial": trial,
    }


TRIAL_CHILD = r"""
import json, resource, sys
from scripts.bench.common import compose
from mudman.trial import run_trial
record = run_trial(compose(json.loads(sys.argv[1])))
print(json.dumps({
    "status": record["status"], "objective": record["objective"], "timings": record["timings"],
    "threads": record.get("threads"),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def run_trial_in_own_process(overrides: list[str]) -> dict:
    """One full trial in a fresh process, so its peak RSS is its own (not this process's)."""
    cmd = [sys.executable, "-c", TRIAL_CHILD, json.dumps(overrides)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
    if out.returncode:
        raise RuntimeError(f"full trial failed:\n{out.stderr[-3000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["seconds"] = record["timings"]["total_s"]
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints one JSON record and a short ratio summary."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench trial", description=__doc__.splitlines()[0]
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=house")
    parser.add_argument("--loops", type=int, default=20, help="unlearning loops to time")
    parser.add_argument("--relearn-steps", type=int, default=20, help="SGD steps to time")
    parser.add_argument("--no-trial", action="store_true", help="skip the full trial")
    parser.add_argument("--threads", type=int, default=None, help="= the override threads=N")
    args = parser.parse_args(argv)
    overrides = args.overrides + ([f"threads={args.threads}"] if args.threads else [])
    result = bench(overrides, args.loops, args.relearn_steps, not args.no_trial)
    print(json.dumps(result, indent=2))
    m = result["memory"]
    print(
        f"{result['model']}/{result['method']} on {result['device']}: loop overhead "
        f"{result['overhead_ratio']:.3f} x its passes (target <= 1.10); "
        f"{result['unlearning_passes_per_s']} passes/s; "
        f"{result['relearn_steps_per_s']} relearn steps/s; "
        f"loop memory beyond the passes {m['loop_extra_in_targeted_sizes']} x size(targeted), "
        f"method state {m['method_state_in_targeted_sizes']} x (bound 3); relearning beyond "
        f"the passes {m['relearning_extra_over_passes_in_model_sizes']} x size(model) (bound 1)"
        + (f"; full trial {result['trial']['seconds']} s" if result["trial"] else "")
    )
    return 0
