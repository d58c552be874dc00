"""Chaos soak of the Optuna sweeper: kills, Ctrl-C, duplicate commands, a resume, a mismatch.

On tiny models and the real CLI (``python -m mudman -m hydra/sweeper=mudman_optuna``), all
on one study (SQLite by default, or ``--storage postgresql://...``):

1. a parent with ``hydra.sweeper.n_jobs=4`` (4 worker processes) plus a concurrent duplicate
   of the same command;
2. ``--kills`` times: once a trial is running, a random live process gets SIGKILL or SIGINT
   (workers, duplicates, and the parents: one SIGINT of the n_jobs parent, which forwards
   it to its workers, and one SIGKILL of a later parent, whose workers go on alone); each
   kill is followed by another duplicate command, as a cluster re-submits a task;
3. when all have exited, one clean resume of the same command;
4. a second experiment (another ``unlearn_passes``) on the same storage and study name.

Then it checks: exactly ``n_trials`` valid trials; every parameter set distinct; every
COMPLETE value = its trial attributes = its ``results.json``; the study's recorded config and
fingerprint never changed; the second experiment refused (exit 2, naming the key); nothing
RUNNING or WAITING. It prints the figures and writes them as JSON (``--out``).

    python scripts/soak_sweeps.py                      # SQLite, 16 trials, 6 kills (~3 min)
    python scripts/soak_sweeps.py --storage postgresql://user@host/db --trials 12 --kills 4
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STUDY = "soak"


def write_data(directory: Path) -> dict[str, Path]:
    """forget.jsonl (stdlib Python functions) and retain.jsonl (English), as the tests use."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing it prints the poem
        import this

    directory.mkdir(parents=True, exist_ok=True)
    code = []
    for name in ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "string.py", "ntpath.py"):
        source = (Path(sysconfig.get_paths()["stdlib"]) / name).read_text(encoding="utf-8")
        code += ["def " + chunk[:600] for chunk in source.split("\ndef ")[1:]]
    lines = [line for line in codecs.decode(this.s, "rot13").splitlines()[2:] if line]
    rng = random.Random(0)
    english = [" ".join(rng.sample(lines, 6)) for _ in range(200)]
    files = {"forget": directory / "forget.jsonl", "retain": directory / "retain.jsonl"}
    for side, texts in (("forget", code[:200]), ("retain", english)):
        files[side].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return files


def sweep_args(files: dict[str, Path], n_trials: int, *extra: str) -> list[str]:
    return [
        "-m",
        "hydra/sweeper=mudman_optuna",
        "model=tiny-llama",
        "data=jsonl",
        f"data.forget.local.path={files['forget']}",
        f"data.retain.local.path={files['retain']}",
        "logger=none",
        "progress=false",
        "batch_size=4",
        "context_len=32",
        "unlearn_passes=150",
        "relearn_passes=20",
        "eval_every_passes=10",
        "compare_baseline=false",
        "retain_loss_budget=100",
        f"hydra.sweeper.study_name={STUDY}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=3",
        "hydra.sweeper.max_failure_rate=1.0",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
        "method.adv_lr=tag(log, interval(1e-3, 1e-1))",
        *extra,
    ]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the workers of an n_jobs parent)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def running_pids(study) -> set[int]:
    """Pids of this host's processes running a trial (from the trials' ``process`` attr)."""
    if study is None:
        return set()
    from optuna.trial import TrialState

    host = socket.gethostname()
    pids = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get("process", "")).rpartition(":")
        if where == host and pid.isdigit():
            pids.add(int(pid))
    return pids


_STORAGES: dict[str, Any] = {}


