"""The console people read (docs/console.md): bars only on terminals, log lines never glued
onto a bar, one log format, a sweep's progress and summary, timings that add up, a start-up
that does not import Optuna."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from mudman.console import bars_wanted, logs_above_bars
from mudman.redaction import RedactingFilter

from .conftest import REPO, tiny_sweep_command


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------ bars and log lines
def test_bars_only_when_both_console_streams_are_terminals(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    assert bars_wanted(True) and not bars_wanted(False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # redirected to a file / SLURM output
    assert not bars_wanted(True)
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not bars_wanted(True)


def _log_during_bar(monkeypatch, redirect: bool) -> str:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("mudman.test_console")
    logger.addHandler(handler)
    logger.propagate = False
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETTOKEN123456")
    try:
        with (
            logs_above_bars(redirect),
            tqdm(total=10, desc="unlearn", file=terminal, mininterval=0) as bar,
        ):
            bar.update(3)
            logger.info("eval 30 passes token=%s", "hf_SECRETTOKEN123456")
            bar.update(3)
    finally:
        logger.removeHandler(handler)
    assert handler.stream is terminal  # the handler gets its own stream back
    return terminal.getvalue()


def test_log_lines_are_written_above_the_bar_not_onto_it(monkeypatch):
    text = _log_during_bar(monkeypatch, redirect=True)
    frames = text.split("\r")
    line = next(f for f in frames if "eval 30 passes" in f)
    assert line.lstrip(" ").startswith("[mudman.test_console] eval 30 passes")  # own line
    assert "SECRETTOKEN" not in text  # the project's masking filter still applies
    assert "unlearn:  60%" in text  # the bar is redrawn after the line


def test_without_the_redirect_the_line_is_glued_onto_the_bar(monkeypatch):
    """What the redirect fixes: the same output without it (the behaviour before)."""
    text = _log_during_bar(monkeypatch, redirect=False)
    line = next(f for f in text.split("\r") if "eval 30 passes" in f)
    assert line.startswith("unlearn:")


def test_one_log_format_for_hydra_and_job_lines():
    from omegaconf import OmegaConf

    conf = REPO / "conf" / "hydra"
    hydra_fmt = OmegaConf.load(conf / "hydra_logging" / "redacted.yaml").formatters.simple.format
    job_fmt = OmegaConf.load(conf / "job_logging" / "colorlog_free.yaml").formatters.simple.format
    assert hydra_fmt == job_fmt and "HYDRA" not in hydra_fmt and "%(name)s" in hydra_fmt


# ------------------------------------------------------------------ timings
def test_time_parts_sum_to_total(compose, tmp_path, capsys):
    from mudman.cli import run

    record = run(compose(), tmp_path)
    timings = record["timings"]
    parts = {k: v for k, v in timings.items() if k != "total_s"}
    for key in ("preflight_s", "tracker_s", "load_s", "initial_eval_s", "unlearning_s", "other_s"):
        assert key in parts, key
    assert sum(parts.values()) == pytest.approx(timings["total_s"], abs=0.002)
    time_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("time:")
    )
    assert "preflight" in time_line and "initial_eval" in time_line and "total" in time_line


@pytest.mark.spawns
def test_a_run_into_a_file_holds_no_bar_frames_of_the_hf_libraries(
    text_files, trained_tiny_dir, tmp_path
):
    """A ``from_pretrained`` model draws transformers' "Loading weights" bar: off in a file."""
    from transformers.utils import logging as hf_logging

    env = {**os.environ, "WANDB_MODE": "disabled", "MUDMAN_CACHE": str(tmp_path / "cache")}
    cmd = [
        *tiny_sweep_command(text_files)[:3],  # python -m mudman (a single run)
        *tiny_sweep_command(text_files)[5:],
        f"model.path={trained_tiny_dir}",
        "progress=true",  # asked for, but the output is a file
        "unlearn_passes=10",
        "relearn_passes=2",
        "eval_every_passes=10",
        f"hydra.run.dir={tmp_path}/run",
    ]
    out = tmp_path / "out.log"
    with out.open("w") as handle:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    text = out.read_text()
    assert done.returncode == 0, text[-2000:]
    assert "objective" in text and "\r" not in text and "Loading weights" not in text
    from mudman.console import library_bars

    library_bars(False)
    assert not hf_logging.is_progress_bar_enabled()
    library_bars(True)  # a later run on a terminal gets them back
    assert hf_logging.is_progress_bar_enabled()


