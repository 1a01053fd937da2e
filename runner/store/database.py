"""Opening runner's database (SQLite or any SQLAlchemy URL, PostgreSQL tested): the engine,
its schema brought to head, and writes that ride out a lost connection for a bounded time."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from runner.errors import StoreError
from runner.store.migrate import describe, ensure_head, masked

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 5.0  # between two attempts while the database is away


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine on `url`, its schema at head unless `migrate` is False; errors name the
    database with its password hidden."""
    try:
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    except Exception as exc:  # a malformed URL, a driver that is not installed
        raise StoreError(f"database {_hide(url)}: {describe(exc)}") from None
    if engine.dialect.name == "sqlite":
        _private_file(engine.url.database)
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            ensure_head(engine)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"database {masked(engine)}: {describe(exc)}") from None
    return engine


def _private_file(database: str | None) -> None:
    """A SQLite database file readable by its owner only (0600; SQLite gives its -wal and
    -shm files the database's mode): created so before SQLite opens it, tightened if it
    was made wider by an older runner. Runs hold device output and who did what."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = os.path.abspath(database)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.suppress(OSError):
        info = os.stat(path)
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            os.chmod(path, 0o600)
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(path + suffix, 0o600)


def _hide(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(a URL that does not parse)"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # busy_timeout first: switching to WAL needs a moment's lock that a process starting at
    # the same time may hold. WAL: readers (history, a second server) never block the
    # writer, and a commit costs no fsync of the whole database.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def lost_connection(exc: BaseException) -> bool:
    """An error that may pass when the database is back (server down or restarting, network,
    SQLite busy), as opposed to one that would fail again (a constraint, a bug)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def retrying(engine: Engine, what: str, action: Callable[[], T], bound_s: float,
             give_up: threading.Event | None = None) -> T:
    """`action()`, attempted again with backoff while the database is unreachable, for up to
    `bound_s` seconds (RUNNER_DB_RETRY) from the first failure, or until `give_up` is set;
    then a StoreError saying so. Other errors are raised at once."""
    deadline: float | None = None
    delay = 0.1
    while True:
        try:
            result = action()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + bound_s
                log.warning("database %s unreachable while %s (%s): retrying for up to %gs "
                            "(RUNNER_DB_RETRY)", masked(engine), what, describe(exc), bound_s)
            stop = give_up is not None and give_up.is_set()
            if stop or now >= deadline:
                raise StoreError(
                    f"database {masked(engine)} unreachable while {what}"
                    + (" (gave up: the run was interrupted)" if stop else
                       f" for {bound_s:g}s (RUNNER_DB_RETRY)") + f": {describe(exc)}") from None
            pause = min(delay, deadline - now)
            if give_up is not None:
                give_up.wait(pause)
            else:
                time.sleep(pause)
            delay = min(delay * 2, MAX_BACKOFF_S)
            continue
        if deadline is not None:
            log.warning("database %s reachable again: %s done", masked(engine), what)
        return result