def load(storage: str):
    """The study, through one storage object per URL: opening a storage (engine, schema check)
    takes seconds on a busy PostgreSQL, longer than a tiny trial, so the monitor would only
    ever see finished trials if it reconnected on every poll."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if storage not in _STORAGES:
            _STORAGES[storage] = optuna.storages.get_storage(storage)
        return optuna.load_study(study_name=STUDY, storage=_STORAGES[storage])
    except Exception:  # not created yet, the workers creating the schema, or a transient lock
        return None


def run_soak(
    storage: str,
    work: Path,
    n_trials: int = 16,
    kills: int = 6,
    seed: int = 0,
    timeout: float = 900,
    say=print,
) -> dict[str, Any]:
    """The soak (see the module docstring); returns its figures and the checks' outcomes."""
    from optuna.trial import TrialState

    rng = random.Random(seed)
    files = write_data(work / "data")
    env = {
        **os.environ,
        "MUDMAN_OPTUNA_STORAGE": storage,  # never on the command line (passwords)
        "MUDMAN_CACHE": str(work / "cache"),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.time()
    commands: list[tuple[str, subprocess.Popen]] = []

    def start(kind: str, *extra: str) -> subprocess.Popen:
        index = len(commands)
        log = (work / f"{index:02d}-{kind}.log").open("w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mudman",
                *sweep_args(files, n_trials, *extra),
                f"hydra.sweep.dir={work}/sweeps/{index:02d}-{kind}",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to one command never reaches the others
        )
        commands.append((kind, proc))
        return proc

    # Open the storage (engine, schema) before any command starts: opened later, beside the
    # workers creating the same schema, it waited 10-20 s on a loaded machine (PostgreSQL),
    # by which time every tiny trial had finished and there was nothing left to kill.
    load(storage)
    parent = start("parent", "hydra.sweeper.n_jobs=4")
    start("duplicate")
    snapshot = None
    workers_seen: set[int] = set()  # a SIGKILLed parent's workers are no children of ours
    parent_stopped = parent_killed = False
    events: list[dict[str, Any]] = []
    deadline = started + timeout
    while len(events) < kills and time.time() < deadline:
        study = load(storage)
        if study is None:
            time.sleep(0.5)
            continue
        if snapshot is None and study.user_attrs.get("fingerprint"):
            snapshot = {k: study.user_attrs.get(k) for k in ("config", "fingerprint")}
        trials = study.get_trials(deepcopy=False)
        valid = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        if valid >= n_trials - 1:
            break  # leave some work for the resume
        if not any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(0.3)
            continue
        time.sleep(rng.uniform(0.5, 3.0))
        live_parents = [p for k, p in commands if k == "parent" and p.poll() is None]
        for proc in live_parents:
            workers_seen.update(children(proc.pid))
        busy = running_pids(load(storage))  # processes in the middle of a trial
        number = len(events)
        newest = live_parents[-1] if live_parents else None
        if (
            number >= 1
            and not parent_stopped
            and newest is not None
            and busy & set(children(newest.pid))
        ):
            # Ctrl-C of the n_jobs parent while its workers are mid-trial: forwarded to them
            victim, sig, role = newest.pid, signal.SIGINT, "n_jobs parent"
            parent_stopped = True
        elif (
            parent_stopped
            and not parent_killed
            and newest is not None
            and busy & set(children(newest.pid))
        ):  # SIGKILL of the re-submitted parent while its workers are mid-trial
            victim, sig, role = newest.pid, signal.SIGKILL, "n_jobs parent"
            parent_killed = True
        else:
            workers = {pid for pid in workers_seen if alive(pid)}  # also a killed parent's
            singles = {p.pid for k, p in commands if k == "duplicate" and p.poll() is None}
            pool = [(pid, "worker" if pid in workers else "duplicate command") for pid in busy]
            pool = [(pid, role) for pid, role in pool if pid in workers | singles]
            if not pool:
                time.sleep(0.3)
                continue
            victim, role = rng.choice(sorted(pool))
            role += " (mid-trial)"
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGINT])
        try:
            os.kill(victim, sig)
        except ProcessLookupError:
            continue
        events.append({"t": round(time.time() - started, 1), "signal": sig.name, "target": role})
        say(f"[{events[-1]['t']:6.1f}s] {sig.name} -> {role} (pid {victim})")
        if role == "n_jobs parent" and sig == signal.SIGINT:
            start("parent", "hydra.sweeper.n_jobs=2")  # re-submitted: later SIGKILLed
        elif sum(p.poll() is None for _, p in commands) < 3:
            start("duplicate")
    for _kind, proc in commands:
        try:
            proc.wait(max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    while any(alive(pid) for pid in workers_seen) and time.time() < deadline:
        time.sleep(0.5)  # the orphaned workers of a SIGKILLed parent finish on their own
    time.sleep(1)
    say(f"[{time.time() - started:6.1f}s] chaos over; resuming with the same command")
    resume = start("resume")
    resume.wait(max(1.0, deadline - time.time()))
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "mudman",
            *sweep_args(files, n_trials, "unlearn_passes=50"),
            f"hydra.sweep.dir={work}/sweeps/second",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=max(60.0, deadline - time.time()),
    )
    figures = check_study(storage, snapshot)
    figures.update(
        kills=len(events),
        sigkill=sum(e["signal"] == "SIGKILL" for e in events),
        sigint=sum(e["signal"] == "SIGINT" for e in events),
        parent_signals=[e["signal"] for e in events if e["target"] == "n_jobs parent"],
        events=events,
        commands=len(commands),
        exit_codes=[p.returncode for _, p in commands],
        resume_exit=resume.returncode,
        second_experiment_exit=second.returncode,
        second_experiment_refused=second.returncode == 2
        and "holds another experiment" in second.stderr
        and "unlearn_passes: 150 -> 50" in second.stderr,
        second_experiment_message=second.stderr.strip().splitlines()[-1:],
        wall_s=round(time.time() - started, 1),
    )
    figures["stragglers"] = sum(alive(pid) for pid in workers_seen)
    figures["ok"] = bool(
        figures["valid"] == n_trials
        and figures["repeated_parameter_sets"] == 0
        and figures["mismatched_values"] == []
        and figures["config_unchanged"]
        and figures["running_or_waiting"] == 0
        and figures["second_experiment_refused"]
        and figures["resume_exit"] == 0
        and len(events) == kills
    )
    del parent
    return figures