# ------------------------------------------------------------------ a sweep with workers
@pytest.fixture(scope="module")
def worker_sweep(text_files, tmp_path_factory):
    """A 2-worker sweep over a 2-study grid, its output captured as a file would be."""
    tmp = tmp_path_factory.mktemp("console_sweep")
    env = {**os.environ, "WANDB_MODE": "disabled", "MUDMAN_CACHE": str(tmp / "cache")}
    env.pop("MUDMAN_OPTUNA_STORAGE", None)
    cmd = [
        *tiny_sweep_command(text_files, sweeper="optuna"),
        "progress=true",  # asked for, but stdout is a file: no bars
        "unlearn_passes=30",
        "relearn_passes=10",
        "eval_every_passes=10",
        f"hydra.sweeper.storage=sqlite:///{tmp}/o.db",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.heartbeat_interval=1",
        f"hydra.sweep.dir={tmp}/multirun",
        "method=mudman,no_masking",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return proc, tmp


@pytest.mark.spawns
def test_worker_sweep_logs_progress_and_ends_with_a_summary(worker_sweep):
    proc, tmp = worker_sweep
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    progress = [line for line in output.splitlines() if "][INFO] - trials " in line]
    assert progress, output[-3000:]
    assert progress[-1].split(" - ", 1)[1].startswith("trials 4/4 (")  # 2 studies x 2 trials
    for study in ("jsonl-tiny-llama-mudman", "jsonl-tiny-llama-no_masking"):
        assert any(
            f"  {study}: " in line and "(2/2 valid); best " in line for line in output.splitlines()
        )
        assert (tmp / "multirun" / f"optimization_results.{study}.yaml").is_file()
    assert f"best values and parameters: {tmp}/multirun/optimization_results.*.yaml" in output
    assert (
        "next: python -m mudman.report --storage sqlite:///"
        f"{tmp}/o.db --studies '^(jsonl-tiny-llama-mudman|jsonl-tiny-llama-no_masking)$'"
    ) in output


def test_worker_sweep_logs_hold_no_bar_frames(worker_sweep):
    proc, tmp = worker_sweep
    assert proc.returncode == 0
    texts = [proc.stdout + proc.stderr]
    texts += [p.read_text() for p in Path(tmp, "multirun").glob("worker*.log")]
    texts += [p.read_text() for p in Path(tmp, "multirun").rglob("mudman.log")]
    assert len(texts) >= 4
    for text in texts:
        assert "\r" not in text and "[HYDRA]" not in text
    for record in Path(tmp, "multirun").rglob("results.json"):
        timings = json.loads(record.read_text())["timings"]
        parts = sum(v for k, v in timings.items() if k != "total_s")
        assert parts == pytest.approx(timings["total_s"], abs=0.002)


# ------------------------------------------------------------------ start-up
STARTUP_PROBE = """
import atexit, sys
atexit.register(lambda: print("OPTUNA_IMPORTED", "optuna" in sys.modules))
sys.argv = ["mudman", *sys.argv[1:]]
from mudman.cli import main
main()
"""


@pytest.mark.spawns
@pytest.mark.parametrize(
    "args", [["--cfg", "job"], ["--help"], ["hydra/sweeper=optuna", "--cfg", "hydra"]]
)
def test_start_up_does_not_import_optuna(args):
    """Hydra imports every plugin module on every run; the sweeper's must stay light."""
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "OPTUNA_IMPORTED False" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


# ------------------------------------------------------------------ summary and progress (units)
def test_progress_logs_changes_and_the_final_counts(caplog):
    from mudman.sweeping.summary import StudyState, watch_progress

    states = [
        [StudyState("a", None)],
        [StudyState("a", 2, {"RUNNING": 1})],
        [StudyState("a", 2, {"RUNNING": 1})],  # unchanged: not logged again
        [StudyState("a", 2, {"COMPLETE": 1, "PRUNED": 1})],  # read after the workers ended
    ]
    read = []

    def read_states():
        read.append(1)
        return states[len(read) - 1]

    with caplog.at_level(logging.INFO, logger="mudman.sweeping.summary"):
        watch_progress(lambda: len(read) >= 3, read_states, interval=0.01)
    assert len(read) == 4
    assert [r.getMessage() for r in caplog.records] == [
        "trials 0/? (0 complete, 0 pruned, 0 failed, 0 running)",
        "trials 0/2 (0 complete, 0 pruned, 0 failed, 1 running)",
        "trials 2/2 (1 complete, 1 pruned, 0 failed, 0 running)",
    ]


def test_summary_names_counts_best_results_and_next_command(monkeypatch, tmp_path):
    from mudman.sweeping.summary import StudyState, summary_lines

    monkeypatch.setenv("MUDMAN_OPTUNA_STORAGE", "postgresql://me:PW_77@db/x")
    states = [
        StudyState("a-b.c", 3, {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}, 1.5, {"method.lr": 0.01}),
        StudyState("d", 2, {"FAIL": 2}),
    ]
    lines = summary_lines(states, "postgresql://me:PW_77@db/x", tmp_path)
    assert lines[0] == "sweep summary: 2 studies in postgresql://me:***@db/x"
    assert (
        lines[1]
        == "  a-b.c: 2 complete, 1 pruned, 1 failed (3/3 valid); best 1.5000 at method.lr=0.01"
    )
    assert lines[2] == "  d: 0 complete, 0 pruned, 2 failed (0/2 valid); no completed trial"
    assert lines[3] == f"best values and parameters: {tmp_path}/optimization_results.*.yaml"
    # the storage comes from the environment: the report reads it too, so no URL (no password)
    assert lines[4] == r"next: python -m mudman.report --studies '^(a-b\.c|d)$'"
    assert not any("PW_77" in line for line in lines)
