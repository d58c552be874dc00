"""Storage faults are named (issue 12, item 5): a malformed, empty or non-Optuna SQLite file,
a read-only (immutable) or locked database, an unreachable PostgreSQL server. Each is one
line and exit code 2, from the sweeper and from the report, and nothing is created or changed.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import threading

import optuna
import pytest

from mudman.errors import ConfigError
from mudman.report.__main__ import main as report_main
from mudman.sweeping.storage import check_sqlite_database, make_storage
from tests.conftest import REPO, tiny_sweep_command

optuna.logging.set_verbosity(optuna.logging.WARNING)


def optuna_db(path, n=3):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return path


def corrupt_middle(path):
    """Garbage over the pages after the schema: the header still says SQLite."""
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 6] = bytes(range(256)) * 64
    path.write_bytes(bytes(data))


def foreign_db(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
        conn.execute("INSERT INTO notes VALUES (1, 'my data')")
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a database at all, just text\n" * 40), "not a SQLite"),
        (lambda p: p.write_bytes(b""), "is an empty file"),
        (foreign_db, "a SQLite database of another program (tables: notes)"),
        (lambda p: corrupt_middle(optuna_db(p)), "is malformed"),
    ],
    ids=["garbage", "empty", "not-optuna", "malformed"],
)
def test_bad_sqlite_files_are_named_and_left_untouched(tmp_path, make, message):
    path = tmp_path / "o.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_storage(f"sqlite:///{path}", 10, 30)
    assert path.read_bytes() == before  # nothing created or overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.db"]


def test_a_locked_database_is_named_after_waiting(tmp_path):
    path = optuna_db(tmp_path / "o.db", n=1)
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConfigError, match=r"is locked by another process \(waited 0.5 s\)"):
            check_sqlite_database(f"sqlite:///{path}", lock_wait=0.5)
    finally:
        holder.rollback()
        holder.close()
    check_sqlite_database(f"sqlite:///{path}", lock_wait=0.5)  # free again: fine


@pytest.fixture
def immutable_db(tmp_path):
    """An Optuna database nobody may write, not even root (``chattr +i``)."""
    path = optuna_db(tmp_path / "o.db", n=1)
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", path]).returncode:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    yield path
    subprocess.run(["chattr", "-i", path], check=False)


def _sweep(tmp_path, text_files, url):
    cmd = [
        *tiny_sweep_command(text_files),
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path}/multirun",
        f"paths.cache_dir={tmp_path}/cache",
        "method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.spawns
def test_sweeps_on_read_only_and_malformed_databases_exit_2_with_one_line(
    tmp_path, text_files, immutable_db
):
    before = immutable_db.read_bytes()
    done = _sweep(tmp_path, text_files, f"sqlite:///{immutable_db}")
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "is read-only here" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert immutable_db.read_bytes() == before

    broken = tmp_path / "broken.db"
    corrupt_middle(optuna_db(broken))
    before = broken.read_bytes()
    done = _sweep(tmp_path, text_files, f"sqlite:///{broken}")
    assert done.returncode == 2 and "is malformed" in done.stderr, done.stderr[-2000:]
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1
    assert broken.read_bytes() == before  # was: a new, empty study in its place


@pytest.mark.parametrize(
    "storage, message",
    [
        ("broken", "is malformed"),
        ("foreign", "another program"),
        ("postgresql://me:s3cret@127.0.0.1:9/x", "cannot be read: OperationalError"),
    ],
)
def test_the_report_names_a_storage_fault_in_one_line(tmp_path, capsys, storage, message):
    if storage == "broken":
        corrupt_middle(optuna_db(tmp_path / "o.db"))
        storage = f"sqlite:///{tmp_path}/o.db"
    elif storage == "foreign":
        foreign_db(tmp_path / "o.db")
        storage = f"sqlite:///{tmp_path}/o.db"
    assert report_main(["--storage", storage, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "s3cret" not in err


def test_a_healthy_database_in_use_by_a_writer_passes(tmp_path):
    path = optuna_db(tmp_path / "o.db", n=1)
    stop = threading.Event()

    def writer():
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{path}")
        while not stop.is_set():
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):
            check_sqlite_database(f"sqlite:///{path}", lock_wait=10)
    finally:
        stop.set()
        thread.join()
