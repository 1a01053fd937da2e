"""What the active scheduler does each pass besides firing schedules: start the events due
(webhooks, syslog messages, workflow steps, deferred occurrences, freshness backups), each
once, through blackout windows and the job's overlap slot; move workflow runs on as their
steps end; plan freshness backups. Only the lease holder calls these."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from runner.errors import BlackoutActive, InputError, StoreError
from runner.job.load import JobFile
from runner.job.run import new_run_id
from runner.job.workflow import Graph, decide
from runner.schedule.policy import blackout_fate, round_seconds
from runner.schedule.policy import plan_freshness as plan
from runner.schedule.starts import Scheduling, Start, blackout_reason
from runner.store.database import retrying
from runner.store.workflows import insert_workflow, new_workflow_id, run_outcomes, step_outcome
from runner.vocab import (
    EventSource,
    OccurrenceStatus,
    OnBlackout,
    When,
    WorkflowStatus,
)

log = logging.getLogger("runner.serve")
FAILED_OUTCOMES = frozenset({"failed", "interrupted", "rejected", "expired", "blacked out"})


def on_blackout(job: JobFile, source: EventSource) -> OnBlackout:
    """What a start of this kind does inside a blackout window: a deferred occurrence waits
    again; a freshness round is planned anew after the window; events and workflow steps
    follow the job's trigger (or schedule) `on_blackout`."""
    spec = job.spec
    if source is EventSource.DEFERRED:
        return OnBlackout.DEFER
    if source is EventSource.FRESHNESS:
        return OnBlackout.SKIP
    if source is EventSource.WORKFLOW and spec.schedule is not None and spec.trigger is None:
        return spec.schedule.on_blackout
    return spec.trigger.on_blackout if spec.trigger is not None else OnBlackout.SKIP


# -- starting events ------------------------------------------------------------------------


def start_events(s: Scheduling, now: datetime) -> float | None:
    """Start the pending events that are due; seconds until the next one."""
    for row in s.events.due(now):
        name, key = row["job"], row["key"]
        job = s.jobs.all.get(name)
        if job is None:
            s.events.settle(name, key, OccurrenceStatus.SKIPPED, now, only_pending=True,
                            reason=f"job {name!r} is not (any more) a valid job in "
                                   f"{s.jobs.path}")
            continue
        source = EventSource(row["source"])
        # held when due inside a window or starting inside one (as scheduled occurrences)
        calendar, changes, policy = s.calendar(job), s.changes(job), on_blackout(job, source)
        fate = blackout_fate(calendar, name, changes, now, policy) or \
            blackout_fate(calendar, name, changes, datetime.fromisoformat(row["due"]), policy)
        if fate is not None:
            if fate.until is not None:
                if s.events.defer(name, key, fate.until, fate.reason, now):
                    log.warning("%s: %s deferred: %s", name, key, fate.reason)
            elif s.events.settle(name, key, OccurrenceStatus.SKIPPED, now, reason=fate.reason,
                                 only_pending=True):
                log.warning("%s: %s skipped: %s", name, key, fate.reason)
            continue
        slot = s.slot(name)
        with s.lock:
            if slot.running is not None:
                continue  # it waits for the job's running run (overlap), as events do
            slot.running = now
        _take(s, job, row, source, now)
    coming = s.events.next_due()
    return None if coming is None else max(0.0, (coming - now).total_seconds())


def _take(s: Scheduling, job: JobFile, row: dict[str, Any], source: EventSource,
          now: datetime) -> None:
    name = job.spec.name
    run_id = new_run_id()
    workflow = row["workflow"]
    record = None
    if source is not EventSource.WORKFLOW:
        graph = s.jobs.graph(name)
        if graph is not None:
            workflow = new_workflow_id()
            chosen = workflow

            def record(conn: Connection, key: str) -> None:
                insert_workflow(conn, chosen, name, key, run_id, graph.to_json(),
                                now.isoformat())
    key = s.events.take(name, row["key"], run_id, s.owner, now, record)
    if key is None:  # another server took it
        release(s, name, now)
        return
    due = datetime.fromisoformat(row["due"])
    start = Start(job, key, source, due, run_id, row["hosts"], row["vars"], row["by"],
                  workflow)
    cancel = threading.Event()
    future = s.pool.submit(_run, s, start, cancel)
    with s.lock:
        s.running[future] = (name, due, run_id, cancel)
    future.add_done_callback(s._forget)
    log.info("%s: started %s as run %s%s", name, key, run_id,
             f" (workflow {workflow})" if workflow else "")


