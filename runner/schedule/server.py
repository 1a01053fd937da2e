"""`runner serve`: fires every scheduled job's occurrences through the same run path as
`runner run`, exactly once per occurrence, with the misfire, coalesce, overlap and blackout
policies; and starts the runs no clock starts (webhooks, syslog messages, workflow steps,
deferred occurrences, freshness backups), each recorded by any server and started once by
the active one."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.engine import Connection

from runner.errors import BlackoutActive, InputError, StoreError
from runner.job.blackouts import Calendar
from runner.job.load import JobFile
from runner.job.notify import NotifyTarget
from runner.job.prepare import Prepared, prepare_job
from runner.job.rehearse import unattended
from runner.job.run import RunOptions, execute, new_run_id
from runner.records import RunResult, now_iso
from runner.schedule.flows import advance_workflows, folded, plan_freshness, start_events
from runner.schedule.jobsdir import JobsDir, Scheduled, scheduled_from
from runner.schedule.policy import Slot, blackout_fate, due, is_occurrence
from runner.schedule.starts import EventRunFunction, Start, TargetCache, blackout_reason
from runner.settings import Settings
from runner.store.database import lost_connection, retrying
from runner.store.events import Events
from runner.store.freshness import Freshness
from runner.store.migrate import describe
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore, server_id
from runner.store.workflows import Workflows, insert_workflow, new_workflow_id
from runner.vocab import (
    Approval,
    EngineChoice,
    EventSource,
    OccurrenceStatus,
    OnBlackout,
    Overlap,
)

__all__ = ["Clock", "JobsDir", "Scheduled", "Scheduler", "Start", "scheduled_from"]

log = logging.getLogger("runner.serve")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# (scheduled job, occurrence, run id, cancel event) -> done | failed | interrupted
RunFunction = Callable[["Scheduled", datetime, str, threading.Event], OccurrenceStatus]


class Scheduler:
    def __init__(self, jobs_dir: Path, store: ScheduleStore, results: ResultsStore,
                 inventory: Path, templates: Path, *, clock: Clock | None = None,
                 max_runs: int = 4, stop_grace: float = 60, lease_ttl: float = 15,
                 run: RunFunction | None = None, owner: str | None = None,
                 engine: EngineChoice = EngineChoice.AUTO, shard_size: int = 50,
                 settings: Settings | None = None,
                 notify: list[NotifyTarget] | None = None,
                 event_run: EventRunFunction | None = None, twin: str | None = None) -> None:
        self.engine = engine
        self._rehearsing = threading.Lock()  # one rehearsal at a time: twins are shared
        self.notify = notify or []  # for jobs that name no notification targets
        self.settings = settings or Settings()
        self.twin = twin or self.settings.twin  # the twin `rehearse: required` means
        self.shard_size = shard_size
        self.jobs = JobsDir(jobs_dir)
        self.store = store
        self.results = results
        self.events = Events(store.engine)
        self.workflows = Workflows(store.engine)
        self.freshness = Freshness(store.engine)
        self.inventory = inventory
        self.templates = templates
        self.clock = clock or Clock()
        self.stop_grace = stop_grace
        self.lease_ttl = lease_ttl
        self.owner = owner or server_id()
        self.run_function = run or self._execute
        self.event_run = event_run or self._execute_event
        self.pool = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="run")
        self.running: dict[Future[None], tuple[str, datetime, str, threading.Event]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.wake = threading.Event()  # an event was recorded here: look at once
        self.leader = False
        self._standby_logged: str | None = None
        self._store_lost = False  # the store is unreachable (said once per outage)
        self.slots: dict[str, Slot] = {}  # runs of jobs without a schedule
        self.services: list[Any] = []  # the webhook and syslog listeners (runner.schedule.events)
        self._pruned = datetime.min.replace(tzinfo=UTC)
        self._workflow_of_run: dict[str, str | None] = {}  # a scheduled run's workflow
        self.targets = TargetCache()  # the hosts each freshness job targets
        self.next_plan: dict[str, datetime] = {}  # each freshness job's next round
        self._files_told = False  # the invalid job files are on record for the web

    # -- one pass of the loop -------------------------------------------------------------

    def reload(self) -> None:
        for message in self.jobs.reload():
            (log.error if "invalid" in message or "already used" in message
             else log.info)(message)
        self._files_told = False
        known = set(self.jobs.all)
        log.debug("jobs: %s", ", ".join(sorted(known)) or "none")

    def tick(self) -> float:
        """Fire what is due; seconds until the next thing to do."""
        now = self.clock.now()
        held, other = self.store.acquire(self.owner, now.timestamp(), self.lease_ttl)
        if not held:
            if self._standby_logged != other:
                log.warning("standing by: scheduler lease held by %s", other)
                self._standby_logged = other
            self.leader = False
            return min(2.0, self.lease_ttl / 3)
        if not self.leader:
            self.leader = True
            self._standby_logged = None
            log.info("active scheduler (%s)%s", self.owner,
                     f", took over from {other}" if other else "")
            self._files_told = False
            if other:
                self._interrupted_by(other, now)
        if not self._files_told:
            self.store.record_files(self.owner, [(str(p.resolve()), error, kept) for p, error, kept
                                                 in self.jobs.invalid()], now)
            self._files_told = True
        for expired in self.results.expire_overdue(now_iso()):
            log.warning("run %s: its approval window passed: expired", expired)
        waits = []
        paused = self.store.paused()
        for sched in list(self.jobs.jobs.values()):
            waits.append(self._fire_due(sched, now, paused.get(sched.name)))
        advance_workflows(self, now)
        waits.append(plan_freshness(self, now))
        waits.append(start_events(self, now))
        if now - self._pruned > timedelta(minutes=1):
            self.events.prune_seen(now - timedelta(hours=1))
            self._pruned = now
        pending = [w for w in waits if w is not None]
        return max(0.0, min([*pending, self.lease_ttl / 3]))

    def _interrupted_by(self, other: str, now: datetime) -> None:
        for occ in self.store.occurrences():
            if occ["status"] == OccurrenceStatus.RUNNING and occ["server"] == other:
                self.results.interrupt(occ["run_id"], now.isoformat())
        count = self.store.interrupt_running(other, now)
        for row in self.events.interrupt_running(other, now):
            self.results.interrupt(row["run_id"], now.isoformat())
            count += 1
        if count:
            log.warning("%d occurrence(s) left running by %s recorded as interrupted",
                        count, other)

    def _fire_due(self, sched: Scheduled, now: datetime,
                  paused: dict[str, Any] | None = None) -> float | None:
        spec = sched.job.spec.schedule
        assert spec is not None
        known, next_fire = self.store.next_fire(sched.name, sched.key)
        if known and not is_occurrence(sched.trigger, next_fire):
            known = False  # stored by a runner that read the schedule otherwise: recompute
        if not known:
            # A one-off `at` first seen just after its time (the server was starting, the
            # file was written late) still runs within misfire_grace; a cron or interval
            # job first seen starts from now, as crontab does.
            since = now - timedelta(seconds=spec.misfire_grace) if spec.at is not None \
                else now
            next_fire = sched.trigger.next_after(since)
            self.store.set_next_fire(sched.name, sched.key, next_fire)
            if next_fire:
                log.info("%s: next run %s", sched.name, next_fire.isoformat())
        decision = due(sched.trigger, next_fire, now, spec.misfire_grace, spec.coalesce)
        for occurrence, reason in decision.missed:
            if self.store.claim(sched.name, occurrence, OccurrenceStatus.MISSED, self.owner,
                                now, reason):
                log.warning("%s: occurrence %s not run: %s", sched.name,
                            occurrence.isoformat(), reason)
        for occurrence in decision.run:
            if paused is not None:
                self._paused(sched, occurrence, now, paused)
            elif not self._held(sched, occurrence, now):
                self._offer(sched, occurrence, now)
        if decision.next_fire != next_fire:
            self.store.set_next_fire(sched.name, sched.key, decision.next_fire)
        if decision.next_fire is None:
            return None
        return (decision.next_fire - now).total_seconds()

    def _paused(self, sched: Scheduled, occurrence: datetime, now: datetime,
                pause: dict[str, Any]) -> None:
        """An occurrence due while its schedule is paused: recorded as skipped, saying who
        paused it and why (`runner schedule resume` starts the next one)."""
        reason = f"schedule paused by {pause['paused_by']} at {pause['paused_at']}" + \
            (f": {pause['reason']}" if pause.get("reason") else "")
        if self.store.claim(sched.name, occurrence, OccurrenceStatus.SKIPPED, self.owner, now,
                            reason):
            log.warning("%s: occurrence %s skipped: %s", sched.name, occurrence.isoformat(),
                        reason)

    def changes(self, job: JobFile) -> bool:
        """Whether a start of `job` by the scheduler changes config (a job that needs
        approval starts with a preview, which does not)."""
        return job.spec.changes_config and not job.spec.needs_approval

    def calendar(self, job: JobFile) -> Calendar:
        """The windows `job` obeys: the directory's calendar and its own."""
        return self.jobs.calendar.with_job(job.spec.blackouts, job.path, job.raw)

    def _held(self, sched: Scheduled, occurrence: datetime, now: datetime) -> bool:
        """An occurrence due, or starting, inside a fleet-wide blackout window: recorded as
        skipped, or deferred (a pending event at the window's end; with coalesce, one for all)."""
        spec = sched.job.spec.schedule
        assert spec is not None
        # Held when due inside a window (a busy server may see it only after the window's
        # end) or when starting it now would start inside one.
        calendar, changes = self.calendar(sched.job), self.changes(sched.job)
        fate = blackout_fate(calendar, sched.name, changes, now, spec.on_blackout) or \
            blackout_fate(calendar, sched.name, changes, occurrence, spec.on_blackout)
        if fate is None:
            return False
        if spec.on_blackout is OnBlackout.SKIP or fate.until is None:
            if self.store.claim(sched.name, occurrence, OccurrenceStatus.SKIPPED, self.owner,
                                now, fate.reason):
                log.warning("%s: occurrence %s skipped: %s", sched.name,
                            occurrence.isoformat(), fate.reason)
            return True
        waiting = [e for e in self.events.open_for(sched.name, EventSource.DEFERRED)
                   if e["status"] == OccurrenceStatus.PENDING]
        if waiting and spec.coalesce:
            reason = f"{fate.reason}: coalesced into the deferred run of " \
                     f"{waiting[0]['key'].removeprefix('deferred:')}"
            if self.store.claim(sched.name, occurrence, OccurrenceStatus.MISSED, self.owner,
                                now, reason):
                log.warning("%s: occurrence %s %s", sched.name, occurrence.isoformat(), reason)
            return True
        until = fate.until

        def defer(conn: Connection) -> None:
            self.events.add(sched.name, f"deferred:{occurrence.isoformat()}",
                            EventSource.DEFERRED, now, due=until, conn=conn,
                            reason=fate.reason, server=self.owner,
                            detail={"occurrence": occurrence.isoformat()})

        if self.store.claim(sched.name, occurrence, OccurrenceStatus.DEFERRED, self.owner,
                            now, fate.reason, then=defer):
            log.warning("%s: occurrence %s deferred: %s", sched.name, occurrence.isoformat(),
                        fate.reason)
        return True

    def _offer(self, sched: Scheduled, occurrence: datetime, now: datetime) -> None:
        with self.lock:
            action = sched.slot.offer(occurrence)
        if action == "start":
            self._start(sched, occurrence, now)
        elif action == "queued":
            log.info("%s: occurrence %s queued behind the running one", sched.name,
                     occurrence.isoformat())
        elif self.store.claim(sched.name, occurrence, OccurrenceStatus.SKIPPED, self.owner,
                              now, action):
            log.warning("%s: occurrence %s %s", sched.name, occurrence.isoformat(), action)

    def workflow_for(self, job: JobFile, key: str, run_id: str,
                     now: datetime) -> tuple[str | None, Callable[[Connection], None] | None]:
        """A workflow run for a start of `job` when jobs follow it: its id, and what records
        it in the start's claim transaction."""
        graph = self.jobs.graph(job.spec.name)
        if graph is None:
            return None, None
        workflow = new_workflow_id()

        def record(conn: Connection) -> None:
            insert_workflow(conn, workflow, job.spec.name, key, run_id, graph.to_json(),
                            now.isoformat())
        return workflow, record

    def _start(self, sched: Scheduled, occurrence: datetime, now: datetime) -> None:
        run_id = new_run_id()
        workflow, record = self.workflow_for(sched.job, occurrence.isoformat(), run_id, now)
        if not self.store.claim(sched.name, occurrence, OccurrenceStatus.RUNNING, self.owner, now,
                                run_id=run_id, then=record):
            log.info("%s: occurrence %s was already claimed; not running it again",
                     sched.name, occurrence.isoformat())
            self._release(sched, now)
            return
        cancel = threading.Event()
        future = self.pool.submit(self._run_and_release, sched, occurrence, run_id, cancel,
                                  workflow)
        with self.lock:
            self.running[future] = (sched.name, occurrence, run_id, cancel)
        future.add_done_callback(self._forget)
        log.info("%s: fired occurrence %s as run %s%s", sched.name, occurrence.isoformat(),
                 run_id, f" (workflow {workflow})" if workflow else "")

    def _forget(self, future: Future[None]) -> None:
        with self.lock:
            self.running.pop(future, None)

    def slot(self, name: str) -> Slot:
        """The overlap slot of a job: its schedule's, or one of its own (events of a job
        without a schedule wait while one of its runs goes)."""
        scheduled = self.jobs.jobs.get(name)
        if scheduled is not None:
            return scheduled.slot
        return self.slots.setdefault(name, Slot(Overlap.SKIP))

    def _release(self, sched: Scheduled, now: datetime) -> None:
        folded(self, sched.name)
        with self.lock:
            queued = sched.slot.finished()
        if queued is not None and not self.stopping.is_set():
            self._start(sched, queued, now)
        self.wake.set()  # events of this job may wait for the slot

    def _run_and_release(self, sched: Scheduled, occurrence: datetime, run_id: str,
                         cancel: threading.Event, workflow: str | None = None) -> None:
        status, reason = OccurrenceStatus.FAILED, None
        try:
            self._workflow_of_run[run_id] = workflow
            status = self.run_function(sched, occurrence, run_id, cancel)
        except BlackoutActive as exc:
            status, reason = OccurrenceStatus.SKIPPED, blackout_reason(exc)
            log.warning("%s: occurrence %s skipped: %s", sched.name, occurrence.isoformat(),
                        reason)
        except InputError as exc:
            reason = str(exc)
            log.error("%s: occurrence %s not run: %s", sched.name, occurrence.isoformat(),
                      exc)
        except StoreError as exc:  # e.g. its records kept in a file: the error says where
            reason = str(exc)
            log.error("%s: occurrence %s: %s", sched.name, occurrence.isoformat(), exc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("%s: occurrence %s failed", sched.name, occurrence.isoformat())
        finally:
            self._workflow_of_run.pop(run_id, None)
            now = self.clock.now()
            try:
                retrying(self.store.engine, f"recording occurrence {occurrence.isoformat()}"
                         f" of {sched.name}", lambda: self.store.finish(
                             sched.name, occurrence, status, now, run_id=run_id,
                             reason=reason), self.settings.db_retry)
                log.info("%s: occurrence %s finished: %s (run %s)", sched.name,
                         occurrence.isoformat(), status, run_id)
            except Exception:  # the run itself is stored (or kept in a file) by execute
                log.exception("%s: occurrence %s finished (%s, run %s) but the schedule "
                              "store did not take it", sched.name, occurrence.isoformat(),
                              status, run_id)
            finally:
                self._release(sched, now)

    def run_options(self, job: JobFile, label: str, run_id: str, cancel: threading.Event,
                    workflow: str | None, started_by: str) -> RunOptions:
        spec = job.spec.schedule
        preview = spec is not None and spec.approval is Approval.REQUIRED
        return RunOptions(
            settings=self.settings, occurrence=label, cancel=cancel, run_id=run_id,
            engine=self.engine, shard_size=self.shard_size,
            preview_window=spec.approval_seconds if preview and spec else None,
            notify=self.notify, started_by=started_by, workflow=workflow,
            calendar=self.jobs.calendar, now=self.clock.now())

    def execute(self, prep: Prepared, options: RunOptions) -> RunResult:
        """Run an occurrence: on its twin first when its schedule says `rehearse:`, one
        rehearsal at a time (a twin that is not up fails it as rehearsal_failed)."""
        schedule = prep.job.spec.schedule
        name = schedule.twin(self.twin) if schedule is not None else None
        if name is None:
            return execute(prep, self.results, options)
        from runner.lab.twin.rehearsal import open_twin

        with self._rehearsing:
            return unattended(prep, self.results, options, name,
                              lambda twin: open_twin(self.settings, twin))

    def _execute(self, sched: Scheduled, occurrence: datetime, run_id: str,
                 cancel: threading.Event) -> OccurrenceStatus:
        spec = sched.job.spec.schedule
        if spec is not None and spec.jitter:
            delay = random.uniform(0, spec.jitter)  # noqa: S311 (spreading load, not secrecy)
            log.info("%s: occurrence %s waits %.3fs (jitter %gs)", sched.name,
                     occurrence.isoformat(), delay, spec.jitter)
            if cancel.wait(delay):
                return OccurrenceStatus.INTERRUPTED
        prep = prepare_job(sched.job, self.inventory, self.templates,
                           kept=self.settings.kept_inventories)
        options = self.run_options(sched.job, f"{sched.name}@{occurrence.isoformat()}",
                                   run_id, cancel, self._workflow_of_run.get(run_id),
                                   f"runner serve ({self.owner})")
        result = self.execute(prep, options)
        if cancel.is_set():
            return OccurrenceStatus.INTERRUPTED
        if result.rehearsal_failed:
            return OccurrenceStatus.REHEARSAL_FAILED
        if options.preview_window is not None:
            log.warning("%s: occurrence %s previewed as run %s: awaiting approval "
                        "(runner approve %s)", sched.name, occurrence.isoformat(), run_id,
                        run_id)
            self._supersede(sched.job, run_id)
            return OccurrenceStatus.AWAITING_APPROVAL
        return OccurrenceStatus.DONE if result.ok else OccurrenceStatus.FAILED

    def _execute_event(self, start: Start, cancel: threading.Event) -> OccurrenceStatus:
        job = start.job
        if start.vars:
            spec = job.spec.model_copy(update={"vars": {**job.spec.vars, **start.vars}})
            job = JobFile(spec, job.path, job.raw)
        prep = prepare_job(job, self.inventory, self.templates, only=start.hosts,
                           kept=self.settings.kept_inventories)
        options = self.run_options(job, start.label, start.run_id, cancel, start.workflow,
                                   f"runner serve ({self.owner}): {start.cause}"[:200])
        result = self.execute(prep, options)
        if cancel.is_set():
            return OccurrenceStatus.INTERRUPTED
        if result.rehearsal_failed:
            return OccurrenceStatus.REHEARSAL_FAILED
        if options.preview_window is not None:
            log.warning("%s: %s previewed as run %s: awaiting approval (runner approve %s)",
                        start.name, start.key, start.run_id, start.run_id)
            self._supersede(job, start.run_id)
            return OccurrenceStatus.AWAITING_APPROVAL
        return OccurrenceStatus.DONE if result.ok else OccurrenceStatus.FAILED

    def _supersede(self, job: JobFile, newer: str) -> None:
        """With `supersede: true`, reject the job's older previews still awaiting approval,
        saying which newer preview replaces them (one decision waits, not a pile)."""
        spec = job.spec.schedule
        if spec is None or not spec.supersede:
            return
        from runner.store.runlinks import waiting_previews
        from runner.vocab import RunStatus

        for older in waiting_previews(self.results, job.spec.name):
            if older == newer:
                continue
            if self.results.decide(older, RunStatus.REJECTED, {
                    "by": f"runner serve ({self.owner})", "at": now_iso(),
                    "reason": f"superseded by the newer preview {newer}"}, now_iso()):
                log.warning("%s: preview %s superseded by %s", job.spec.name, older, newer)

    # -- the process ----------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested.set()
        else:
            self.stopping.set()
        self.wake.set()

    def serve(self, pending: list[int] | None = None) -> int:
        """Fire until SIGTERM/SIGINT (SIGHUP reloads); `pending`: signals that came while
        the process started, obeyed now."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._signal)
        for early in pending or ():
            self._signal(early, None)
        log.info("runner serve: jobs from %s, store %s", self.jobs.path,
                 self.store.engine.url.render_as_string(hide_password=True))
        self.reload()
        for service in self.services:
            service.start()
        while not self.stopping.is_set():
            if self.reload_requested.is_set():
                log.info("reloading job files (SIGHUP)")
            if self.reload_requested.is_set() or self.jobs.changed():
                self.reload_requested.clear()
                self.reload()
            wait = self._tick_riding_out_store_loss()
            self.wake.wait(min(1.0, max(0.05, wait)))
            self.wake.clear()
        return self.shutdown()

    def _tick_riding_out_store_loss(self) -> float:
        """tick(), except that a store gone away (a database restart, the network) stops
        firing until it is back instead of stopping the server; running runs go on (their
        records wait for the database: see RecordWriter)."""
        try:
            wait = self.tick()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            if not self._store_lost:
                log.warning("schedule store %s unreachable (%s): firing nothing until it "
                            "is back; running runs go on",
                            self.store.engine.url.render_as_string(hide_password=True),
                            describe(exc))
            self._store_lost = True
            self.leader = False  # the lease may lapse meanwhile: taken anew when back
            return 1.0  # look again in a moment
        if self._store_lost:
            log.warning("schedule store reachable again")
            self._store_lost = False
        return wait

    def shutdown(self) -> int:
        for service in self.services:
            service.stop()  # no new events are taken in
        with self.lock:
            running = dict(self.running)
        if running:
            log.info("stopping: no new runs; waiting up to %gs for %d running", self.stop_grace,
                     len(running))
            _, late = wait_futures(list(running), timeout=self.stop_grace)
            for future in late:
                name, occurrence, run_id, cancel = running[future]
                log.warning("%s: occurrence %s (run %s) still running: interrupting it",
                            name, occurrence.isoformat(), run_id)
                cancel.set()
            wait_futures(list(late), timeout=60)
        self.pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.store.release(self.owner)
        except Exception as exc:  # it lapses by itself within the lease's ttl
            log.warning("scheduler lease not released (%s): it expires by itself",
                        describe(exc))
        log.info("stopped")
        return 0
