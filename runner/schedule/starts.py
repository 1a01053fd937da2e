"""What the scheduler's passes share: a run no schedule's time started (`Start`), the
scheduler as those passes see it (`Scheduling`), and the hosts freshness jobs target."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runner.errors import BlackoutActive
from runner.job.blackouts import Calendar
from runner.job.load import JobFile
from runner.job.prepare import prepare_job
from runner.schedule.jobsdir import JobsDir, Scheduled
from runner.schedule.policy import Slot
from runner.settings import Settings
from runner.store.events import Events
from runner.store.freshness import Freshness
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.store.workflows import Workflows
from runner.vocab import EventSource, OccurrenceStatus


@dataclass
class Start:
    """A run no schedule's time started: an event (webhook, syslog, workflow step,
    deferred occurrence, freshness backup) taken by the active scheduler."""

    job: JobFile
    key: str  # its claim in the events (syslog: the started event's own key)
    source: EventSource
    due: datetime
    run_id: str
    hosts: list[str] | None = None  # only these devices
    vars: dict[str, Any] | None = None  # job variables (a webhook's payload)
    by: str | None = None  # who: the user a syslog message names, a webhook's sender
    workflow: str | None = None

    @property
    def name(self) -> str:
        return self.job.spec.name

    @property
    def cause(self) -> str:
        """Why it runs, in a few words (its run's `started_by` says it)."""
        if self.source is EventSource.WEBHOOK:
            return "webhook" + (f" from {self.by}" if self.by else "")
        if self.source is EventSource.SYSLOG:
            return "syslog: config changed" + (f" by {self.by}" if self.by else "")
        if self.source is EventSource.WORKFLOW:
            return f"workflow {self.workflow}"
        if self.source is EventSource.DEFERRED:
            return f"occurrence {self.key.removeprefix('deferred:')} deferred past a blackout"
        return "freshness round"

    @property
    def label(self) -> str:
        """The run's occurrence: backup@webhook:72d4..., backup@syslog:r1:5f0..."""
        return f"{self.name}@{self.key}"[:100]


# (start, cancel event) -> done | failed | interrupted | skipped | awaiting_approval
EventRunFunction = Callable[[Start, threading.Event], OccurrenceStatus]


class Clocked(Protocol):
    def now(self) -> datetime: ...


class Scheduling(Protocol):
    """The scheduler as its passes (runner.schedule.flows) use it."""

    jobs: JobsDir
    store: ScheduleStore
    results: ResultsStore
    events: Events
    workflows: Workflows
    freshness: Freshness
    settings: Settings
    owner: str
    inventory: Path
    templates: Path
    lock: threading.Lock
    pool: ThreadPoolExecutor
    running: dict[Future[None], tuple[str, datetime, str, threading.Event]]
    wake: threading.Event
    event_run: EventRunFunction
    targets: TargetCache
    next_plan: dict[str, datetime]

    @property
    def clock(self) -> Clocked: ...

    def slot(self, name: str) -> Slot: ...

    def calendar(self, job: JobFile) -> Calendar: ...

    def changes(self, job: JobFile) -> bool: ...

    def _forget(self, future: Future[None]) -> None: ...

    def _release(self, sched: Scheduled, now: datetime) -> None: ...


class TargetCache:
    """The hosts each job targets, read again when the inventory or the job changes."""

    def __init__(self) -> None:
        self._cached: dict[str, tuple[object, list[str]]] = {}

    def hosts(self, job: JobFile, inventory: Path, templates: Path) -> list[str]:
        stamp = (id(job), inventory_stamp(inventory))
        found = self._cached.get(job.spec.name)
        if found is not None and found[0] == stamp:
            return found[1]
        hosts = prepare_job(job, inventory, templates).hosts
        self._cached[job.spec.name] = (stamp, hosts)
        return hosts


def inventory_stamp(path: Path) -> tuple[tuple[str, int], ...]:
    files = [path] if path.is_file() else sorted(path.glob("*.y*ml"))
    out = []
    for f in files:
        try:
            out.append((f.name, f.stat().st_mtime_ns))
        except OSError:
            continue
    return tuple(out)


def blackout_reason(exc: BlackoutActive) -> str:
    """A refusal as an occurrence records it: `blackout NAME: ...`."""
    return f"blackout {', '.join(exc.windows)}: {exc.message}"