def _run(s: Scheduling, start: Start, cancel: threading.Event) -> None:
    status, reason = OccurrenceStatus.FAILED, None
    try:
        status = s.event_run(start, cancel)
    except BlackoutActive as exc:
        status, reason = OccurrenceStatus.SKIPPED, blackout_reason(exc)
        log.warning("%s: %s skipped: %s", start.name, start.key, reason)
    except (InputError, StoreError) as exc:
        reason = str(exc)
        log.error("%s: %s not run: %s", start.name, start.key, exc)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("%s: %s failed", start.name, start.key)
    finally:
        now = s.clock.now()
        try:
            retrying(s.store.engine, f"recording {start.key} of {start.name}",
                     lambda: s.events.settle(start.name, start.key, status, now,
                                             reason=reason, run_id=start.run_id),
                     s.settings.db_retry)
            log.info("%s: %s finished: %s (run %s)", start.name, start.key, status,
                     start.run_id)
        except Exception:
            log.exception("%s: %s finished (%s, run %s) but the schedule store did not "
                          "take it", start.name, start.key, status, start.run_id)
        finally:
            release(s, start.name, now)


def folded(s: Scheduling, name: str) -> None:
    """A run of a freshness job ended: its devices' newest good backups are read at once
    (the metric and the listings say so without waiting for the next round)."""
    job = s.jobs.all.get(name)
    if job is None or job.spec.freshness is None:
        return
    try:
        s.freshness.fold(s.results, name, job.spec.concurrency)
    except Exception as exc:  # the next round folds it again
        log.warning("%s: backup ages not updated now (%s): the next round will",
                    name, type(exc).__name__)


def release(s: Scheduling, name: str, now: datetime) -> None:
    """A run of `name` ended: its slot frees (a queued occurrence starts)."""
    scheduled = s.jobs.jobs.get(name)
    if scheduled is not None:
        s._release(scheduled, now)  # folds too
        return
    folded(s, name)
    with s.lock:
        s.slot(name).finished()
    s.wake.set()


# -- workflows ------------------------------------------------------------------------------


def advance_workflows(s: Scheduling, now: datetime) -> None:
    """Each running workflow: start (or record as not run) the steps whose parents have
    ended, each once (its event's key is the claim); finish the workflow when every step
    is decided and ended."""
    for workflow in s.workflows.running():
        try:
            _advance(s, workflow, now)
        except Exception as exc:
            if isinstance(exc, InputError):
                log.error("workflow %s: %s", workflow["id"], exc)
            else:
                raise


def outcomes_of(s: Scheduling, workflow: dict[str, Any]) -> tuple[
        dict[str, str | None], dict[str, dict[str, Any]]]:
    """Each job's outcome in a workflow run (None: not ended; absent: not started), and
    its steps' rows."""
    steps = s.events.of_workflow(workflow["id"])
    root = s.workflows.root_claim(workflow)
    runs = run_outcomes(s.results, [workflow["root_run"] or "",
                                    *(r["run_id"] or "" for r in steps.values())])
    outcomes: dict[str, str | None] = {}
    if root is not None:
        outcomes[workflow["root"]] = step_outcome(root["status"], workflow["root_run"],
                                                  root.get("reason"), runs)
    for job, row in steps.items():
        outcomes[job] = step_outcome(row["status"], row["run_id"], row["reason"], runs)
    return outcomes, steps


