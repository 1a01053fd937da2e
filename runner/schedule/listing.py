"""The `schedule list --json` document (each job `runner serve` starts by itself: its
schedule in words, next starts in UTC outside blackout windows, the windows holding it, its
workflow parents, event triggers and freshness, last run): one function each for the CLI,
the web and the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.errors import InputError, NotFound
from runner.job.blackouts import Calendar
from runner.job.load import JobFile
from runner.job.workflow import Graph, parents
from runner.schedule.health import overdue, scheduler_status
from runner.schedule.jobsdir import JobsDir, Scheduled
from runner.schedule.policy import is_occurrence, next_clear
from runner.schedule.server import Clock
from runner.store.events import Events
from runner.store.freshness import Freshness
from runner.store.occurrences import occurrence_status
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.store.workflows import Workflows, run_outcomes, runs_brief, step_outcome
from runner.vocab import OnBlackout


def _changes(job: JobFile) -> bool:
    return job.spec.changes_config and not job.spec.needs_approval


def listing(sched: Scheduled, store: ScheduleStore, results: ResultsStore, now: datetime,
            count: int, calendar: Calendar | None = None) -> dict[str, Any]:
    """One scheduled job: its schedule as written, in words, and when it next starts
    (occurrences in a blackout window skipped, or deferred to its end)."""
    spec = sched.job.spec.schedule
    assert spec is not None
    calendar = (calendar or Calendar()).with_job(sched.job.spec.blackouts, sched.job.path,
                                                 sched.job.raw)
    known, moment = store.next_fire(sched.name, sched.key)
    if not known or not is_occurrence(sched.trigger, moment) or \
            (moment is not None and moment < now):
        moment = sched.trigger.next_after(now)  # overdue ones are handled at next start
    times, held = ([], []) if moment is None else next_clear(
        sched.trigger, calendar, sched.name, _changes(sched.job), spec.on_blackout,
        moment - timedelta(microseconds=1), count)
    document = _common(sched.job, results, calendar, now)
    document.update({
        "when": sched.trigger.describe(),
        "schedule": spec.model_dump(mode="json", exclude_defaults=True),
        "timezone": spec.timezone,
        "next": [t.astimezone(UTC).isoformat() for t in times],
        "held": [{"occurrence": o.astimezone(UTC).isoformat(), "windows": list(f.windows),
                  "action": str(spec.on_blackout) if f.until else str(OnBlackout.SKIP),
                  "runs_at": f.until.astimezone(UTC).isoformat() if f.until else None}
                 for o, f in held],
    })
    return document


def _common(job: JobFile, results: ResultsStore, calendar: Calendar,
            now: datetime) -> dict[str, Any]:
    """What every job `runner serve` starts shows: parents, triggers, freshness, windows."""
    spec = job.spec
    found, join = parents(spec.after)
    last = results.last_run(spec.name)
    active = calendar.active(now, spec.name, _changes(job))
    coming = calendar.next_window(now, spec.name, _changes(job))
    trigger = spec.trigger
    return {
        "job": spec.name, "file": str(job.path), "when": "", "schedule": None,
        "timezone": spec.schedule.timezone if spec.schedule else "UTC", "next": [],
        "held": [],
        "after": {"join": str(join), "parents": [{"job": p.job, "when": str(p.when)}
                                                 for p in found]} if found else None,
        "trigger": {"webhook": f"POST /hooks/{spec.name}" if trigger and trigger.webhook
                    else None,
                    "syslog": trigger.syslog.match if trigger and trigger.syslog else None,
                    "on_blackout": str(trigger.on_blackout)} if trigger else None,
        "freshness_s": spec.freshness_s,
        "blackouts": {
            "now": [{"window": a.name, "until": a.end.isoformat(), "text": a.text(),
                     "devices_only": a.placed.window.scoped} for a in active],
            "next": {"window": coming.name, "start": coming.start.isoformat(),
                     "end": coming.end.isoformat(),
                     "devices_only": coming.placed.window.scoped} if coming else None},
        "last_run": {k: last[k] for k in ("run_id", "status", "started", "finished")}
        if last else None,
    }


def _describe(job: JobFile) -> str:
    """A job started by events or workflows only, in words."""
    spec = job.spec
    parts = []
    found, join = parents(spec.after)
    if found:
        parts.append(f"after {f' {join} of ' if len(found) > 1 else ''}" + ", ".join(
            f"{p.job} ({p.when})" for p in found))
    if spec.trigger and spec.trigger.webhook:
        parts.append(f"webhook POST /hooks/{spec.name}")
    if spec.trigger and spec.trigger.syslog:
        parts.append(f"syslog matching {spec.trigger.syslog.match!r}")
    if spec.freshness is not None:
        parts.append(f"backups no older than {spec.freshness}")
    return "; ".join(parts)


def schedule_list(jobs_dir: Path, store: ScheduleStore, results: ResultsStore,
                  count: int = 3,
                  warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every job in `jobs_dir` that `runner serve` starts by itself (a schedule, `after:`,
    a trigger, freshness), by name; `warn` hears about invalid files."""
    jobs = JobsDir(jobs_dir)
    for message in jobs.reload():
        if warn is not None and ("invalid" in message or "already used" in message):
            warn(message)
    now = Clock().now()
    fresh = {f["job"]: f for f in Freshness(store.engine).summaries(now)}
    paused = store.paused()
    status = scheduler_status(store, now)
    out = []
    for name, job in sorted(jobs.all.items()):
        if not job.spec.served:
            continue
        sched = jobs.jobs.get(name)
        if sched is not None:
            item = listing(sched, store, results, now, count, jobs.calendar)
            extra = _describe(job)
            if extra:
                item["when"] += f"; {extra}"
        else:
            item = _common(job, results, jobs.calendar.with_job(job.spec.blackouts, job.path,
                                                                job.raw), now)
            item["when"] = _describe(job)
        item["freshness"] = fresh.get(name)
        item["children"] = jobs.children(name)
        item["needs_approval"] = job.spec.needs_approval
        item["paused"] = paused.get(name)
        # due while no scheduler ran: serve records them (missed, or run late) on start
        item["overdue"] = overdue(sched, store, now, status) if sched is not None else []
        out.append(item)
    return out


