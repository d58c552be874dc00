"""Injected faults: kills during writes, crashing and non-finite trials through the real sweeper,
full or unwritable disks, broken W&B, memory over a long sweep, pickle weights, secrets, umask.

Each test injects the fault itself (offline, tiny models, no root tricks) and checks the
outcome docs/reliability.md gives for it. Worker kills on shared studies live in
tests/sweeping/test_sweeper.py and tests/sweeping/test_postgres.py.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

from mudman.errors import ConfigError
from mudman.preflight import check_dirs, check_output_dir
from mudman.redaction import RedactingFilter, mask_url, redact, secret_values
from mudman.results import process_memory

from .conftest import REPO, WANDB_CFG, tiny_jsonl_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment for child processes: they import this checkout's code."""
    return {
        **os.environ,
        "WANDB_MODE": "disabled",
        "MUDMAN_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",  # tiny models: more threads only contend on a shared machine
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def _tiny_args(text_files) -> list[str]:
    return [
        *tiny_jsonl_args(text_files),
        "logger=none",
        "progress=false",
        "batch_size=4",
        "context_len=32",
        "unlearn_passes=5",
        "relearn_passes=2",
        "eval_every_passes=5",
        "compare_baseline=false",
        "retain_loss_budget=1.0",
    ]


# ------------------------------------------------------------------ atomic results
WRITER = """
import sys
from pathlib import Path
from mudman.results import write_json_atomic
path, n = Path(sys.argv[1]), 0
while True:  # ~1 MB records, each self-consistent: a torn write would not parse or not match
    n += 1
    write_json_atomic({"n": n, "payload": [n] * 100_000, "end": n}, path)
    if n == 1:
        print("first record written", flush=True)
"""


@pytest.mark.spawns
def test_a_killed_writer_never_leaves_a_partial_results_json(tmp_path):
    path = tmp_path / "results.json"
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "first record written"
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)  # most likely mid-write: each record takes a while
        proc.wait()
        proc.stdout.close()
        record = json.loads(path.read_text())  # the last complete record, never a torn one
        assert record["end"] == record["n"] and record["payload"] == [record["n"]] * 100_000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "results.json"]
    assert all(name.startswith(".results-") for name in leftovers)  # only hidden temp files


# ------------------------------------------------------------------ crashes through the sweeper
FAULTY_SWEEP = """
import math, sys
import torch
import mudman.trial

PLAN = {1: MemoryError("host RAM exhausted (injected)"),
        2: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB (injected)"),
        3: math.inf, 4: math.nan, 5: RuntimeError("plain bug (injected)")}

def fake_trial(cfg, tracker=None, method=None):
    planned = PLAN.get(cfg.sweep.trial_number, 1.0 + cfg.sweep.trial_number)
    if isinstance(planned, BaseException):
        raise planned
    return {"status": "completed", "objective": planned, "losses": {}, "timings": {}}

mudman.trial.run_trial = fake_trial
from mudman.cli import main
sys.argv = ["mudman", *sys.argv[1:]]
main()
"""


@pytest.mark.spawns
def test_oom_exceptions_and_non_finite_objectives_are_recorded_and_the_sweep_goes_on(
    tmp_path, text_files
):
    url = f"sqlite:///{tmp_path}/o.db"
    args = [
        "-m",
        "hydra/sweeper=mudman_optuna",
        *_tiny_args(text_files),
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.max_failure_rate=0.9",
        "hydra.sweeper.study_name=faulty",
        f"hydra.sweep.dir={tmp_path}/multirun",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    result = subprocess.run(
        [sys.executable, "-c", FAULTY_SWEEP, *args],
        env=_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    study = optuna.load_study(study_name="faulty", storage=url)
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.COMPLETE,  # 0
        TrialState.FAIL,  # 1 MemoryError
        TrialState.FAIL,  # 2 torch.OutOfMemoryError
        TrialState.PRUNED,  # 3 inf
        TrialState.PRUNED,  # 4 nan
        TrialState.FAIL,  # 5 RuntimeError
        TrialState.COMPLETE,  # 6: the sweep went on to its total of 4 valid trials
    ]
    attrs = [t.user_attrs for t in study.trials]
    assert attrs[1]["failure_reason"] == "out of memory" and attrs[1]["error_type"] == "MemoryError"
    assert attrs[2]["failure_reason"] == "out of memory"
    assert attrs[2]["error_type"] == "OutOfMemoryError" and "Tried to allocate" in attrs[2]["error"]
    assert "non-finite objective inf" in attrs[3]["rejection_reason"]
    assert "non-finite objective nan" in attrs[4]["rejection_reason"]
    assert attrs[5]["failure_reason"] == "exception" and "plain bug" in attrs[5]["error"]
    assert [t.value for t in study.trials if t.state == TrialState.COMPLETE] == [1.0, 7.0]


# ------------------------------------------------------------------ disk full, unwritable dirs
def test_disk_full_is_refused_at_start(compose, tmp_path, monkeypatch):
    import shutil as real_shutil

    from mudman import preflight

    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage._replace(free=5 * 2**20))
    with pytest.raises(ConfigError, match=r"hydra\.run\.dir=.*only 5 MiB free.*min_free_mb=200"):
        check_dirs(compose(), tmp_path / "run")


