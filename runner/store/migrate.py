"""The database schema's version: Alembic's one history (runner/store/migrations) brought to head
on start, one process at a time (a lock file on SQLite, an advisory lock on PostgreSQL).
A database already at head is recognised with one query and without Alembic, whose import
costs more CPU than a small run's devices (bench/startup.py)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import SchemaError
from runner.vocab import SchemaState

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SCRIPTS = "runner.store:migrations"
# Not alembic_version: a database runner shares with an application of its own keeps both.
VERSION_TABLE = "runner_alembic_version"
# pg_advisory_lock's key for "runner migrates this database": any bigint, fixed forever.
PG_LOCK_KEY = 0x72756E6E65720001
# Tables an earlier runner (before migrations) made: their presence marks its database.
LEGACY_TABLES = frozenset({"runs", "devices", "schedule_state", "schedule_occurrences",
                           "schedule_lease"})


VERSIONS = Path(__file__).with_name("migrations") / "versions"
# A version file's `revision = "0008"` and `down_revision = "0007"` (None, or a tuple at a
# merge), annotated or not: what Alembic reads from the module, read here as text.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None, "runner/store/migrations has no revision"
    return found


@cache
def plain_head() -> str | None:
    """runner's head revision, read from its version files as text (tests/unit/
    test_startup.py checks it is Alembic's head)."""
    return stated_head(VERSIONS)


def stated_head(versions: Path) -> str | None:
    """The head revision as the version files in `versions` state it, read as text (no
    Alembic); None when one of them does not state its revisions plainly or the history
    has not exactly one head (then Alembic alone is asked)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        if path.name == "__init__.py":
            continue
        lines = _REVISION_LINE.findall(path.read_text(encoding="utf-8"))
        names = [name for name, _ in lines]
        if sorted(names) != ["down_revision", "revision"]:
            return None
        for name, value in lines:
            quoted = _QUOTED.findall(value)
            if name == "revision":
                if len(quoted) != 1:
                    return None
                revisions.add(quoted[0])
            elif quoted:
                parents.update(quoted)
            elif value.split("#")[0].strip() != "None":
                return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


@dataclass(frozen=True)
class Version:
    """Where a database stands in the history."""

    revision: str | None  # None: no version recorded
    head: str
    state: SchemaState
    url: str  # the database, its password hidden

    @property
    def at_head(self) -> bool:
        return self.state is SchemaState.CURRENT

    def describe(self) -> str:
        return {
            SchemaState.CURRENT: f"{self.revision} (head)",
            SchemaState.BEHIND: f"{self.revision}, behind head {self.head}: "
                                "`runner db upgrade` (or any runner start) upgrades it",
            SchemaState.UNVERSIONED: f"no version: made by a runner before migrations; "
                                     f"`runner db upgrade` adopts it at head {self.head}, "
                                     "keeping every run",
            SchemaState.EMPTY: f"empty: `runner db upgrade` creates the schema at head "
                               f"{self.head}",
            SchemaState.AHEAD: f"{self.revision}, unknown to this runner (head {self.head}): "
                               "a newer runner upgraded it; upgrade runner",
        }[self.state]


def masked(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def describe(exc: BaseException) -> str:
    """A database error in one line, without the statement and parameters SQLAlchemy adds
    (parameters hold device output)."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return (text_.splitlines() or [type(exc).__name__])[0]


def _read(conn: Connection, url: str) -> Version:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    revisions = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
    top = head()
    if len(revisions) > 1:
        raise SchemaError(f"database {url}: several schema heads {sorted(revisions)}")
    revision = revisions[0] if revisions else None
    if revision is None:
        legacy = LEGACY_TABLES & set(inspect(conn).get_table_names())
        state = SchemaState.UNVERSIONED if legacy else SchemaState.EMPTY
    elif revision == top:
        state = SchemaState.CURRENT
    else:
        try:
            known = scripts().get_revision(revision) is not None
        except Exception:  # alembic: "No such revision"
            known = False
        state = SchemaState.BEHIND if known else SchemaState.AHEAD
    return Version(revision, top, state, url)


def current(engine: Engine) -> Version:
    """The database's version, read without changing anything."""
    with engine.connect() as conn:
        found = _read(conn, masked(engine))
        conn.rollback()
    return found


def ensure_head(engine: Engine) -> Version:
    """Bring the database to head if it is not (what every runner start does). Processes
    starting at once on one database take turns; the first upgrades, the rest find it done."""
    found = _plainly_at_head(engine)
    if found is not None:
        return found
    found = current(engine)
    if found.at_head:
        return found
    return upgrade(engine)


def _plainly_at_head(engine: Engine) -> Version | None:
    """The database's Version when its version table names the head the version files
    state (one query, no Alembic); None when anything else is so: Alembic looks."""
    from sqlalchemy import column, select, table
    from sqlalchemy.exc import DBAPIError

    top = plain_head()
    if top is None:
        return None
    rows: list[object] = []
    with engine.connect() as conn:  # a database that is away fails here, as Alembic's would
        # No version table (an empty or a pre-migrations database): Alembic looks.
        with contextlib.suppress(DBAPIError):
            rows = list(conn.execute(select(column("version_num"))
                                     .select_from(table(VERSION_TABLE))).scalars())
        conn.rollback()
    return Version(top, top, SchemaState.CURRENT, masked(engine)) if rows == [top] else None


def upgrade(engine: Engine) -> Version:
    """Upgrade to head under the database's migration lock; the version it ends at."""
    from alembic import command

    url = masked(engine)
    with engine.connect() as conn, _migration_lock(conn, engine):
        before = _read(conn, url)
        conn.rollback()  # Alembic runs the upgrade in a transaction of its own
        if before.state is SchemaState.AHEAD:
            raise SchemaError(f"database {url}: schema {before.describe()}")
        if before.at_head:
            return before
        (log.info if before.state is SchemaState.EMPTY else log.warning)(
            "database %s: schema %s: upgrading to %s", url, before.revision or before.state,
            before.head)
        try:
            with warnings.catch_warnings():
                # SQLite's reflection cannot read an index on an expression (0009's); the
                # migrations that reflect the devices table do not need it
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of "
                                        "expression-based index")
                command.upgrade(_config(conn), "head")
        except Exception as exc:  # another process (unlocked dialects) may have won the race
            conn.rollback()
            after = _read(conn, url)
            conn.rollback()
            if after.at_head:
                return after
            raise SchemaError(f"database {url}: upgrading the schema from "
                              f"{before.revision or before.state} to {before.head} failed: "
                              f"{describe(exc)}") from exc
        after = _read(conn, url)
        conn.commit()
    if not after.at_head:
        raise SchemaError(f"database {url}: upgraded, yet its schema is {after.describe()}")
    return after


@contextmanager
def _migration_lock(conn: Connection, engine: Engine) -> Iterator[None]:
    """One migrating process at a time: an exclusive flock on a file beside a SQLite
    database, pg_advisory_lock on PostgreSQL (held by this connection's session). Other
    databases go unlocked: a racing upgrade that fails is looked at again (see upgrade)."""
    from sqlalchemy import text

    dialect = engine.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
            except Exception:  # the session (and so its lock) must not go back to the pool
                conn.invalidate()
        return
    path = _sqlite_file(engine) if dialect == "sqlite" else None
    if path is None:
        yield
        return
    fd = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()
