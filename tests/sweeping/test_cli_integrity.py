"""Issue 12 item 6 through the real CLI: Ctrl-C exits 130 in one line with the running trial
marked for an immediate redo. (Items 1 and 3 through the CLI: tests/sweeping/test_sweeper.py::
test_killed_sweep_resumes_with_exact_total.)"""

from __future__ import annotations

import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from tests.sweeping.test_sweeper import _sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAME = "jsonl-tiny-llama-mudman"


def _study(tmp_path):
    return optuna.load_study(study_name=NAME, storage=f"sqlite:///{tmp_path}/o.db")


@pytest.mark.spawns
def test_ctrl_c_exits_130_in_one_line_and_the_trial_is_redone_at_once(tmp_path, text_files):
    # a grace period far longer than the test: only the interrupt path can redo the trial
    slow = ("hydra.sweeper.heartbeat_interval=60", "hydra.sweeper.grace_period=900")
    slow += ("unlearn_passes=1500",)  # ~5 s per trial: long enough to be caught mid-way
    proc = _sweep(tmp_path, text_files, *slow, n_trials=1)
    # Interrupt mid-unlearning: wait for the trial's first unlearning log line (polling the study
    # for a RUNNING trial raced the trial's end on a loaded machine and the sweep finished).
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "unlearn " in line and " passes: " in line:
            break
    proc.send_signal(signal.SIGINT)
    output = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    lines = [x for x in output.splitlines() if "interrupted" in x]
    assert len(lines) == 1 and "marked for an immediate redo" in lines[0], output[-3000:]
    (stopped,) = _study(tmp_path).trials[:1]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["failure"] == "interrupted"

    start = time.time()
    proc = _sweep(tmp_path, text_files, *slow, n_trials=1)  # the same command again
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0 and time.time() - start < 900, output[-3000:]
    trials = _study(tmp_path).trials
    redo = trials[1]
    assert redo.params == stopped.params and redo.user_attrs.get("redo_of") == stopped.number
    assert TrialState.RUNNING not in [t.state for t in trials]
