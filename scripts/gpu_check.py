"""One command for a GPU box: CUDA correctness checks, then trials per hour, in one table.

    python -m scripts.gpu_check              # CUDA, one GPU (sized for < 8 min; see docs/gpu.md)
    python -m scripts.gpu_check --workers 1 4   # fewer worker counts
    python -m scripts.gpu_check --dry-run    # CPU, tiny sizes: the same code path (test suite)

Run it from the repository root: it uses the test suite's Listing 1 oracle (``tests/``).

Checks, each PASS or FAIL (exit code 1 if any fails):
- ``loop == oracle``: the MUDMAN method on the device, float32 with TF32 off, for 5 loops on a
  tiny Llama, against the CPU transcription of the paper's Listing 1
  (``tests/methods/mudman/test_loop.py::listing_one``); and on a tiny GPT-NeoX (its own target
  modules) against the same method on the CPU. The targeted weights must agree to 1e-5.
- ``bf16 update``: the same loops in bfloat16 on the device on a Llama-shaped model. The
  update (weights after - before) must be finite and within ``BF16_MAX_REL_ERROR`` of the
  float32 CPU update (bf16 rounds; a real bug makes the error ~1 or more).
Benchmarks (numbers, no pass/fail):
- ``python -m scripts.bench gpu`` for the pythia-14m shape with 1/4/8/16 worker processes.
- ``python -m scripts.bench sweep``'s ``run_study``: one real study per worker count through
  the sweeper. The model is pythia-14m's shape (random weights saved to a temporary directory,
  so no Hub), the data are JSONL written from the Python stdlib's source and the Zen of Python.
  Paper budgets: 300 + 300 passes, batch 16 x 100.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from scripts.bench import gpu as bench_gpu
from scripts.bench import sweep as bench_sweep

BF16_MAX_REL_ERROR = 0.25  # measured on CPU bf16 (docs/gpu.md); a wrong update is >= 1
WORKERS = [1, 4, 8, 16]


def _method_on(model, device: torch.device, dtype: torch.dtype, data, targets=("gate_proj",)):
    """Run the real MUDMAN method (the test's config) for 5 loops on ``device``/``dtype``."""
    from mudman.methods import build_method
    from tests.method_helpers import never_reject, prepare
    from tests.methods.mudman.test_loop import method_cfg

    model = model.to(device=device, dtype=dtype)
    moved = dataclasses.replace(  # the batch lists on the device; other fields as they are
        data,
        **{
            f.name: [b.to(device) for b in getattr(data, f.name)]
            for f in dataclasses.fields(data)
            if isinstance(getattr(data, f.name), list)
        },
    )
    params = prepare(model, targets)
    build_method(method_cfg()).unlearn(model, params, moved, 5, never_reject())
    return model


def _targeted(model) -> torch.Tensor:
    return torch.cat(
        [
            p.detach().float().cpu().flatten()
            for n, p in model.named_parameters()
            if "gate_proj" in n or "dense_h_to_4h" in n
        ]
    )


def _close(got: torch.Tensor, want: torch.Tensor) -> tuple[float, bool]:
    err = (got - want).abs().max().item()
    return err, math.isfinite(err) and err <= 1e-6 + 1e-5 * want.abs().max().item()


def check_loop_equals_oracle(device: torch.device) -> list[dict]:
    """Llama: the method on the device == the CPU Listing 1 transcription; GPT-NeoX (its own
    target modules): the method on the device == the method on the CPU."""
    from mudman.models.tiny import tiny_gpt_neox, tiny_llama
    from tests.method_helpers import make_data
    from tests.methods.mudman.test_loop import listing_one, method_cfg

    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 on the GPU for this check
    try:
        data = make_data()
        ours = _targeted(_method_on(tiny_llama(seed=1), device, torch.float32, data))
        oracle = _targeted(listing_one(tiny_llama(seed=1), data, method_cfg(), n_loops=5))
        err, ok = _close(ours, oracle)
        rows = [_row("loop == Listing 1 oracle (llama, fp32)", f"max |diff| {err:.2e}", ok)]
        neox = ("dense_h_to_4h",)
        ours = _targeted(_method_on(tiny_gpt_neox(seed=1), device, torch.float32, data, neox))
        cpu = _targeted(
            _method_on(tiny_gpt_neox(seed=1), torch.device("cpu"), torch.float32, data, neox)
        )
        err, ok = _close(ours, cpu)
        rows.append(
            _row(f"loop {device.type} == cpu (gpt_neox, fp32)", f"max |diff| {err:.2e}", ok)
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return rows


def check_bf16_update(device: torch.device) -> list[dict]:
    from mudman.models.tiny import tiny_llama
    from tests.method_helpers import make_data

    data = make_data()
    before = _targeted(tiny_llama(seed=3, hidden=64))
    ref = _targeted(
        _method_on(tiny_llama(seed=3, hidden=64), torch.device("cpu"), torch.float32, data)
    )
    got = _targeted(_method_on(tiny_llama(seed=3, hidden=64), device, torch.bfloat16, data))
    update, ref_update = got - before, ref - before
    err = ((update - ref_update).norm() / ref_update.norm()).item()
    ok = math.isfinite(err) and err <= BF16_MAX_REL_ERROR
    return [_row("bf16 update (llama, 5 loops)", f"relative error {err:.3f}", ok)]


def bench_gpu_rows(device: torch.device, dry: bool, workers: list[int]) -> list[dict]:
    args = ["--device", str(device), "--models", "pythia14m", "--trials", "1" if dry else "2"]
    args += ["--workers", *map(str, [1] if dry else workers)]
    if dry:
        args += ["--passes", "10", "--batch", "2", "--length", "16"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_gpu.main(args)
    rows = []
    for line in out.getvalue().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows.append(
                _row(
                    f"bench_gpu pythia14m shape, {r['workers']} workers",
                    f"{r['trials_per_hour_wall']} trials/h wall, "
                    f"{r['trials_per_hour_steady']} steady",
                )
            )
    return rows


def _pythia_shaped_model(directory: Path) -> None:
    """pythia-14m's architecture (GPT-NeoX 6 x 128, 50,304 vocab), random weights, saved with
    the byte tokenizer: the cost of a pythia-14m trial without the Hub."""
    from mudman.models.tiny import byte_tokenizer, tiny_gpt_neox

    tiny_gpt_neox(seed=0, hidden=128, layers=6, vocab=50304).save_pretrained(directory)
    byte_tokenizer().save_pretrained(directory)


def _texts(directory: Path, n: int = 1000) -> dict[str, Path]:
    """forget: 600-character pieces of the Python stdlib's source; retain: English (the Zen of
    Python's lines, recombined as in tests/conftest.py). Enough for batches of 16 x 100."""
    import sysconfig

    from tests.conftest import _english

    pieces: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        source = path.read_text(errors="replace")
        pieces += [source[i : i + 600] for i in range(0, len(source) - 600, 600)]
        if len(pieces) >= n:
            break
    with contextlib.redirect_stdout(io.StringIO()):  # ``import this`` prints the Zen
        english = _english(n)
    files = {"forget": directory / "forget.jsonl", "retain": directory / "retain.jsonl"}
    for side, texts in (("forget", pieces[:n]), ("retain", english)):
        with files[side].open("w") as handle:
            for text in texts:
                handle.write(json.dumps({"text": text}) + "\n")
    return files


def bench_sweep_rows(device: torch.device, dry: bool, work: Path, workers: list[int]) -> list[dict]:
    files = _texts(work)
    label = "tiny-gpt-neox" if dry else "pythia-14m shape"
    if dry:
        model = ["model=tiny-gpt-neox"]
        budget = ["unlearn_passes=10", "relearn_passes=10", "batch_size=2", "context_len=16"]
        budget.append("eval_every_passes=10")
    else:
        _pythia_shaped_model(work / "pythia14m")
        model = ["model=pythia-14m", f"model.path={work / 'pythia14m'}", "model.relearn_lr=1e-3"]
        budget = ["unlearn_passes=300", "relearn_passes=300", "batch_size=16", "context_len=100"]
    overrides = [
        *model,
        *budget,
        "data=jsonl",
        f"data.forget.local.path={files['forget']}",
        f"data.retain.local.path={files['retain']}",
        f"device={device.type}",
        f"paths.cache_dir={work / 'cache'}",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    args = types.SimpleNamespace(trials=2 if dry else max(16, *workers))
    rows, first = [], None
    for n_jobs in [1] if dry else workers:
        r = bench_sweep.run_study(args, overrides, work, n_jobs)
        rate = 3600 * r["n"] / r["wall"]
        first = first or rate
        complete = r["states"]["COMPLETE"] == args.trials
        rows.append(
            _row(
                f"bench_sweep {label}, {n_jobs} workers",
                f"{rate:.0f} trials/h ({rate / first:.2f}x), {r['n']} trials, {r['wall']:.0f} s",
                complete,
            )
        )
    return rows


def _row(check: str, result: str, ok: bool | None = None) -> dict:
    return {"check": check, "result": result, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (test suite)")
    parser.add_argument("--skip-bench", action="store_true", help="correctness checks only")
    parser.add_argument("--workers", type=int, nargs="+", default=WORKERS, help="worker counts")
    args = parser.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("gpu_check: no CUDA device; use --dry-run to exercise it on the CPU", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = [*check_loop_equals_oracle(device), *check_bf16_update(device)]
    if not args.skip_bench:
        rows += bench_gpu_rows(device, args.dry_run, args.workers)
        with tempfile.TemporaryDirectory(prefix="mudman-gpu-check-") as work:
            rows += bench_sweep_rows(device, args.dry_run, Path(work), args.workers)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)"
    print(f"\ngpu_check on {name}, torch {torch.__version__}, {time.perf_counter() - start:.0f} s")
    width = max(len(r["check"]) for r in rows)
    print(f"{'check':<{width}}  {'result':<60}  status")
    for r in rows:
        status = {True: "PASS", False: "FAIL", None: "-"}[r["ok"]]
        print(f"{r['check']:<{width}}  {r['result']:<60}  {status}")
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
