"""Backup freshness in the schedule store: each device's newest good backup per freshness
job (folded in from the job's finished runs, whoever ran them: serve, `runner run`, the
web), the measured rate of its runs, and the figures the metric and the web show."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from runner.store.results import ResultsStore, devices, runs
from runner.vocab import SUCCESS, DeviceStatus, RunStatus

metadata = MetaData()
ages = Table(
    "backup_ages", metadata,
    Column("job", String(200), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("last_good", String(40)),  # the newest good backup's time (UTC ISO); NULL: none
    Column("last_attempt", String(40)),
    Column("last_status", String(20)),  # the newest attempt's DeviceStatus
    Column("last_run", String(32)),
)
state = Table(
    "freshness_state", metadata,
    Column("job", String(200), primary_key=True),
    Column("freshness", Float, nullable=False),  # seconds
    Column("folded_until", String(40)),  # runs finished before this are in backup_ages
    Column("rate", Float),  # devices per second the job's runs manage (measured)
    Column("devices", Integer),  # devices targeted
    Column("warning", Text),  # why the fleet cannot be covered in time, if it cannot
    Column("planned", String(40)),  # the last plan's time
)
OVERLAP = timedelta(minutes=2)  # runs finishing this close to the last fold are read again
ENDED = (RunStatus.OK, RunStatus.FAILED, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class Age:
    """One device's backups, as the planner reads them."""

    last_good: datetime | None
    last_attempt: datetime | None
    last_status: str | None

    @property
    def failing(self) -> bool:
        """Its newest attempt failed after its newest good backup (or it never had one)."""
        if self.last_attempt is None or self.last_status in (None, *SUCCESS,
                                                              DeviceStatus.SKIPPED):
            return False
        return self.last_good is None or self.last_attempt > self.last_good


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Freshness:
    """The schedule store's freshness figures (`engine`: ScheduleStore.engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state(self, job: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(state).where(state.c.job == job)).first()
        return dict(row._mapping) if row is not None else None

    def set_state(self, job: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(state).where(state.c.job == job).values(**values))
            if not done.rowcount:
                conn.execute(insert(state).values(job=job, **{"freshness": 0.0, **values}))

    def targets(self, job: str, hosts: Iterable[str]) -> None:
        """The devices the job targets now: a row for each (none yet: never backed up);
        rows of devices it no longer targets go."""
        wanted = set(hosts)
        with self.engine.begin() as conn:
            have = {r[0] for r in conn.execute(select(ages.c.host).where(ages.c.job == job))}
            gone = have - wanted
            if gone:
                for chunk in _chunks(sorted(gone)):
                    conn.execute(delete(ages).where(ages.c.job == job, ages.c.host.in_(chunk)))
            new = sorted(wanted - have)
            if new:
                conn.execute(insert(ages), [{"job": job, "host": h} for h in new])

    def fold(self, results: ResultsStore, job: str, concurrency: int) -> int:
        """Fold the job's runs finished since the last fold into each device's newest
        good backup and the measured rate; how many device records were read."""
        known = self.state(job) or {}
        since = known.get("folded_until")
        query = select(runs.c.run_id, runs.c.started, runs.c.finished).where(
            runs.c.job == job, runs.c.status.in_(ENDED), runs.c.dry_run.is_(False),
            runs.c.finished.is_not(None))
        if since:
            query = query.where(runs.c.finished >= (datetime.fromisoformat(since)
                                                    - OVERLAP).isoformat())
        with results.engine.connect() as conn:
            found = [dict(r._mapping) for r in conn.execute(query.order_by(runs.c.finished))]
            records: list[Any] = []
            for chunk in _chunks([r["run_id"] for r in found]):
                records += conn.execute(select(
                    devices.c.run_id, devices.c.host, devices.c.status, devices.c.finished,
                    devices.c.error_class).where(devices.c.run_id.in_(chunk))).all()
        if not found:
            return 0
        latest: dict[str, dict[str, Any]] = {}
        per_run: dict[str, int] = {}
        for run_id, host, status, finished, error_class in records:
            if error_class == "BlackedOut" or not finished:
                continue  # never contacted by policy: no attempt
            per_run[run_id] = per_run.get(run_id, 0) + 1
            entry = latest.setdefault(host, {})
            if status in SUCCESS and finished > (entry.get("last_good") or ""):
                entry["last_good"] = finished
            if finished > (entry.get("last_attempt") or ""):
                entry.update(last_attempt=finished, last_status=status, last_run=run_id)
        rate = known.get("rate")
        for run in found:
            count = per_run.get(run["run_id"], 0)
            took = (datetime.fromisoformat(run["finished"])
                    - datetime.fromisoformat(run["started"])).total_seconds()
            if count and took > 0:
                # a run smaller than the job's concurrency did not use what it could
                measured = count / took * max(1.0, concurrency / count)
                rate = measured if rate is None else 0.5 * rate + 0.5 * measured
        with self.engine.begin() as conn:
            have = {r.host: dict(r._mapping) for r in conn.execute(
                select(ages).where(ages.c.job == job))}
            for host, entry in latest.items():
                if host not in have:
                    continue  # not targeted (any more)
                old = have[host]
                merged = {
                    "last_good": max(filter(None, [old["last_good"], entry.get("last_good")]),
                                     default=None)}
                if (entry.get("last_attempt") or "") >= (old["last_attempt"] or ""):
                    merged.update(last_attempt=entry["last_attempt"],
                                  last_status=entry["last_status"],
                                  last_run=entry["last_run"])
                conn.execute(update(ages).where(ages.c.job == job, ages.c.host == host)
                             .values(**merged))
        self.set_state(job, folded_until=found[-1]["finished"], rate=rate)
        return len(records)

    def ages(self, job: str) -> dict[str, Age]:
        with self.engine.connect() as conn:
            return {r.host: Age(_time(r.last_good), _time(r.last_attempt), r.last_status)
                    for r in conn.execute(select(ages).where(ages.c.job == job))}

    def summaries(self, now: datetime) -> list[dict[str, Any]]:
        """Per freshness job: its freshness, devices, the oldest newest-good-backup's age,
        devices never backed up, devices older than the freshness, rate and warning."""
        with self.engine.connect() as conn:
            states = [dict(r._mapping) for r in conn.execute(select(state).order_by(
                state.c.job))]
            rows = conn.execute(select(ages.c.job, ages.c.last_good, ages.c.last_status,
                                       ages.c.last_attempt)).all()
        by_job: dict[str, list[Any]] = {}
        for row in rows:
            by_job.setdefault(row.job, []).append(row)
        out = []
        for item in states:
            job, limit = item["job"], float(item["freshness"] or 0)
            goods = [datetime.fromisoformat(r.last_good) for r in by_job.get(job, [])
                     if r.last_good]
            members = by_job.get(job, [])
            missing = sum(1 for r in members if not r.last_good)
            oldest = max(((now - g).total_seconds() for g in goods), default=None)
            stale = missing + sum(1 for g in goods if (now - g).total_seconds() > limit)
            failing = sum(1 for r in members if Age(_time(r.last_good), _time(r.last_attempt),
                                                    r.last_status).failing)
            out.append({"job": job, "freshness_s": limit, "devices": len(members),
                        "oldest_age_s": None if oldest is None else round(oldest, 3),
                        "never": missing, "stale": stale, "failing": failing,
                        "rate_per_s": item["rate"], "warning": item["warning"],
                        "planned": item["planned"]})
        return out


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
