"""`runner serve`: fires every scheduled job's occurrences through the same run path as
`runner run`, exactly once per occurrence, with the misfire, coalesce and overlap policies."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from runner.errors import InputError, StoreError
from runner.job.load import JobFile, load_job
from runner.job.notify import NotifyTarget
from runner.job.run import RunOptions, execute, new_run_id, prepare_job
from runner.job.triggers import Trigger
from runner.records import now_iso
from runner.schedule.policy import Slot, due, is_occurrence
from runner.settings import Settings
from runner.store.database import lost_connection, retrying
from runner.store.migrate import describe
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore, server_id
from runner.vocab import Approval, EngineChoice, OccurrenceStatus

log = logging.getLogger("runner.serve")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# (scheduled job, occurrence, run id, cancel event) -> done | failed | interrupted
RunFunction = Callable[["Scheduled", datetime, str, threading.Event], OccurrenceStatus]


@dataclass
class Scheduled:
    job: JobFile
    trigger: Trigger
    key: str  # identity of the schedule: a changed schedule restarts its fire times
    slot: Slot

    @property
    def name(self) -> str:
        return self.job.spec.name


def scheduled_from(job: JobFile) -> Scheduled | None:
    schedule = job.spec.schedule
    if schedule is None:
        return None
    return Scheduled(job, schedule.trigger(), schedule.model_dump_json(), Slot(schedule.overlap))


@dataclass
class JobsDir:
    """Job files with a schedule; a file that turns invalid keeps its previous version."""

    path: Path
    jobs: dict[str, Scheduled] = field(default_factory=dict)
    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _names: dict[Path, str] = field(default_factory=dict)

    def snapshot(self) -> dict[Path, tuple[int, int]]:
        files = sorted([*self.path.glob("*.yml"), *self.path.glob("*.yaml")])
        out = {}
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out[f] = (st.st_mtime_ns, st.st_size)
        return out

    def changed(self) -> bool:
        return self.snapshot() != self._seen

    def reload(self) -> list[str]:
        """Apply added, edited and removed files; returns messages for the log."""
        messages = []
        current = self.snapshot()
        for path in [p for p in self._names if p not in current]:
            name = self._names.pop(path)
            self.jobs.pop(name, None)
            messages.append(f"removed {name} ({path.name} is gone)")
        for path, stamp in current.items():
            if self._seen.get(path) == stamp:
                continue
            try:
                job = load_job(path)
            except InputError as exc:
                kept = self._names.get(path)
                outcome = f"keeping the previous version of {kept}" if kept \
                    else "not scheduled"
                messages.append(f"invalid job file, {outcome}: {exc}")
                continue
            old = self._names.get(path)
            new = scheduled_from(job)
            if new is None:
                if old:
                    self.jobs.pop(old, None)
                    self._names.pop(path)
                    messages.append(f"unscheduled {old} ({path.name} has no schedule now)")
                continue
            clash = [p for p, n in self._names.items() if n == new.name and p != path]
            if clash:
                messages.append(f"{path}: job name {new.name!r} is already used by "
                                f"{clash[0]}; not scheduled")
                continue
            if old and old != new.name:
                self.jobs.pop(old, None)
            if old == new.name and new.key == self.jobs[old].key:
                new.slot = self.jobs[old].slot  # same schedule: keep its running state
            self.jobs[new.name] = new
            self._names[path] = new.name
            messages.append(f"{'updated' if old else 'scheduled'} {new.name}: "
                            f"{new.trigger.describe()}")
        self._seen = current
        return messages


class Scheduler:
    def __init__(self, jobs_dir: Path, store: ScheduleStore, results: ResultsStore,
                 inventory: Path, templates: Path, *, clock: Clock | None = None,
                 max_runs: int = 4, stop_grace: float = 60, lease_ttl: float = 15,
                 run: RunFunction | None = None, owner: str | None = None,
                 engine: EngineChoice = EngineChoice.AUTO, shard_size: int = 50,
                 settings: Settings | None = None,
                 notify: list[NotifyTarget] | None = None) -> None:
        self.engine = engine
        self.notify = notify or []  # for jobs that name no notification targets
        self.settings = settings or Settings()
        self.shard_size = shard_size
        self.jobs = JobsDir(jobs_dir)
        self.store = store
        self.results = results
        self.inventory = inventory
        self.templates = templates
        self.clock = clock or Clock()
        self.stop_grace = stop_grace
        self.lease_ttl = lease_ttl
        self.owner = owner or server_id()
        self.run_function = run or self._execute
        self.pool = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="run")
        self.running: dict[Future[None], tuple[str, datetime, str, threading.Event]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.leader = False
        self._standby_logged: str | None = None
        self._store_lost = False  # the store is unreachable (said once per outage)

    # -- one pass of the loop -------------------------------------------------------------

    def reload(self) -> None:
        for message in self.jobs.reload():
            (log.error if "invalid" in message or "already used" in message
             else log.info)(message)
        known = set(self.jobs.jobs)
        log.debug("scheduled jobs: %s", ", ".join(sorted(known)) or "none")

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
            if other:
                self._interrupted_by(other, now)
        for expired in self.results.expire_overdue(now_iso()):
            log.warning("run %s: its approval window passed: expired", expired)
        waits = []
        for sched in list(self.jobs.jobs.values()):
            waits.append(self._fire_due(sched, now))
        pending = [w for w in waits if w is not None]
        return max(0.0, min([*pending, self.lease_ttl / 3]))

    def _interrupted_by(self, other: str, now: datetime) -> None:
        for occ in self.store.occurrences():
            if occ["status"] == OccurrenceStatus.RUNNING and occ["server"] == other:
                self.results.interrupt(occ["run_id"], now.isoformat())
        count = self.store.interrupt_running(other, now)
        if count:
            log.warning("%d occurrence(s) left running by %s recorded as interrupted",
                        count, other)

    def _fire_due(self, sched: Scheduled, now: datetime) -> float | None:
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
            self._offer(sched, occurrence, now)
        if decision.next_fire != next_fire:
            self.store.set_next_fire(sched.name, sched.key, decision.next_fire)
        if decision.next_fire is None:
            return None
        return (decision.next_fire - now).total_seconds()

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

    def _start(self, sched: Scheduled, occurrence: datetime, now: datetime) -> None:
        run_id = new_run_id()
        if not self.store.claim(sched.name, occurrence, OccurrenceStatus.RUNNING, self.owner, now,
                                run_id=run_id):
            log.info("%s: occurrence %s was already claimed; not running it again",
                     sched.name, occurrence.isoformat())
            self._release(sched, now)
            return
        cancel = threading.Event()
        future = self.pool.submit(self._run_and_release, sched, occurrence, run_id, cancel)
        with self.lock:
            self.running[future] = (sched.name, occurrence, run_id, cancel)
        future.add_done_callback(self._forget)
        log.info("%s: fired occurrence %s as run %s", sched.name, occurrence.isoformat(),
                 run_id)

    def _forget(self, future: Future[None]) -> None:
        with self.lock:
            self.running.pop(future, None)

    def _release(self, sched: Scheduled, now: datetime) -> None:
        with self.lock:
            queued = sched.slot.finished()
        if queued is not None and not self.stopping.is_set():
            self._start(sched, queued, now)

    def _run_and_release(self, sched: Scheduled, occurrence: datetime, run_id: str,
                         cancel: threading.Event) -> None:
        status, reason = OccurrenceStatus.FAILED, None
        try:
            status = self.run_function(sched, occurrence, run_id, cancel)
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

    def _execute(self, sched: Scheduled, occurrence: datetime, run_id: str,
                 cancel: threading.Event) -> OccurrenceStatus:
        spec = sched.job.spec.schedule
        if spec is not None and spec.jitter:
            delay = random.uniform(0, spec.jitter)  # noqa: S311 (spreading load, not secrecy)
            log.info("%s: occurrence %s waits %.3fs (jitter %gs)", sched.name,
                     occurrence.isoformat(), delay, spec.jitter)
            if cancel.wait(delay):
                return OccurrenceStatus.INTERRUPTED
        prep = prepare_job(sched.job, self.inventory, self.templates)
        preview = spec is not None and spec.approval is Approval.REQUIRED
        result = execute(prep, self.results, RunOptions(
            settings=self.settings, occurrence=f"{sched.name}@{occurrence.isoformat()}",
            cancel=cancel, run_id=run_id, engine=self.engine, shard_size=self.shard_size,
            preview_window=spec.approval_seconds if preview and spec else None,
            notify=self.notify, started_by=f"runner serve ({self.owner})"))
        if cancel.is_set():
            return OccurrenceStatus.INTERRUPTED
        if preview:
            log.warning("%s: occurrence %s previewed as run %s: awaiting approval "
                        "(runner approve %s)", sched.name, occurrence.isoformat(), run_id,
                        run_id)
            return OccurrenceStatus.AWAITING_APPROVAL
        return OccurrenceStatus.DONE if result.ok else OccurrenceStatus.FAILED

    # -- the process ----------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested.set()
        else:
            self.stopping.set()

    def serve(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._signal)
        log.info("runner serve: jobs from %s, store %s", self.jobs.path,
                 self.store.engine.url.render_as_string(hide_password=True))
        self.reload()
        while not self.stopping.is_set():
            if self.reload_requested.is_set():
                log.info("reloading job files (SIGHUP)")
            if self.reload_requested.is_set() or self.jobs.changed():
                self.reload_requested.clear()
                self.reload()
            wait = self._tick_riding_out_store_loss()
            self.stopping.wait(min(1.0, max(0.05, wait)))
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