def test_output_dir_under_a_file_is_refused_at_start(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"hydra\.run\.dir=.*not-a-dir.* is a file"):
        check_output_dir(blocker / "run", "hydra.run.dir", 0)
    with pytest.raises(ConfigError, match=r"paths\.cache_dir=.*is a file; allowed: a writable"):
        check_output_dir(blocker, "paths.cache_dir", 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: chmod cannot deny it")
def test_unwritable_output_dir_is_refused_at_start(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ConfigError, match=r"hydra\.run\.dir=.*is not writable"):
            check_output_dir(locked / "run", "hydra.run.dir", 0)
    finally:
        locked.chmod(stat.S_IRWXU)


def _cli(tmp_path, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "mudman", *args],
        env=_env(tmp_path, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["hydra.run.dir={blocker}/run"], "hydra.run.dir='{blocker}/run' cannot be created"),
        (
            ["preflight.min_free_mb=1e12", "hydra.run.dir={tmp}/run"],
            "hydra.run.dir='{tmp}/run': only ",
        ),
        (
            ["paths.cache_dir={blocker}", "hydra.run.dir={tmp}/run"],
            "paths.cache_dir='{blocker}' is a file",
        ),
        (
            ["-m", "hydra/sweeper=mudman_optuna", "hydra.sweep.dir={blocker}/sweep"],
            "hydra.sweep.dir='{blocker}/sweep' cannot be created",
        ),
    ],
    ids=["run-dir-under-a-file", "disk-full", "cache-dir-is-a-file", "sweep-dir-under-a-file"],
)
@pytest.mark.spawns
def test_cli_refuses_bad_output_dirs_before_hydra_writes_or_a_model_loads(tmp_path, args, message):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    # the default model is the offline SmolLM2 asset, absent from this empty cache: the
    # directory error must come first, before Hydra's own files and any model
    result = _cli(tmp_path, *(a.format(blocker=blocker, tmp=tmp_path) for a in args))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert message.format(blocker=blocker, tmp=tmp_path) in output, output[-2000:]
    assert "Traceback" not in output and "not prepared" not in output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ W&B misconfigured/unreachable


def test_wandb_bad_mode_disables_it_for_the_run_and_says_so_once(tmp_path, caplog):
    from mudman.tracking import build_tracker

    with caplog.at_level(logging.WARNING):
        tracker = build_tracker(OmegaConf.create({**WANDB_CFG, "mode": "bogus"}), {}, tmp_path)
        for step in range(3):
            tracker.log({"unlearn/forget_loss": 1.0}, step=step)
        tracker.summary({"objective": 1.0})
        tracker.finish()
    assert tracker.run is None
    messages = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(messages) == 1 and "logger.mode='bogus'" in messages[0]


def test_wandb_unreachable_online_falls_back_to_offline_once_per_process(
    tmp_path, caplog, monkeypatch
):
    import wandb

    from mudman.tracking import build_tracker, wandb_tracker

    monkeypatch.setattr(wandb_tracker, "_ONLINE_FAILED", [])
    modes = []

    class Run:
        summary: dict = {}  # noqa: RUF012 - a stand-in

        def log(self, *args, **kwargs):
            pass

        def finish(self, **kwargs):
            pass

    def fake_init(mode, **kwargs):
        modes.append(mode)
        if mode == "online":
            raise ConnectionError("api.wandb.ai unreachable (injected)")
        return Run()

    monkeypatch.setattr(wandb, "init", fake_init)
    online = OmegaConf.create({**WANDB_CFG, "mode": "online"})
    with caplog.at_level(logging.INFO):
        first = build_tracker(online, {}, tmp_path / "t0")
        second = build_tracker(online, {}, tmp_path / "t1")  # the next trial of the sweep
    assert modes == ["online", "offline", "offline"]  # never waits on the dead server twice
    assert first.run is not None and second.run is not None  # metrics kept, to sync later
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "logging offline" in warnings[0]


