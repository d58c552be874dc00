"""W&B tracking: offline files where documented, and failures never kill a run."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from mudman.tracking import NullTracker, build_tracker
from mudman.trial import run_trial
from tests.conftest import WANDB_CFG


@pytest.mark.spawns
def test_offline_wandb_run_is_written_under_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = build_tracker(OmegaConf.create(WANDB_CFG), {"seed": 42}, tmp_path)
    assert tracker.run is not None
    tracker.log({"unlearn/forget_loss": 2.5}, step=0)
    tracker.log({"relearn/forget_loss": 3.0}, step=30)
    tracker.summary({"objective": 3.0})
    tracker.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_wandb_failure_warns_once_and_the_trial_goes_on(compose, monkeypatch, caplog, tmp_path):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError("no route to W&B")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = build_tracker(OmegaConf.create(WANDB_CFG), {}, tmp_path)
    with caplog.at_level(logging.WARNING):
        record = run_trial(compose(), tracker)
        tracker.finish()
    assert record["status"] == "completed"
    warnings = [r for r in caplog.records if "W&B" in r.getMessage()]
    assert len(warnings) == 1 and "no route to W&B" in warnings[0].getMessage()


def test_wandb_errors_during_logging_are_swallowed(tmp_path, caplog):
    tracker = build_tracker(OmegaConf.create({**WANDB_CFG, "mode": "disabled"}), {}, tmp_path)

    class Exploding:
        def log(self, *args, **kwargs):
            raise OSError("disk full")

        def finish(self, **kwargs):
            raise OSError("disk full")

    tracker.run = Exploding()
    with caplog.at_level(logging.WARNING):
        tracker.log({"x": 1.0}, step=1)
        tracker.log({"x": 2.0}, step=2)
        tracker.finish()
    assert sum("disk full" in r.getMessage() for r in caplog.records) == 1


def test_unknown_logger_is_refused():
    with pytest.raises(ValueError, match="allowed: wandb, none"):
        build_tracker(OmegaConf.create({"name": "mlflow"}), {}, None)
    assert isinstance(build_tracker(OmegaConf.create({"name": "none"}), {}, None), NullTracker)


def test_sweep_trials_get_one_wandb_run_each_grouped_by_study(tmp_path, monkeypatch):
    import wandb

    seen = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw) or None)
    config = {
        "sweep": {"study_name": "ablation-house-python-mudman", "trial_number": 7},
        "method": {"algorithm": "mudman"},
    }
    build_tracker(OmegaConf.create(WANDB_CFG), config, tmp_path)
    assert seen["group"] == "ablation-house-python-mudman"
    assert seen["name"] == "ablation-house-python-mudman-trial00007"
    assert seen["job_type"] == "trial"
    build_tracker(OmegaConf.create(WANDB_CFG), {"method": {"algorithm": "baseline"}}, tmp_path)
    assert seen["group"] == "g" and seen["job_type"] == "baseline" and seen["name"] is None