def check_study(storage: str, snapshot: dict | None) -> dict[str, Any]:
    """The soak's checks on the final study."""
    from optuna.trial import TrialState

    study = load(storage)
    trials = study.get_trials(deepcopy=False)
    valid = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    keys = [tuple(sorted(t.params.items())) for t in valid]
    mismatched = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        path = Path(trial.user_attrs.get("run_dir", "")) / "results.json"
        try:
            recorded = json.loads(path.read_text())["objective"]
        except (OSError, ValueError, KeyError):
            recorded = None
        if not (trial.value == trial.user_attrs.get("objective") == recorded):
            mismatched.append(trial.number)
    fails = [t for t in trials if t.state == TrialState.FAIL]
    attrs = study.user_attrs
    return {
        "trials": len(trials),
        "valid": len(valid),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "repeated_parameter_sets": len(keys) - len(set(keys)),
        "mismatched_values": mismatched,
        "orphans_redone": sum(t.user_attrs.get("failure") is None for t in fails),
        "interrupted_redone": sum(t.user_attrs.get("failure") == "interrupted" for t in fails),
        "repeat_proposals_refused": sum(t.user_attrs.get("failure") == "duplicate" for t in fails),
        "crashed": sum(t.user_attrs.get("failure") == "crash" for t in fails),
        "running_or_waiting": sum(
            t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials
        ),
        "config_unchanged": snapshot is not None
        and all(attrs.get(k) == v for k, v in snapshot.items())
        and "config_changes" not in attrs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", help="default: a fresh SQLite database in --work")
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="mudman-soak-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{work}/soak.db"
    figures = run_soak(storage, work, args.trials, args.kills, args.seed, args.timeout)
    summary = {k: v for k, v in figures.items() if k != "events"}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"soak {'PASSED' if figures['ok'] else 'FAILED'}; logs in {work}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