# -- workflow runs --------------------------------------------------------------------------


def workflow_documents(store: ScheduleStore, results: ResultsStore, limit: int = 20,
                       root: str | None = None) -> list[dict[str, Any]]:
    """Recent workflow runs, newest first (`runner workflow list --json`)."""
    flows = Workflows(store.engine)
    return [_workflow(store, results, row) for row in flows.recent(limit, root)]


def workflow_document(store: ScheduleStore, results: ResultsStore,
                      workflow_id: str) -> dict[str, Any]:
    """One workflow run (`runner workflow show --json`, the API, the web's graph): its
    root and every step, what each follows, its status (following its run), its outcome
    as its children see it, its run and why."""
    if not workflow_id.strip():
        raise InputError("an empty workflow id names no workflow run", field="workflow")
    row = Workflows(store.engine).get(workflow_id.strip())
    if row is None:
        raise NotFound(f"no workflow run {workflow_id!r} (or the prefix names several): "
                       "`runner workflow list` lists them", field="workflow")
    return _workflow(store, results, row)


def _workflow(store: ScheduleStore, results: ResultsStore,
              row: dict[str, Any]) -> dict[str, Any]:
    flows = Workflows(store.engine)
    graph = Graph.from_json(row["graph"])
    steps = Events(store.engine).of_workflow(row["id"])
    root = flows.root_claim(row)
    ids = [row["root_run"] or "", *(s["run_id"] or "" for s in steps.values())]
    outcomes = run_outcomes(results, ids)
    briefs = runs_brief(results, ids)
    claims = {graph.root: {"status": root["status"] if root else "running",
                           "run_id": row["root_run"],
                           "reason": root.get("reason") if root else None}}
    claims.update({job: {"status": r["status"], "run_id": r["run_id"], "reason": r["reason"]}
                   for job, r in steps.items()})
    listed = []
    for job in [graph.root, *graph.steps]:
        claim = claims.get(job)
        parents_, join = graph.steps.get(job, ((), None))
        run = briefs.get(claim["run_id"] or "") if claim else None
        listed.append({
            "job": job, "join": str(join) if join else None,
            "after": [{"job": p, "when": str(w)} for p, w in parents_],
            "status": (occurrence_status(claim["status"], run["status"] if run else None,
                                         run["carried"] if run else None)
                       if claim else "waiting"),
            "outcome": step_outcome(claim["status"], claim["run_id"], claim["reason"],
                                    outcomes) if claim else None,
            "run_id": claim["run_id"] if claim else None,
            "run_status": run["status"] if run else None,
            "started": run["started"] if run else None,
            "finished": run["finished"] if run else None,
            "reason": claim["reason"] if claim else None})
    return {"id": row["id"], "root": row["root"], "origin": row["origin"],
            "status": row["status"], "started": row["started"], "finished": row["finished"],
            "steps": listed}