def _advance(s: Scheduling, workflow: dict[str, Any], now: datetime) -> None:
    graph = Graph.from_json(workflow["graph"])
    outcomes, steps = outcomes_of(s, workflow)
    if graph.root not in outcomes:
        return  # the root's claim is not visible yet
    decided = True
    while decided:  # a step recorded as not run may decide its children at once
        decided = False
        for job, (parents, join) in graph.steps.items():
            if job in steps:
                continue
            known = {p: outcomes.get(p) for p, _ in parents}
            verdict, why = decide(parents, join, known)
            if verdict is None:
                continue
            key = f"wf:{workflow['id']}"
            if verdict:
                if s.events.add(job, key, EventSource.WORKFLOW, now, workflow=workflow["id"],
                                detail={"after": why}, server=s.owner):
                    log.info("workflow %s: %s starts (%s)", workflow["id"], job, why)
                    s.wake.set()
                steps[job] = {"status": OccurrenceStatus.PENDING, "run_id": None,
                              "reason": None}
                outcomes[job] = None
            else:
                if s.events.add(job, key, EventSource.WORKFLOW, now, workflow=workflow["id"],
                                status=OccurrenceStatus.SKIPPED, reason=why, server=s.owner):
                    log.info("workflow %s: %s not run: %s", workflow["id"], job, why)
                steps[job] = {"status": OccurrenceStatus.SKIPPED, "run_id": None,
                              "reason": why}
                outcomes[job] = "not run"
                decided = True
    if len(steps) < len(graph.steps) or any(o is None for o in outcomes.values()):
        return
    status = workflow_status(graph, outcomes)
    if s.workflows.finish(workflow["id"], status, now.isoformat()):
        log.info("workflow %s (%s) finished: %s", workflow["id"], graph.root, status)


def workflow_status(graph: Graph, outcomes: dict[str, str | None]) -> WorkflowStatus:
    """A workflow fails when a job in it failed (or was rejected, expired, blacked out)
    and no step that follows it on failure or always ran (a handled failure does not fail
    it)."""
    ran = {"ok", "failed", "interrupted"}
    handled = {p for job, (parents, _) in graph.steps.items() for p, w in parents
               if w in (When.FAILURE, When.ALWAYS) and outcomes.get(job) in ran}
    for job, outcome in outcomes.items():
        if outcome in FAILED_OUTCOMES and job not in handled:
            return WorkflowStatus.FAILED
    return WorkflowStatus.OK


# -- freshness ------------------------------------------------------------------------------


def plan_freshness(s: Scheduling, now: datetime) -> float | None:
    """Each freshness job, once per round: fold its finished runs into each device's
    newest good backup, then record the devices to back up now as one event."""
    plans = s.next_plan
    waits: list[float] = []
    for name, job in sorted(s.jobs.all.items()):
        limit = job.spec.freshness_s
        if limit is None:
            continue
        coming = plans.get(name)
        if coming is not None and now < coming:
            waits.append((coming - now).total_seconds())
            continue
        try:
            _plan(s, job, limit, now)
        except InputError as exc:
            log.error("%s: freshness not planned: %s", name, exc)
            plans[name] = now + timedelta(seconds=60)
    return min(waits) if waits else None


def _plan(s: Scheduling, job: JobFile, limit: float, now: datetime) -> None:
    name = job.spec.name
    s.next_plan[name] = now + timedelta(seconds=round_seconds(limit))
    if s.events.open_for(name, EventSource.FRESHNESS):
        return  # the last round's run has not ended: the next round reads its results
    hosts = s.targets.hosts(job, s.inventory, s.templates)
    s.freshness.targets(name, hosts)
    s.freshness.fold(s.results, name, job.spec.concurrency)
    known = s.freshness.state(name) or {}
    held = s.calendar(job).fleet_hold(now, name, s.changes(job))
    if held:
        s.freshness.set_state(name, freshness=limit, devices=len(hosts), planned=now.isoformat(),
                              warning=f"paused: blackout {held[0].text()}")
        return
    last = known.get("planned")
    since = (now - datetime.fromisoformat(last)).total_seconds() if last else None
    found = plan(hosts, s.freshness.ages(name), now, limit, known.get("rate"), since=since)
    if found.warning != known.get("warning") and found.warning:
        log.warning("%s: freshness %gs cannot be kept: %s", name, limit, found.warning)
    s.freshness.set_state(name, freshness=limit, devices=len(hosts), warning=found.warning,
                          planned=now.isoformat())
    if found.hosts:
        s.events.add(name, f"freshness:{now.isoformat()}", EventSource.FRESHNESS, now,
                     hosts=found.hosts, server=s.owner,
                     detail={"devices": len(found.hosts), "retried_or_new": found.urgent},
                     by="freshness")
        log.info("%s: freshness round: %d device(s) to back up (%d retried or never "
                 "backed up)", name, len(found.hosts), found.urgent)
        s.wake.set()
