"""A job's last occurrences with the runs they became (the list of scheduled jobs itself is
runner.schedule.listing's, the document `runner schedule list --json` prints)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from runner.store.results import ResultsStore, runs
from runner.store.schedule import ScheduleStore, occurrences


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