# ------------------------------------------------------------------ memory over a long sweep
def test_memory_stays_flat_over_twenty_trials_in_one_process(compose, tmp_path, capsys):
    from mudman.cli import run
    from mudman.sweeping.runner import StudySpec, TrialOutcome, run_study
    from mudman.sweeping.space import parse_space
    from mudman.sweeping.storage import make_storage

    base = compose("unlearn_passes=5", "relearn_passes=2", "eval_every_passes=5")
    url = f"sqlite:///{tmp_path}/o.db"
    rss: dict[int, float] = {}

    def trial_fn(overrides: list[str], number: int) -> TrialOutcome:
        cfg = copy.deepcopy(base)  # what Hydra's per-trial composition hands the task
        for override in overrides:
            key, _, value = override.partition("=")
            OmegaConf.update(cfg, key, float(value))
        record = run(cfg, tmp_path / f"trial{number}")
        rss[number + 1] = process_memory()["rss_mb"]
        return TrialOutcome("completed", record["objective"])

    spec = StudySpec(
        name="memory",
        storage_url=url,
        storage=make_storage(url, 10, 30),
        directions=["maximize"],
        n_trials=20,
        space=parse_space({"method.unlearning_rate": "tag(log, interval(1e-4, 1e-1))"}),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared machine
    try:
        run_study(spec, trial_fn, heartbeat_interval=10)
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert len(rss) == 20
    growth = rss[20] - rss[5]
    assert growth < 30, f"RSS grew {growth:.1f} MiB from trial 5 to 20: {rss}"


# ------------------------------------------------------------------ pickle, remote code
def _bin_only_dir(path: Path) -> Path:
    from mudman.models.tiny import byte_tokenizer, tiny_llama

    model = tiny_llama(seed=3)
    model.config.save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")  # a pickle-based checkpoint
    return path


def test_pickle_checkpoints_are_refused_unless_allowed(compose, tmp_path):
    from mudman.models.loading import load_model_and_tokenizer
    from mudman.preflight import check_model

    directory = _bin_only_dir(tmp_path / "bin-only")
    cfg = compose(f"model.path={directory}")
    with pytest.raises(ConfigError, match=r"only pickle-based weights \(pytorch_model\.bin\)"):
        check_model(cfg)  # before any weights are read
    with pytest.raises(ConfigError, match=r"model\.allow_pickle=true"):
        load_model_and_tokenizer(cfg.model, torch.device("cpu"), torch.float32)
    allowed = compose(f"model.path={directory}", "model.allow_pickle=true")
    check_model(allowed)
    model, _ = load_model_and_tokenizer(allowed.model, torch.device("cpu"), torch.float32)
    assert model.model.embed_tokens.weight.shape[0] == 257


def test_trust_remote_code_is_off_and_weights_are_safetensors_only(tmp_path, monkeypatch):
    import transformers

    from mudman.models.loading import load_model_and_tokenizer
    from mudman.models.tiny import byte_tokenizer, tiny_llama

    tiny_llama().save_pretrained(tmp_path)  # safetensors
    byte_tokenizer().save_pretrained(tmp_path)

    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(location, **kwargs):
        seen.update(kwargs)
        return real(location, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    cfg = OmegaConf.create({"name": "x", "path": str(tmp_path), "dtype": "float32"})
    load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)  # keys missing: both off
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    for yaml in (REPO / "conf" / "model").glob("*.yaml"):
        shipped = OmegaConf.load(yaml)
        assert shipped.trust_remote_code is False and shipped.allow_pickle is False, yaml.name


# ------------------------------------------------------------------ secrets
def test_redaction_masks_url_passwords_tokens_and_secret_keys(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_TOKENVALUE123")
    monkeypatch.setenv("MUDMAN_OPTUNA_STORAGE", "postgresql://me:EnvPassw0rd@db/x")
    assert mask_url("postgresql://me:p@ssw0rd@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_url("https://h/x?token=abc&y=1") == "https://h/x?token=***&y=1"
    assert mask_url("sqlite:///outputs/optuna.db") == "sqlite:///outputs/optuna.db"
    assert {"hf_TOKENVALUE123", "EnvPassw0rd"} <= set(secret_values())
    record = {
        "model": {"token": "anything", "tokenizer": "bytes", "name": "x"},
        "error": "auth failed for hf_TOKENVALUE123 at postgresql://me:zz@db/x",
        "list": ["hf_TOKENVALUE123"],
    }
    clean = redact(record)
    assert clean["model"] == {"token": "***", "tokenizer": "bytes", "name": "x"}
    assert "hf_TOKENVALUE123" not in json.dumps(clean) and "zz@" not in json.dumps(clean)
    logged = logging.LogRecord(
        "x", logging.INFO, "f", 1, "storage %s", ("postgresql://a:b1@h",), None
    )
    RedactingFilter().filter(logged)
    assert logged.getMessage() == "storage postgresql://a:***@h"


def test_results_and_wandb_config_hold_no_tokens(compose, tmp_path, monkeypatch):
    import wandb

    from mudman.cli import run

    secret = "hf_SUPERSECRET_0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("WANDB_API_KEY", "wandb_SECRET_abcdef0123")
    sent = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: sent.update(kw) or None)
    cfg = compose("logger=wandb", "logger.mode=offline", "+model.token=${oc.env:HF_TOKEN}")
    run(cfg, tmp_path / "run")
    text = (tmp_path / "run" / "results.json").read_text()
    assert json.loads(text)["config"]["model"]["token"] == "***"
    for blob in (text, json.dumps(sent["config"], default=str)):
        assert secret not in blob and "wandb_SECRET" not in blob


@pytest.mark.spawns
def test_storage_password_on_the_command_line_is_refused(tmp_path):
    result = _cli(
        tmp_path,
        "-m",
        "hydra/sweeper=mudman_optuna",
        "hydra.sweeper.storage=postgresql://me:CMDLINE_SECRET@127.0.0.1:1/db",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "postgresql://me:***@127.0.0.1:1/db" in output and "MUDMAN_OPTUNA_STORAGE" in output
    assert "CMDLINE_SECRET" not in output
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(b"CMDLINE_SECRET" in p.read_bytes() for p in files)


@pytest.mark.spawns
def test_unreachable_storage_is_a_clear_error_without_the_password(tmp_path, text_files):
    result = _cli(
        tmp_path,
        "-m",
        "hydra/sweeper=mudman_optuna",
        *_tiny_args(text_files),
        f"hydra.sweep.dir={tmp_path}/sweep",
        MUDMAN_OPTUNA_STORAGE="postgresql://me:ENV_SECRET_42@127.0.0.1:1/db",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "hydra.sweeper.storage='postgresql://me:***@127.0.0.1:1/db' is unreachable" in output
    assert "ENV_SECRET_42" not in output and "Traceback" not in output
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(b"ENV_SECRET_42" in p.read_bytes() for p in files)


# ------------------------------------------------------------------ umask, overwrite
UMASK_RUNS = """
import os, sys
from mudman.cli import main
base = sys.argv[1:]
for number, (mask, run_dir) in enumerate(((0o022, "run022"), (0o077, "run077"), (0o022, "run022"))):
    if number == 2:
        print("STAMP", os.stat("run022/.hydra/config.yaml").st_mtime_ns)
    os.umask(mask)
    sys.argv = ["mudman", *base, f"hydra.run.dir={run_dir}"]
    try:
        main()
    except SystemExit as stop:  # the third run: same dir, results.json exists
        print(f"EXIT {stop.code}")
"""


@pytest.mark.spawns
def test_outputs_follow_the_umask_and_a_finished_run_is_not_overwritten(tmp_path, text_files):
    result = subprocess.run(
        [sys.executable, "-c", UMASK_RUNS, *_tiny_args(text_files)],
        env=_env(tmp_path),
        cwd=tmp_path,  # outputs land here
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "EXIT 2" in output and "exists; pass overwrite=true to replace it" in output
    stamp = int(output.split("STAMP ")[1].split()[0])
    # refused before Hydra touched the finished run: its config and results are the first run's
    assert (tmp_path / "run022" / ".hydra" / "config.yaml").stat().st_mtime_ns == stamp
    for run_dir, mask in (("run022", 0o022), ("run077", 0o077)):
        files = [p for p in (tmp_path / run_dir).rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"results.json", "config.yaml", "mudman.log"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, (path, mask)
        for path in [p for p in (tmp_path / run_dir).rglob("*") if p.is_dir()]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask, (path, mask)
    record = json.loads((tmp_path / "run022" / "results.json").read_text())
    assert record["status"] == "completed" and record["memory"]["rss_mb"] > 0
