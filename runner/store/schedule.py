"""Schedule state in the database: next fire times, one row per occurrence (its primary key
is the claim that makes each occurrence run once), and the lease of the active scheduler."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from runner.store.database import open_engine
from runner.vocab import OccurrenceStatus

metadata = MetaData()
state = Table(
    "schedule_state", metadata,
    Column("job", String(200), primary_key=True),
    Column("trigger", Text, nullable=False),  # what the next fire time was computed for
    Column("next_fire", String(40)),  # UTC ISO; NULL: no more occurrences
)
occurrences = Table(
    "schedule_occurrences", metadata,
    Column("job", String(200), primary_key=True),
    Column("occurrence", String(40), primary_key=True),  # nominal UTC time: the claim
    Column("status", String(20), nullable=False),  # running|done|failed|interrupted|missed...
    Column("reason", Text),
    Column("run_id", String(32)),
    Column("server", String(200)),
    Column("updated", String(40)),
)
lease = Table(
    "schedule_lease", metadata,
    Column("name", String(50), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires", Float, nullable=False),
    Column("renewed", Float),  # the holder's last heartbeat (0008)
)
pauses = Table(
    "schedule_pauses", metadata,
    Column("job", String(200), primary_key=True),
    Column("paused_by", String(200), nullable=False),
    Column("paused_at", String(40), nullable=False),
    Column("reason", Text),
)
files = Table(  # the job files the active scheduler found invalid, and what it does
    "schedule_files", metadata,
    Column("path", String(500), primary_key=True),
    Column("error", Text, nullable=False),
    Column("kept", String(200)),  # the job whose previous version it keeps firing
    Column("server", String(200), nullable=False),
    Column("updated", String(40), nullable=False),
)


def server_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_dead_here(owner: str) -> bool:
    """A lease held by a process on this host that no longer exists (e.g. SIGKILLed)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not os.path.exists(f"/proc/{pid}")


class ScheduleStore:
    def __init__(self, url: str) -> None:
        """Opens the database at `url`, its schema brought to head (runner.store.migrate: the
        tables above are created by the migration history, not here)."""
        self.engine = open_engine(url)

    # -- next fire times ------------------------------------------------------------------

    def next_fire(self, job: str, trigger: str) -> tuple[bool, datetime | None]:
        """(known, next fire): unknown when never scheduled or the trigger changed."""
        with self.engine.connect() as conn:
            row = conn.execute(select(state).where(state.c.job == job)).first()
        if row is None or row.trigger != trigger:
            return False, None
        return True, datetime.fromisoformat(row.next_fire) if row.next_fire else None

    def set_next_fire(self, job: str, trigger: str, moment: datetime | None) -> None:
        value = moment.isoformat() if moment else None
        with self.engine.begin() as conn:
            done = conn.execute(update(state).where(state.c.job == job).values(
                trigger=trigger, next_fire=value)).rowcount
            if not done:
                conn.execute(insert(state).values(job=job, trigger=trigger, next_fire=value))

    def forget(self, job: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(state).where(state.c.job == job))

    # -- occurrences ----------------------------------------------------------------------

    def claim(self, job: str, occurrence: datetime, status: OccurrenceStatus, server: str,
              now: datetime, reason: str | None = None, run_id: str | None = None,
              then: Callable[[Connection], None] | None = None) -> bool:
        """Record an occurrence once: False when it was already claimed (by anyone).
        `then(conn)`: what else to record in the same transaction (the workflow run it
        starts, the event that runs it after a blackout)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(occurrences).values(
                    job=job, occurrence=occurrence.isoformat(), status=status, reason=reason,
                    run_id=run_id, server=server, updated=now.isoformat()))
                if then is not None:
                    then(conn)
        except IntegrityError:
            return False
        return True

    def finish(self, job: str, occurrence: datetime, status: OccurrenceStatus, now: datetime,
               run_id: str | None = None, reason: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(occurrences).where(
                occurrences.c.job == job,
                occurrences.c.occurrence == occurrence.isoformat()).values(
                status=status, run_id=run_id, reason=reason, updated=now.isoformat()))

    def occurrences(self, job: str | None = None) -> list[dict[str, Any]]:
        query = select(occurrences).order_by(occurrences.c.occurrence)
        if job:
            query = query.where(occurrences.c.job == job)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def interrupt_running(self, server: str, now: datetime) -> int:
        """Occurrences a dead scheduler left 'running' become 'interrupted'."""
        with self.engine.begin() as conn:
            return int(conn.execute(update(occurrences).where(
                occurrences.c.status == OccurrenceStatus.RUNNING,
                occurrences.c.server == server).values(
                status=OccurrenceStatus.INTERRUPTED, reason="the scheduler running it stopped",
                updated=now.isoformat())).rowcount)

    # -- the lease: one active scheduler per store ----------------------------------------

    def acquire(self, owner: str, now: float, ttl: float) -> tuple[bool, str | None]:
        """Take or renew the lease; (held by us, previous or current other owner)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(lease).where(lease.c.name == "scheduler")).first()
            if row is None:
                try:
                    conn.execute(insert(lease).values(name="scheduler", owner=owner,
                                                      expires=now + ttl, renewed=now))
                except IntegrityError:
                    return False, None
                return True, None
            free = row.owner == owner or row.expires < now or _pid_dead_here(row.owner)
            if not free:
                return False, row.owner
            taken = conn.execute(update(lease).where(
                lease.c.name == "scheduler", lease.c.owner == row.owner,
                lease.c.expires == row.expires).values(owner=owner, expires=now + ttl,
                                                        renewed=now))
            return taken.rowcount == 1, None if row.owner == owner else row.owner

    def release(self, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(lease).where(lease.c.name == "scheduler",
                                             lease.c.owner == owner))

    def lease_state(self) -> dict[str, Any] | None:
        """The scheduler lease as stored: its holder, when it expires and when the holder
        last renewed it (epoch seconds); None when no scheduler holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lease).where(lease.c.name == "scheduler")).first()
        return dict(row._mapping) if row is not None else None

    # -- pauses: a schedule every server leaves alone until resumed ------------------------

    def pause(self, job: str, by: str, now: datetime, reason: str | None = None
              ) -> dict[str, Any]:
        """Pause a job's schedule (the first pause stands: who, when, why); its row."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(pauses).values(job=job, paused_by=by,
                                                   paused_at=now.isoformat(), reason=reason))
        except IntegrityError:
            pass
        found = self.paused().get(job)
        assert found is not None
        return found

    def resume(self, job: str) -> bool:
        """Resume a paused schedule; False when it was not paused."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(pauses).where(pauses.c.job == job)).rowcount)

    def paused(self) -> dict[str, dict[str, Any]]:
        """Every paused schedule by job: who paused it, when, why."""
        with self.engine.connect() as conn:
            return {r.job: dict(r._mapping) for r in conn.execute(select(pauses))}

    # -- invalid job files, as the active scheduler sees them -------------------------------

    def record_files(self, server: str, found: list[tuple[str, str, str | None]],
                     now: datetime) -> None:
        """Replace the invalid job files on record with `found`: (path, error, the job
        whose previous version stays in effect or None)."""
        with self.engine.begin() as conn:
            conn.execute(delete(files))
            for path, error, kept in found:
                conn.execute(insert(files).values(path=path, error=error, kept=kept,
                                                  server=server, updated=now.isoformat()))

    def invalid_files(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.path: dict(r._mapping) for r in conn.execute(select(files))}
