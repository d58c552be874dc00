"""The benchmarks (``python -m scripts.bench``) run end to end on CPU with tiny settings
(numbers are not checked)."""

from __future__ import annotations

import json

import pytest

from scripts.bench import gpu as bench_gpu
from scripts.bench import precision as bench_precision
from scripts.bench import sweep as bench_sweep
from scripts.bench import trial as bench_trial
from tests.conftest import REPO, tiny_jsonl_args


def _tiny(text_files, tmp_path) -> list[str]:
    """The tiny model and fixture texts at batch 4 x 32, caching under ``tmp_path``."""
    return [
        *tiny_jsonl_args(text_files),
        f"paths.cache_dir={tmp_path}",
        "batch_size=4",
        "context_len=32",
    ]


@pytest.mark.spawns
def test_bench_trial_reports_ratios(text_files, tmp_path):
    overrides = [
        *_tiny(text_files, tmp_path),
        "unlearn_passes=20",
        "relearn_passes=10",
        "eval_every_passes=10",
        "retain_loss_budget=10",
    ]
    result = bench_trial.bench(overrides, loops=3, relearn_steps=2, full_trial=True)
    assert result["passes_per_loop"] == 5 and result["overhead_ratio"] > 0
    assert result["relearn_steps_per_s"] > 0 and result["trial"]["status"] == "completed"
    assert result["memory"]["size_targeted_mb"] < result["memory"]["size_model_mb"]


def test_bench_gpu_runs_on_cpu(capsys):
    args = ["--device", "cpu", "--models", "house", "--workers", "1", "--trials", "2"]
    assert bench_gpu.main([*args, "--passes", "10", "--batch", "2", "--length", "16"]) == 0
    out = capsys.readouterr().out
    assert '"shape": "house"' in out and "trials/h" in out


@pytest.mark.spawns
def test_bench_sweep_compares_worker_counts_through_the_real_sweeper(text_files, tmp_path, capsys):
    overrides = [*tiny_jsonl_args(text_files), f"paths.cache_dir={tmp_path}"]
    bench = bench_sweep
    assert bench.main(["--trials", "2", *overrides, "--n-jobs", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 worker(s): 2 trials {'RUNNING': 0, 'COMPLETE': 2" in out
    assert "2 worker(s): 2 trials {'RUNNING': 0, 'COMPLETE': 2" in out
    assert "concurrency" in out and "vs 1 worker(s)" in out


def test_bench_precision_checks_updates_before_timing(text_files, tmp_path, capsys):
    bench = bench_precision
    options = ["--variants", "float32,bfloat16", "--loops", "1", "--rounds", "1"]
    args = [*_tiny(text_files, tmp_path), *options]
    assert bench.main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert set(result["seconds_per_loop"]) == {"float32", "bfloat16"}
    errors = result["relative_update_error_vs_float32"]
    assert errors["float32"] == 0 and 0 < errors["bfloat16"] < 2  # bf16 rounds the update


def test_bench_memory_peaks_are_per_phase_not_the_process_high_water_mark():
    """A phase's peak is its own: a larger earlier allocation must not show up in it."""
    import torch

    bench = bench_trial
    cpu = torch.device("cpu")
    big = torch.ones(64 * 2**20)  # 256 MiB, touched
    del big
    resident = bench.reset_peak(cpu)
    small = torch.ones(16 * 2**20)  # 64 MiB
    extra = bench.peak_bytes(cpu) - resident
    del small
    assert 60 * 2**20 <= extra < 128 * 2**20, extra / 2**20


def test_one_entry_point_lists_every_benchmark_and_dispatches_to_it(capsys):
    """``python -m scripts.bench``: --help gives each benchmark module with its one-line
    summary; a name runs that module's own parser; an unknown name is refused, naming them."""
    import pytest

    from scripts.bench.__main__ import BENCHMARKS, main

    modules = sorted(p.stem for p in (REPO / "scripts" / "bench").glob("*.py"))
    assert sorted(BENCHMARKS) == [m for m in modules if m not in ("__init__", "__main__", "common")]
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "  trial " in listing and "Where a trial's time and memory go" in listing
    assert len(listing.strip().splitlines()) == 2 + len(BENCHMARKS)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m scripts.bench sweep" in capsys.readouterr().out
    assert main(["nope"]) == 2
    assert "unknown benchmark 'nope'; allowed: trial, precision" in capsys.readouterr().err
