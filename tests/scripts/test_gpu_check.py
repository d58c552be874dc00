"""``python -m scripts.gpu_check --dry-run``: the GPU box's one command, on the CPU, tiny."""

from __future__ import annotations

import pytest

from scripts import gpu_check


@pytest.mark.spawns
def test_gpu_check_dry_run_prints_one_table_of_checks_and_benchmarks(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("gpu_check on cpu (dry run)") :].splitlines()
    assert table[1].split() == ["check", "result", "status"]
    rows = {line.rsplit(None, 1)[0].split("  ")[0]: line.rsplit(None, 1)[1] for line in table[2:]}
    assert rows == {
        "loop == Listing 1 oracle (llama, fp32)": "PASS",
        "loop cpu == cpu (gpt_neox, fp32)": "PASS",
        "bf16 update (llama, 5 loops)": "PASS",
        "bench_gpu pythia14m shape, 1 workers": "-",
        "bench_sweep tiny-gpt-neox, 1 workers": "PASS",  # the study got all its trials
    }
    assert "trials/h" in out


def test_gpu_check_reports_a_failing_check(monkeypatch):
    (row,) = gpu_check.check_bf16_update(gpu_check.torch.device("cpu"))
    error = float(row["result"].split()[-1])
    assert row["ok"] and 0 < error < gpu_check.BF16_MAX_REL_ERROR  # bf16 does round
    monkeypatch.setattr(gpu_check, "BF16_MAX_REL_ERROR", error / 2)
    (row,) = gpu_check.check_bf16_update(gpu_check.torch.device("cpu"))
    assert row["ok"] is False
