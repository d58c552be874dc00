"""The robustness figures' data (mudman/report/robustness.py) from synthetic results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mudman.report.__main__ import main as report_main
from mudman.report.robustness import curve_series, gain_series, pick_trials, robustness_table


def _attack(label: str, lr: float, value: float) -> dict:
    name = label.split(" ")[0]
    curve = [[10, value + 1.0], [20, value]]
    return {
        "label": label,
        "name": name,
        "settings": {"name": name, "lr": lr},
        "value": value,
        "curve": curve,
        "passes": 20,
    }


def _write(root: Path, study: str, number: int, method: str, values: dict, base: dict) -> Path:
    attacks = [_attack(label, lr, v) for label, (lr, v) in values.items()]
    baseline = [_attack(label, lr, v) for label, (lr, v) in base.items()]
    record = {
        "status": "completed",
        "direction": "maximize",
        "objective": min(a["value"] for a in attacks),
        "attacks": attacks,
        "worst_attack": min(attacks, key=lambda a: a["value"])["label"],
        "baseline": {"objective": min(a["value"] for a in baseline), "attacks": baseline},
        "config": {
            "method": {"name": method},
            "objective": {"name": "forget_loss"},
            "sweep": {"trial_number": number},
        },
    }
    path = root / study / f"trial{number}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


BASE = {"sgd lr=0.01": (0.01, 3.0), "sgd lr=0.1": (0.1, 2.0), "lora lr=0.001": (0.001, 2.5)}


@pytest.fixture
def sweep(tmp_path) -> Path:
    # mudman: three trials; trial 2 is the best (worst case 3.0), trial 3 the last
    _write(
        tmp_path,
        "m",
        1,
        "mudman",
        {"sgd lr=0.01": (0.01, 4.0), "sgd lr=0.1": (0.1, 2.5), "lora lr=0.001": (0.001, 2.9)},
        BASE,
    )
    _write(
        tmp_path,
        "m",
        2,
        "mudman",
        {"sgd lr=0.01": (0.01, 5.0), "sgd lr=0.1": (0.1, 3.0), "lora lr=0.001": (0.001, 3.5)},
        BASE,
    )
    _write(
        tmp_path,
        "m",
        3,
        "mudman",
        {"sgd lr=0.01": (0.01, 4.5), "sgd lr=0.1": (0.1, 2.2), "lora lr=0.001": (0.001, 2.6)},
        BASE,
    )
    _write(
        tmp_path,
        "t",
        1,
        "tar",
        {"sgd lr=0.01": (0.01, 3.2), "sgd lr=0.1": (0.1, 2.0), "lora lr=0.001": (0.001, 2.5)},
        BASE,
    )
    rejected = tmp_path / "t" / "trial2" / "results.json"
    rejected.parent.mkdir(parents=True)
    rejected.write_text(json.dumps({"status": "rejected", "objective": None}))
    return tmp_path


def test_best_trial_per_method_and_its_gains_per_attack_lr(sweep):
    chosen = pick_trials([sweep], "best")
    assert [(c.method, c.name) for c in chosen] == [("mudman", "trial2"), ("tar", "trial1")]
    gains = gain_series(chosen)
    assert gains["sgd"]["mudman"] == [(0.01, 2.0, None, 1), (0.1, 1.0, None, 1)]
    assert gains["sgd"]["tar"] == [(0.01, pytest.approx(0.2), None, 1), (0.1, 0.0, None, 1)]
    assert gains["lora"]["mudman"] == [(0.001, 1.0, None, 1)]
    series = curve_series(chosen)
    first = next(s for s in series if s["trial"] == "trial2" and s["attack"] == "sgd lr=0.1")
    assert first["curve"] == [(10, 4.0), (20, 3.0)]
    assert first["baseline_curve"] == [(10, 3.0), (20, 2.0)]
    table = robustness_table(chosen)
    assert "| mudman | trial2 | sgd lr=0.1 | 3.0000 | 2.0000 | +1.0000 | yes |" in table


def test_last_n_trials_pool_into_mean_and_sem(sweep):
    chosen = pick_trials([sweep], "last", 2)
    assert [(c.method, c.name) for c in chosen] == [
        ("mudman", "trial2"),
        ("mudman", "trial3"),
        ("tar", "trial1"),
    ]
    (lr, mean, sem, n), _ = gain_series(chosen)["sgd"]["mudman"]
    assert (lr, n) == (0.01, 2) and mean == pytest.approx(1.75)  # gains 2.0 and 1.5
    assert sem == pytest.approx(0.25)


def test_the_report_cli_writes_both_figures(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        report_main(
            ["--robustness", str(sweep / "m"), str(sweep / "t" / "trial1"), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for name in ("robustness_curves.png", "robustness_gain.png", "robustness.md"):
        assert (out / name).stat().st_size > 0 and name in printed
    with pytest.raises(SystemExit):
        report_main(["--robustness", str(tmp_path / "missing"), "--out", str(out)])
