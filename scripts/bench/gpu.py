"""Trials per hour on one GPU, with several trials running at once (one process each).

A 14M-parameter trial leaves a modern GPU mostly idle, so a study should run several trials
concurrently on it: start N sweeper workers on the same study and the same device (each worker
is its own process with its own CUDA context; docs/performance.md "Many trials per GPU"). This
script measures what that buys: for each model shape and each worker count it starts that many
processes, each running ``--trials`` paper-sized trials (MUDMAN unlearning with evaluations
every 30 passes, then the SGD relearning attack) back to back, and reports trials per hour.

Each worker builds its model and its batches on the device once (as a study worker does: data
are tokenized once per study, not per trial) and restores the initial weights before every
trial. Shapes: ``house`` (the house model's architecture, 4096 vocab) and ``pythia14m``
(GPT-NeoX, 6 layers, hidden 128, 50,304 vocab: 14.1 M parameters); weights are random, which
does not change the cost. TF32 matmuls are on when the device supports them.

    python -m scripts.bench gpu                                   # CUDA: house + pythia14m
    python -m scripts.bench gpu --workers 1 2 4 8 --trials 4 --dtype bfloat16
    python -m scripts.bench gpu --device cpu --models house --workers 1 --trials 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch
import torch.multiprocessing as mp

SHAPES = ("house", "pythia14m")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(shape: str, seed: int = 0):
    """Model of the given shape (random weights) and the names of its targeted modules."""
    from mudman.models.tiny import tiny_gpt_neox

    if shape == "pythia14m":
        return tiny_gpt_neox(seed=seed, hidden=128, layers=6, vocab=50304), ["dense_h_to_4h"]
    from transformers import LlamaConfig, LlamaForCausalLM

    from mudman.assets.house import ARCH, VOCAB_SIZE

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB_SIZE, **ARCH)).eval(), ["gate_proj"]


def synthetic_data(vocab: int, batch: int, length: int, device: torch.device):
    """Batches of random tokens built once on the device (timing does not depend on content)."""
    from mudman.data.batching import TrialData

    gen = torch.Generator().manual_seed(0)

    def batches(n: int):
        return [
            torch.randint(0, vocab, (batch, length), generator=gen).to(device) for _ in range(n)
        ]

    return TrialData(batches(16), batches(16), batches(16), batches(16))


def run_trials(args: dict) -> dict:
    """One worker: build once, then run ``trials`` full trials; returns per-trial seconds."""
    from omegaconf import OmegaConf

    from mudman.attack.relearning import relearn
    from mudman.evaluation.lm_loss import forget_retain_losses
    from mudman.methods import build_method
    from mudman.methods.monitor import PassMonitor
    from mudman.models.targets import select_target_params
    from mudman.trial import set_seed

    device = torch.device(args["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(args["threads"])
    model, targets = build(args["shape"])
    model = model.to(device=device, dtype=DTYPES[args["dtype"]])
    model.config.use_cache = False
    initial = {n: p.detach().clone() for n, p in model.state_dict().items()}
    data = synthetic_data(model.config.vocab_size, args["batch"], args["length"], device)
    method_cfg = OmegaConf.merge(OmegaConf.load(args["method_yaml"]), args["method_overrides"])
    method = build_method(method_cfg)
    n_loops = method.n_loops(args["passes"])
    seconds = []
    for _ in range(args["trials"]):
        start = time.perf_counter()
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(initial[name])
        params = select_target_params(model, targets)
        for name, param in model.named_parameters():
            param.requires_grad_(name in params)
        initial_losses = forget_retain_losses(model, data.forget_eval, data.retain_eval)
        monitor = PassMonitor(
            lambda: forget_retain_losses(model, data.forget_eval, data.retain_eval),
            30,
            float("inf"),  # random weights: judge nothing, just pay for the evaluations
            initial_losses["retain_loss"],
        )
        set_seed(0)
        method.unlearn(model, params, data, n_loops, monitor)
        set_seed(0)
        relearn(model, data.relearn_forget, data.forget_eval, args["lr"], args["passes"], 30)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"seconds": seconds, "peak_mb": round(peak / 2**20, 1) if peak else None}


def measure(shape: str, workers: int, base: dict) -> dict:
    """Start ``workers`` processes at once; trials per hour over the whole wall time."""
    jobs = [{**base, "shape": shape} for _ in range(workers)]
    start = time.perf_counter()
    if workers == 1:
        results = [run_trials(jobs[0])]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(run_trials, jobs)
    wall = time.perf_counter() - start
    # Steady state: each worker's rate without its first (warm-up) trial, summed over workers.
    warm = [r["seconds"][1:] or r["seconds"] for r in results]
    per_trial = [s for w in warm for s in w]
    n_trials = sum(len(r["seconds"]) for r in results)
    steady = 3600 * sum(len(w) / sum(w) for w in warm)
    return {
        "shape": shape,
        "workers": workers,
        "trials": n_trials,
        "wall_s": round(wall, 1),
        "trials_per_hour_wall": round(n_trials / wall * 3600),
        "trials_per_hour_steady": round(steady),
        "mean_trial_s": round(sum(per_trial) / len(per_trial), 2),
        "peak_mb_per_worker": [r["peak_mb"] for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one JSON line per (shape, workers), then a summary table."""
    from mudman.defaults import CONF_DIR

    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--trials", type=int, default=3, help="trials per worker")
    parser.add_argument("--passes", type=int, default=300, help="unlearn = relearn passes")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    parser.add_argument(
        "--executed-passes", action="store_true", help="pass_accounting=executed (4-pass loops)"
    )
    args = parser.parse_args(argv)
    conf = CONF_DIR / "method" / "mudman.yaml"
    overrides = {"pass_accounting": "executed"} if args.executed_passes else {}
    base = {
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "trials": args.trials,
        "passes": args.passes,
        "batch": args.batch,
        "length": args.length,
        "lr": 1e-3,
        "method_yaml": str(conf),
        "method_overrides": overrides,
    }
    rows = []
    for shape in args.models:
        for workers in args.workers:
            row = measure(shape, workers, base)
            rows.append(row)
            print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"\n{name}, {args.passes} + {args.passes} passes, batch {args.batch} x {args.length}, "
        f"{args.dtype}"
    )
    print(f"{'model':<10} {'workers':>7} {'trials/h (wall)':>16} {'trials/h (steady)':>18}")
    for r in rows:
        print(
            f"{r['shape']:<10} {r['workers']:>7} {r['trials_per_hour_wall']:>16} "
            f"{r['trials_per_hour_steady']:>18}"
        )
    return 0
