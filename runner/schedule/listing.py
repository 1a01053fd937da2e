"""The `schedule list --json` document (each job, its trigger in words, next fire times in
UTC, last run) and a job's last occurrences, each with a status that follows its run
through approval: one function each for the CLI, the web and the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.schedule.policy import is_occurrence
from runner.schedule.server import Clock, JobsDir, Scheduled
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore


def listing(sched: Scheduled, store: ScheduleStore, results: ResultsStore, now: datetime,
            count: int) -> dict[str, Any]:
    """One job: its schedule as written, in words, and what comes next."""
    spec = sched.job.spec.schedule
    assert spec is not None
    known, moment = store.next_fire(sched.name, sched.key)
    if not known or not is_occurrence(sched.trigger, moment) or \
            (moment is not None and moment < now):
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
                  count: int = 3,
                  warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every scheduled job in `jobs_dir`, by name; `warn` hears about invalid files."""
    jobs = JobsDir(jobs_dir)
    for message in jobs.reload():
        if warn is not None and ("invalid" in message or "already used" in message):
            warn(message)
    now = Clock().now()
    return [listing(sched, store, results, now, count)
            for _, sched in sorted(jobs.jobs.items())]
