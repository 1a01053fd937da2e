"""Runs that no schedule's time started, in the schedule store: a webhook delivery, a
syslog message, a workflow step, an occurrence deferred past a blackout window, a freshness
backup. Each is one row whose key is its claim (a delivery id, a device, a workflow run...):
any server may record it, the active scheduler starts it once (pending -> running is a
compare-and-set), and it follows its run like an occurrence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from runner.vocab import EventSource, OccurrenceStatus

metadata = MetaData()
events = Table(
    "schedule_events", metadata,
    Column("job", String(200), primary_key=True),
    # the claim: webhook:DELIVERY, syslog:HOST (while pending; syslog:HOST:RUN once started),
    # wf:WORKFLOW, deferred:OCCURRENCE, freshness:PLANNED
    Column("key", String(200), primary_key=True),
    Column("source", String(20), nullable=False),  # an EventSource
    Column("status", String(20), nullable=False),  # an OccurrenceStatus
    Column("received", String(40), nullable=False),
    Column("due", String(40), nullable=False),  # not started before (debounce, a window)
    Column("hosts", JSON),  # only these devices (the syslog's device, a freshness plan)
    Column("vars", JSON),  # job variables from a webhook's payload
    Column("by", String(200)),  # who: the user a message names, the webhook's sender
    Column("detail", JSON),  # delivery, event, messages seen, users...
    Column("workflow", String(32), index=True),  # the workflow run it is a step of
    Column("run_id", String(32)),
    Column("server", String(200)),
    Column("reason", Text),
    Column("updated", String(40)),
)
Index("ix_schedule_events_status_due", events.c.status, events.c.due)
# One row per syslog message a job's rule matched: the same message heard by two servers
# (devices log to both) starts one run. Rows older than the debounce horizon are pruned.
seen = Table(
    "syslog_seen", metadata,
    Column("job", String(200), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("received", String(40), nullable=False, index=True),
)
FINAL = frozenset({OccurrenceStatus.DONE, OccurrenceStatus.FAILED, OccurrenceStatus.SKIPPED,
                   OccurrenceStatus.INTERRUPTED, OccurrenceStatus.MISSED,
                   OccurrenceStatus.AWAITING_APPROVAL})


def syslog_key(host: str) -> str:
    return f"syslog:{host}"


class Events:
    """The schedule store's events (`engine`: ScheduleStore.engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, job: str, key: str, source: EventSource, now: datetime, *,
            due: datetime | None = None, hosts: list[str] | None = None,
            vars_: dict[str, Any] | None = None, by: str | None = None,
            detail: dict[str, Any] | None = None, workflow: str | None = None,
            status: OccurrenceStatus = OccurrenceStatus.PENDING, reason: str | None = None,
            server: str | None = None, conn: Connection | None = None) -> bool:
        """Record an event once: False when its key was recorded already (by anyone)."""
        values = {"job": job, "key": key[:200], "source": source, "status": status,
                  "received": now.isoformat(), "due": (due or now).isoformat(),
                  "hosts": hosts, "vars": vars_, "by": by[:200] if by else None,
                  "detail": detail, "workflow": workflow, "reason": reason,
                  "server": server, "updated": now.isoformat()}
        if conn is not None:
            conn.execute(insert(events).values(**values))
            return True
        try:
            with self.engine.begin() as own:
                own.execute(insert(events).values(**values))
        except IntegrityError:
            return False
        return True

    def syslog(self, job: str, host: str, digest: str, now: datetime, due: datetime,
               by: str | None, message: str, server: str) -> str:
        """A config-change message for `job` on `host`: 'duplicate' (this message was
        recorded already, by any server), 'merged' into the device's pending event (the
        debounce: one run for a burst), or 'new'."""
        for _ in range(5):  # a race with another server or the scheduler: look again
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(seen).values(job=job, digest=digest,
                                                     received=now.isoformat()))
                    row = conn.execute(select(events).where(
                        events.c.job == job, events.c.key == syslog_key(host),
                        events.c.status == OccurrenceStatus.PENDING)).first()
                    if row is not None:
                        detail = dict(row.detail or {})
                        detail["messages"] = int(detail.get("messages", 1)) + 1
                        users = list(detail.get("users") or [])
                        if by and by not in users:
                            users.append(by)
                        detail["users"] = users[-20:]
                        detail["last"] = message[:500]
                        changed = conn.execute(update(events).where(
                            events.c.job == job, events.c.key == syslog_key(host),
                            events.c.status == OccurrenceStatus.PENDING).values(
                            detail=detail, by=row.by or by, updated=now.isoformat()))
                        if changed.rowcount == 1:
                            return "merged"
                        raise _Retry
                    self.add(job, syslog_key(host), EventSource.SYSLOG, now, due=due,
                             hosts=[host], by=by, server=server, conn=conn,
                             detail={"messages": 1, "users": [by] if by else [],
                                     "first": message[:500], "last": message[:500]})
                    return "new"
            except _Retry:
                continue
            except IntegrityError:
                with self.engine.connect() as conn:
                    known = conn.execute(select(seen.c.digest).where(
                        seen.c.job == job, seen.c.digest == digest)).first()
                if known is not None:
                    return "duplicate"
                continue  # another message of the burst made the pending row: merge
        return "merged"

    def prune_seen(self, before: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(seen).where(seen.c.received < before.isoformat()))

    def due(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        """Pending events due now, oldest first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(events).where(events.c.status == OccurrenceStatus.PENDING,
                                     events.c.due <= now.isoformat())
                .order_by(events.c.due, events.c.received).limit(limit))]

    def next_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(events.c.due).where(
                events.c.status == OccurrenceStatus.PENDING)
                .order_by(events.c.due).limit(1)).scalar()
        return datetime.fromisoformat(found) if found else None

    def take(self, job: str, key: str, run_id: str, server: str, now: datetime,
             then: Callable[[Connection, str], None] | None = None) -> str | None:
        """Start a pending event: its key from now on (a syslog event gets one of its own,
        so the next message makes a new one), or None when it was not pending any more
        (another server took it). `then(conn, key)`: more to record in the same
        transaction (a workflow it starts)."""
        new_key = f"{key}:{run_id}" if key.startswith("syslog:") else key
        with self.engine.begin() as conn:
            done = conn.execute(update(events).where(
                events.c.job == job, events.c.key == key,
                events.c.status == OccurrenceStatus.PENDING).values(
                key=new_key, status=OccurrenceStatus.RUNNING, run_id=run_id, server=server,
                updated=now.isoformat()))
            if done.rowcount != 1:
                return None
            if then is not None:
                then(conn, new_key)
        return new_key

    def settle(self, job: str, key: str, status: OccurrenceStatus, now: datetime, *,
               reason: str | None = None, run_id: str | None = None,
               only_pending: bool = False) -> bool:
        """Record what became of an event (only if still pending, with `only_pending`)."""
        query = update(events).where(events.c.job == job, events.c.key == key)
        if only_pending:
            query = query.where(events.c.status == OccurrenceStatus.PENDING)
        values: dict[str, Any] = {"status": status, "reason": reason,
                                  "updated": now.isoformat()}
        if run_id is not None:
            values["run_id"] = run_id
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def defer(self, job: str, key: str, due: datetime, reason: str, now: datetime) -> bool:
        """A pending event due inside a blackout window waits for its end."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(events).where(
                events.c.job == job, events.c.key == key,
                events.c.status == OccurrenceStatus.PENDING).values(
                due=due.isoformat(), reason=reason, updated=now.isoformat())).rowcount)

    def get(self, job: str, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(events).where(events.c.job == job,
                                                    events.c.key == key)).first()
        return dict(row._mapping) if row is not None else None

    def open_for(self, job: str, source: EventSource) -> list[dict[str, Any]]:
        """The job's events of this source still pending or running."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(events).where(
                events.c.job == job, events.c.source == source,
                events.c.status.in_([OccurrenceStatus.PENDING, OccurrenceStatus.RUNNING])))]

    def of_workflow(self, workflow: str) -> dict[str, dict[str, Any]]:
        """A workflow run's steps recorded so far, by job."""
        with self.engine.connect() as conn:
            return {r.job: dict(r._mapping) for r in conn.execute(
                select(events).where(events.c.workflow == workflow,
                                     events.c.source == EventSource.WORKFLOW))}

    def recent(self, job: str, limit: int = 30) -> list[dict[str, Any]]:
        """A job's last events, newest first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(events).where(events.c.job == job)
                .order_by(events.c.received.desc()).limit(limit))]

    def all(self, job: str | None = None) -> list[dict[str, Any]]:
        query = select(events).order_by(events.c.received)
        if job is not None:
            query = query.where(events.c.job == job)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def interrupt_running(self, server: str, now: datetime) -> list[dict[str, Any]]:
        """Events a dead scheduler left running become interrupted; those rows."""
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(events).where(
                events.c.status == OccurrenceStatus.RUNNING, events.c.server == server))]
            conn.execute(update(events).where(
                events.c.status == OccurrenceStatus.RUNNING, events.c.server == server)
                .values(status=OccurrenceStatus.INTERRUPTED,
                        reason="the scheduler running it stopped", updated=now.isoformat()))
        return rows


class _Retry(Exception):
    """The pending row moved while merging into it: look again."""
