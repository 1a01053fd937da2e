"""A job's last occurrences with the runs they became: each occurrence's status follows
its run (a preview's decision, then the run that carried it out). The list of scheduled
jobs itself is runner.schedule.listing's, the document `runner schedule list --json` prints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from runner.store.events import events
from runner.store.results import ResultsStore, runs
from runner.store.schedule import ScheduleStore, occurrences
from runner.vocab import OccurrenceStatus, RunStatus

# What became of an occurrence whose preview was decided: its preview's status, then the
# status of the run that carried the approved change out.
_DECIDED = {RunStatus.REJECTED: OccurrenceStatus.REJECTED,
            RunStatus.EXPIRED: OccurrenceStatus.EXPIRED,
            RunStatus.FAILED: OccurrenceStatus.FAILED,
            RunStatus.INTERRUPTED: OccurrenceStatus.INTERRUPTED,
            RunStatus.REHEARSAL_FAILED: OccurrenceStatus.REHEARSAL_FAILED}
_CARRIED_OUT = {RunStatus.OK: OccurrenceStatus.DONE, RunStatus.FAILED: OccurrenceStatus.FAILED,
                RunStatus.INTERRUPTED: OccurrenceStatus.INTERRUPTED}


def occurrence_status(stored: str, preview: str | None, carried: str | None) -> str:
    """An occurrence's status: as stored, except that one previewed for approval follows
    its run: awaiting_approval -> approved | rejected | expired -> the outcome of the run
    that carried the approved change out (done, failed, interrupted)."""
    if stored != OccurrenceStatus.AWAITING_APPROVAL or preview is None:
        return stored
    if preview == RunStatus.APPROVED:
        return _CARRIED_OUT.get(RunStatus(carried), OccurrenceStatus.APPROVED) \
            if carried else OccurrenceStatus.APPROVED
    return _DECIDED.get(RunStatus(preview), stored)


def recent_occurrences(store: ScheduleStore, results: ResultsStore, job: str,
                       limit: int = 30) -> list[dict[str, Any]]:
    """A job's last occurrences and events (webhooks, syslog messages, workflow steps,
    deferred runs, freshness rounds), newest first: what became of each (ran ok, failed,
    missed, skipped, deferred, pending, awaiting approval, approved, rejected, expired)
    and why, with its run's status and start (the lag behind its due time), and for an
    approved preview the run that carried it out."""
    query = select(occurrences).where(occurrences.c.job == job) \
        .order_by(occurrences.c.occurrence.desc()).limit(limit)
    later = select(events).where(events.c.job == job) \
        .order_by(events.c.received.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = [{**dict(r._mapping), "trigger": "schedule", "key": r.occurrence,
                 "due": r.occurrence, "by": None, "detail": None, "workflow": None}
                for r in conn.execute(query)]
        rows += [{"job": r.job, "occurrence": r.received, "status": r.status,
                  "reason": r.reason, "run_id": r.run_id, "server": r.server,
                  "updated": r.updated, "trigger": r.source, "key": r.key, "due": r.due,
                  "by": r.by, "detail": r.detail, "workflow": r.workflow}
                 for r in conn.execute(later)]
    rows.sort(key=lambda r: datetime.fromisoformat(r["occurrence"]), reverse=True)
    rows = rows[:limit]
    ids = [r["run_id"] for r in rows if r["run_id"]]
    found: dict[str, dict[str, Any]] = {}
    carried: dict[str, dict[str, Any]] = {}
    if ids:
        with results.engine.connect() as conn:
            found = {r.run_id: dict(r._mapping) for r in conn.execute(
                select(runs.c.run_id, runs.c.status, runs.c.started, runs.c.decision,
                       runs.c.workflow)
                .where(runs.c.run_id.in_(ids)))}
            carried = {r.approves: dict(r._mapping) for r in conn.execute(
                select(runs.c.run_id, runs.c.status, runs.c.approves)
                .where(runs.c.approves.in_(ids)).order_by(runs.c.started))}
    out = []
    for row in rows:
        run = found.get(row["run_id"] or "")
        after = carried.get(row["run_id"] or "")
        lag = None
        if run is not None:
            lag = round((datetime.fromisoformat(run["started"])
                         - datetime.fromisoformat(row["due"])).total_seconds(), 3)
        out.append({
            "job": row["job"], "occurrence": row["occurrence"], "trigger": row["trigger"],
            "key": row["key"], "due": row["due"], "by": row["by"], "detail": row["detail"],
            "workflow": row["workflow"] or (run["workflow"] if run else None),
            "status": occurrence_status(row["status"], run["status"] if run else None,
                                        after["status"] if after else None),
            "reason": row["reason"], "run_id": row["run_id"],
            "run_status": run["status"] if run else None,
            "decision": run["decision"] if run else None,
            "carried_out_by": after["run_id"] if after else None,
            "carried_out_status": after["status"] if after else None,
            "lag_s": lag, "server": row["server"], "updated": row["updated"]})
    return out
