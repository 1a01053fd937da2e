"""Scheduled jobs for the web: the document `runner schedule list --json` prints (each job,
its trigger in words, next fire times in UTC, last run) and each job's last occurrences."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from runner.results import ResultsStore, runs
from runner.schedule.server import Clock, JobsDir, Scheduled
from runner.schedule.store import ScheduleStore, occurrences


def listing(sched: Scheduled, store: ScheduleStore, results: ResultsStore, now: datetime,
            count: int) -> dict[str, Any]:
    """One job of `schedule list --json`: its schedule as written, in words, what comes next.
    (The same shape as the CLI's on branch wt-sched; one of the two should call the other
    once both are merged.)"""
    spec = sched.job.spec.schedule
    assert spec is not None
    known, moment = store.next_fire(sched.name, sched.key)
    if not known or (moment is not None and moment < now):
        moment = sched.trigger.next_after(now)  # overdue ones are handled at next start
    times: list[str] = []
    while moment is not None and len(times) < count:
        times.append(moment.astimezone(UTC).isoformat())
        moment = sched.trigger.next_after(moment)
    last = results.last_run(sched.name)
    return {
        "job": sched.name, "file": str(sched.job.path), "when": sched.trigger.describe(),
        "schedule": spec.model_dump(mode="json", exclude_defaults=True),
        "timezone": spec.timezone, "next": times,
        "last_run": {k: last[k] for k in ("run_id", "status", "started", "finished")}
        if last else None,
    }


def schedule_list(jobs_dir: Path, store: ScheduleStore, results: ResultsStore,
                  count: int = 3) -> list[dict[str, Any]]:
    jobs = JobsDir(jobs_dir)
    jobs.reload()
    now = Clock().now()
    return [listing(sched, store, results, now, count)
            for _, sched in sorted(jobs.jobs.items())]


def recent_occurrences(store: ScheduleStore, results: ResultsStore, job: str,
                       limit: int = 30) -> list[dict[str, Any]]:
    """A job's last occurrences, newest first: what became of each (ran ok, failed, missed,
    skipped) and why, with its run's status and start (the lag behind its due time)."""
    query = select(occurrences).where(occurrences.c.job == job) \
        .order_by(occurrences.c.occurrence.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    ids = [r["run_id"] for r in rows if r["run_id"]]
    started: dict[str, tuple[str, str]] = {}
    if ids:
        with results.engine.connect() as conn:
            started = {r.run_id: (r.status, r.started) for r in conn.execute(
                select(runs.c.run_id, runs.c.status, runs.c.started)
                .where(runs.c.run_id.in_(ids)))}
    out = []
    for row in rows:
        run = started.get(row["run_id"] or "")
        lag = None
        if run is not None:
            lag = round((datetime.fromisoformat(run[1])
                         - datetime.fromisoformat(row["occurrence"])).total_seconds(), 3)
        out.append({"job": row["job"], "occurrence": row["occurrence"],
                    "status": row["status"], "reason": row["reason"],
                    "run_id": row["run_id"], "run_status": run[0] if run else None,
                    "lag_s": lag, "server": row["server"], "updated": row["updated"]})
    return out
