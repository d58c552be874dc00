"""Workers on a real PostgreSQL server (Debian's package, started by the test on loopback)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mudman.sweeping.storage import make_storage
from tests.conftest import REPO, tiny_jsonl_args
from tests.sweeping.test_sweeper import _worker, assert_study_intact, run_with_random_kills

PG_BIN = (
    next(
        (
            Path(p)
            for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
            if (p / "initdb").exists()
        ),
        None,
    )
    if Path("/usr/lib/postgresql").exists()
    else None
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server on loopback for this module: its base URL (no database)."""
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    as_user: list[str] = []
    # not under pytest's tmp dir: that one is private to root, the server user can't enter it
    base = Path(tempfile.mkdtemp(prefix="mudman-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: use the package's own user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(base, 0o777)
    data, port = base / "data", _free_port()

    def run(*cmd):
        return subprocess.run(
            [*as_user, *cmd],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    run(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "log"),
        "-o",
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}",
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database per test on the module's server."""
    import sqlalchemy

    name = f"mudman_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(
        f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool
    )
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{postgres_server}/{name}"


@pytest.mark.spawns
def test_two_workers_share_one_postgres_study(postgres_url):
    make_storage(postgres_url, 1, 2)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(postgres_url, 0, out)) for _ in (0, 1)]
    start = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0], f"after {time.time() - start:.0f}s"
    study = optuna.load_study(study_name="s", storage=postgres_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    assert sorted(t.number for t in study.trials) == list(range(12))
    assert len({t.params["x"] for t in study.trials}) == 12  # distinct sampler seeds


@pytest.mark.spawns
def test_four_postgres_workers_with_random_kills_lose_and_duplicate_nothing(postgres_url, tmp_path):
    make_storage(postgres_url, 1, 3)
    killed = run_with_random_kills(postgres_url, tmp_path)
    orphans = assert_study_intact(postgres_url, 12, tmp_path / "runs")
    assert killed == 4 and len(orphans) >= killed  # every kill landed mid-trial


@pytest.mark.spawns
def test_secrets_stay_out_of_outputs_logs_wandb_and_the_study(postgres_url, tmp_path, text_files):
    """A password-bearing storage URL and tokens, through a real sweep with W&B offline."""
    secrets = {
        "password": "PG_pw_5ecret_771",
        "hf": "hf_TOKEN_5ecret_772",
        "wandb": "wandb_KEY_5ecret_773",
    }
    url = postgres_url.replace("postgres@", f"postgres:{secrets['password']}@")  # trust auth
    env = {
        **os.environ,
        "MUDMAN_OPTUNA_STORAGE": url,
        "HF_TOKEN": secrets["hf"],
        "WANDB_API_KEY": secrets["wandb"],
        "WANDB_MODE": "offline",
        "MUDMAN_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    args = [
        "-m",
        "hydra/sweeper=mudman_optuna",
        *tiny_jsonl_args(text_files),
        "logger=wandb",
        "logger.mode=offline",
        "+model.token=${oc.env:HF_TOKEN}",  # a token reaching the config by interpolation
        "progress=false",
        "batch_size=4",
        "context_len=32",
        "unlearn_passes=5",
        "relearn_passes=2",
        "eval_every_passes=5",
        "compare_baseline=false",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.study_name=secrets",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "mudman", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="secrets", storage=postgres_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert "postgresql://postgres:***@" in output  # it says where, masked
    files = [p for p in (tmp_path / "sweep").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"results.json", "mudman.log", "hydra.yaml", "config.yaml"} <= names
    assert any(p.suffix == ".wandb" for p in files)  # W&B's offline run was written
    records = [
        output,
        json.dumps(study.user_attrs),
        json.dumps(study._storage.get_study_system_attrs(study._study_id)),
        *(json.dumps([t.user_attrs, t.system_attrs, t.params]) for t in study.trials),
    ]
    for name, secret in secrets.items():
        assert not any(secret in text for text in records), name
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, (name, leaked)


@pytest.mark.spawns
def test_chaos_soak_on_postgres(postgres_url, tmp_path):
    """scripts/soak_sweeps.py on PostgreSQL, kept short for the suite (one kill mid-trial; the
    full soak: the script with --storage postgresql://...): an n_jobs=4 parent plus a
    duplicate command, a resume, a second experiment refused, every check of the soak."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak", REPO / "scripts" / "soak_sweeps.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    figures = soak.run_soak(postgres_url, tmp_path, n_trials=6, kills=1, timeout=600)
    summary = {k: v for k, v in figures.items() if k != "events"}
    assert figures["ok"], summary  # every check of the soak, see its docstring
    assert figures["repeated_parameter_sets"] == 0 and figures["valid"] == 6
