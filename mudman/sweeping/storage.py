"""Study storage (SQLite on one machine, PostgreSQL across machines) and a cross-process lock.

Heartbeats let a resumed or parallel worker recognise trials orphaned by a killed process;
the lock makes "count the study's trials, then ask for one more" atomic across workers, so
``n_trials`` is the study's exact total.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from mudman.errors import ConfigError
from mudman.redaction import mask_url, redact_text, url_password

__all__ = [
    "check_sqlite_database",
    "make_storage",
    "mask_url",
    "refuse_literal_password",
    "study_lock",
]

SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "version_info"}
LOCK_WAIT_S = 30.0  # a healthy worker holds the write lock for milliseconds


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).expanduser()


def check_sqlite_database(url: str, write: bool = True, lock_wait: float = LOCK_WAIT_S) -> None:
    """Refuse an existing file that is not a healthy Optuna SQLite database, before anything
    opens it read-write (which would create Optuna's tables in another program's database,
    or turn a malformed file into a new, empty study). With ``write``: also refuse a
    database this process cannot write (read-only file, folder or file system; immutable),
    or one another process keeps locked for ``lock_wait`` seconds.

    A path that does not exist yet is fine: the study creates it (its folder is checked by
    the preflight). Nothing is created or changed here.
    """
    path = sqlite_path(url)
    key = f"hydra.sweeper.storage={url!r}"
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigError(f"{key} is not a file; allowed: an Optuna database")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise ConfigError(f"{key} cannot be read ({err.strerror})") from err
    if header != SQLITE_HEADER:
        what = "is an empty file" if not header else "is not a SQLite database"
        raise ConfigError(
            f"{key} {what}; allowed: an Optuna SQLite database, or a path that "
            "does not exist yet (nothing was changed)"
        )
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=lock_wait) as conn:
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            check = conn.execute("PRAGMA quick_check").fetchone()
        conn.close()
    except sqlite3.Error as err:
        raise _sqlite_error(key, path, err, lock_wait) from err
    if check and check[0] != "ok":
        raise ConfigError(
            f"{key} is malformed (SQLite quick_check: {check[0]}); restore it "
            "from a backup or use another path (nothing was changed)"
        )
    if tables and not tables >= OPTUNA_TABLES:
        raise ConfigError(
            f"{key} is a SQLite database of another program (tables: "
            f"{', '.join(sorted(tables)[:6])}); allowed: an Optuna database, or a path that "
            "does not exist yet (nothing was changed)"
        )
    if write:
        try:
            conn = sqlite3.connect(str(path), timeout=lock_wait)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock (waits for other writers)
                conn.execute("CREATE TABLE mudman_write_probe (x INTEGER)")  # rolled back
                conn.rollback()
            finally:
                conn.close()
        except sqlite3.Error as err:
            raise _sqlite_error(key, path, err, lock_wait) from err


def _sqlite_error(key: str, path: Path, err: sqlite3.Error, lock_wait: float = 0) -> ConfigError:
    text = str(err)
    if "locked" in text or "busy" in text:
        return ConfigError(
            f"{key} is locked by another process (waited {lock_wait:g} s); "
            "find the process holding it (fuser/lsof) or use another path"
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ConfigError(
            f"{key} is read-only here ({text}: the file, its folder or the file "
            "system); allowed: a database this user can write (SQLite also writes a journal "
            "beside it)"
        )
    if "malformed" in text or "not a database" in text:
        return ConfigError(
            f"{key} is malformed ({text}); restore it from a backup or use "
            "another path (nothing was changed)"
        )
    return ConfigError(f"{key} cannot be opened: {type(err).__name__}: {text}")


def make_storage(
    url: str, heartbeat_interval: int, grace_period: int
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; SQLite parent folders are created."""
    if not url.startswith(("sqlite:///", "postgresql")):
        raise ConfigError(
            f"hydra.sweeper.storage={mask_url(url)!r} is not allowed; use sqlite:///path.db or "
            "postgresql://user:pass@host/db (or set MUDMAN_OPTUNA_STORAGE)"
        )
    _require_driver(url)
    if url.startswith("sqlite:///"):
        check_sqlite_database(url)
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = (  # workers wait for each other's writes instead of "database is locked"
        # an unreachable server fails in seconds, not after the OS's TCP timeout
        {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        if url.startswith("postgresql")
        else {"connect_args": {"timeout": 120}}
    )
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3
                ),
                engine_kwargs=engine_kwargs,
            )
        except Exception as err:
            # two workers creating the schema at once: the loser sees a unique-constraint
            # error; by the next attempt the tables exist
            if "IntegrityError" in type(err).__name__ + str(err) and attempt < 2:
                time.sleep(0.5)
                continue
            raise ConfigError(
                f"hydra.sweeper.storage={mask_url(url)!r} is unreachable: {type(err).__name__}: "
                f"{redact_text(str(err).splitlines()[0] if str(err) else '')}"
            ) from err
    raise AssertionError("unreachable")


# SQLAlchemy's PostgreSQL drivers by URL scheme; psycopg (3) is its default for postgresql://
_PG_DRIVERS = {
    "postgresql": "psycopg",
    "postgresql+psycopg": "psycopg",
    "postgresql+psycopg2": "psycopg2",
}


def _require_driver(url: str) -> None:
    """PostgreSQL support is an extra: say how to install it instead of "unreachable"."""
    module = _PG_DRIVERS.get(url.partition("://")[0])
    if module and importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"hydra.sweeper.storage={mask_url(url)!r} needs the {module} driver, which is not "
            "installed: "
            + ("pip install -e '.[postgres]'" if module == "psycopg" else f"pip install {module}")
        )


@contextmanager
def study_lock(url: str, study_name: str) -> Iterator[None]:
    """Exclusive lock per study: a lock file beside a SQLite DB, an advisory lock on PostgreSQL."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        lock_path = path.with_name(f"{path.name}.{_digest(study_name)}.lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    import sqlalchemy

    key = int(_digest(study_name)[:15], 16)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refuse_literal_password(raw_url: object) -> None:
    """A password typed into the storage URL would be saved by Hydra in every trial's
    ``.hydra/hydra.yaml``; only the environment variable keeps it out of files. ``raw_url``
    is ``hydra.sweeper.storage`` before interpolation."""
    if isinstance(raw_url, str) and url_password(raw_url):
        raise ConfigError(
            f"hydra.sweeper.storage={mask_url(raw_url)!r} holds a password in the config or on "
            "the command line, which Hydra records in every trial's .hydra/hydra.yaml; "
            "allowed: the URL in the environment (MUDMAN_OPTUNA_STORAGE=postgresql://...), "
            "or a URL without password plus PGPASSWORD or ~/.pgpass"
        )
