"""Study storage (SQLite on one machine, PostgreSQL across machines) and a cross-process lock.

Heartbeats let a resumed or parallel worker recognise trials orphaned by a killed process;
the lock makes "count the study's trials, then ask for one more" atomic across workers, so
``n_trials`` is the study's exact total.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from mudman.errors import ConfigError
from mudman.redaction import mask_url, redact_text

__all__ = ["make_storage", "mask_url", "study_lock"]


def make_storage(
    url: str, heartbeat_interval: int, grace_period: int
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; SQLite parent folders are created."""
    if not url.startswith(("sqlite:///", "postgresql")):
        raise ConfigError(
            f"hydra.sweeper.storage={mask_url(url)!r} is not allowed; use sqlite:///path.db or "
            "postgresql://user:pass@host/db (or set MUDMAN_OPTUNA_STORAGE)"
        )
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
