"""scripts/compare_methods.py: the grid and the table built from trial records (synthetic)."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def _script():
    path = REPO / "scripts" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(
    method, status, objective=None, lr=1e-3, forget_after=None, per_loop=5, seconds=10.0, **timings
):
    losses = {"initial": {"forget_loss": 3.0, "retain_loss": 4.0}}
    if forget_after is not None:
        losses["after_unlearning"] = {"forget_loss": forget_after, "retain_loss": 4.01}
    return {
        "method": method,
        "setting": {"method.lr": lr},
        "status": status,
        "objective": objective,
        "passes": {"per_loop": per_loop, "loops": 120 // per_loop},
        "losses": losses,
        "timings": {"total_s": seconds, **timings},
        "baseline": {"objective": 3.25},
    }


RECORDS = [
    record("a", "completed", 3.5, lr=1e-3, forget_after=6.0, seconds=15, baseline_s=5),
    record("a", "completed", 4.1, lr=3e-3, forget_after=8.0, seconds=20),
    record("a", "rejected", lr=1e-2, seconds=3),
    record("b", "rejected", lr=1.0, per_loop=6, seconds=5),
    record("c", "completed", 3.3, lr=0.1, forget_after=3.1, per_loop=4, seconds=12),
]


def test_summarize_gives_exact_rows_per_method_and_a_baseline_row():
    rows = _script().summarize(RECORDS)
    a, b, c, base = rows
    assert a == {
        "method": "a",
        "passes_per_loop": 5,
        "loops": 24,
        "completed": 2,
        "rejected": 1,
        "best": 4.1,
        "best_setting": "lr=0.003",
        "mean": 3.8,
        "sem": 0.3,  # sample std 0.4243 / sqrt(2); the rejected trial does not count
        "forget_after_unlearning": 7.0,
        "seconds_per_trial": 11,  # (15 - 5 baseline + 20 + 3) / 3; rejected trials cost time
    }
    assert (b["completed"], b["rejected"], b["best"], b["mean"], b["sem"]) == (
        0,
        1,
        None,
        None,
        None,
    )
    assert (c["best"], c["mean"], c["sem"], c["passes_per_loop"]) == (3.3, 3.3, None, 4)
    assert base == {"method": "baseline (relearning only)", "baselines": [3.25]}


def test_table_renders_the_rows():
    lines = _script().table(RECORDS).splitlines()
    assert lines[2] == "| a | 5 | 24 | 2 / 1 | 4.100 (lr=0.003) | 3.800 ± 0.300 | 7.000 | 11 |"
    assert lines[3] == "| b | 6 | 20 | 0 / 1 | - | - | - | 5 |"
    assert lines[4] == "| c | 4 | 30 | 1 / 0 | 3.300 (lr=0.1) | 3.300 | 3.100 | 12 |"
    assert lines[5] == "| baseline (relearning only) | - | - | - | 3.250 | - | - | - |"
    assert len(lines) == 6


def test_every_default_method_has_a_grid_that_divides_the_budget():
    script = _script()
    for name in script.DEFAULT_METHODS:
        points = script.grid_points(name)
        assert len(points) >= 3 and all(len(p) == 1 for p in points)
        values = [next(iter(p.values())) for p in points]
        assert values == sorted(values) and len(set(values)) == len(values)


def test_resume_runs_only_the_missing_grid_points(tmp_path, monkeypatch):
    import json

    import mudman.trial

    script = _script()
    points = script.grid_points("mudman")
    assert len(points) == 3
    kept = {**record("mudman", "completed", 4.0, forget_after=7.0), "setting": points[0]}
    (tmp_path / "results.jsonl").write_text(json.dumps(kept) + "\n")
    ran = []

    def fake_run_trial(cfg):
        ran.append(float(cfg.method.unlearning_rate))
        return record("mudman", "completed", 3.9, forget_after=6.5)

    monkeypatch.setattr(mudman.trial, "run_trial", fake_run_trial)
    script.main(["--methods", "mudman", "--out", str(tmp_path), "--resume"])
    assert ran == [p["method.unlearning_rate"] for p in points[1:]]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["objective"] == 4.0
    assert "| mudman | 5 |" in (tmp_path / "table.md").read_text()
