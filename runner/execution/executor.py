"""The Executor protocol every engine implements, what it is given (Work), and the registry
that maps an engine name to its executor (imported only when chosen)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from runner.errors import NotRun
from runner.execution.control.keys import ledger_id
from runner.inventory.secretref import SecretResolver, roots
from runner.job.spec import JobSpec
from runner.records import ApprovedChange, DeviceResult, RestorePlan
from runner.registry import Registry
from runner.settings import Settings
from runner.vocab import Engine, EngineChoice

if TYPE_CHECKING:  # Nornir loads with an inventory, not with the engine registry
    from runner.inventory.fleet import FleetInventory

# Below this many devices per process, starting one costs more than a second core gains.
MIN_DEVICES_PER_PROCESS = 64


class CancelFlag(Protocol):
    """threading.Event, or multiprocessing's Event across engine processes."""

    def is_set(self) -> bool: ...


class Progress(Protocol):
    """What an engine that works devices itself reports (local: it loses none)."""

    def started(self, host: str) -> None:
        """The device is being worked on: a session may be open, config may be sent."""

    def finished(self, record: DeviceResult) -> None:
        """The device's record; a second record for the same device is ignored."""


class RecordSink(Progress, Protocol):
    """Where an executor reports what happens to each device: the run's Tally
    (runner.execution.tally), the one keeper of "first record wins, one per device"."""

    def lost(self, hosts: Iterable[str], error: NotRun, *, progress_known: bool = True) -> None:
        """No record will come for these devices, for the reason `error` gives; the
        record says whether each was in progress (unless progress_known is False: e.g.
        Redis lost what it knew)."""

    def missing(self, hosts: Iterable[str]) -> list[str]:
        """Those of `hosts` without a record yet (an engine that gathers records from
        elsewhere asks, rather than keeping its own account)."""


class Executor(Protocol):
    """Works a job's devices. run() is called once per rollout batch and returns when
    every device of the batch was reported finished or lost, or soon after `cancel` is
    set (devices it did not report are then recorded as interrupted by the rollout). It
    may raise KeyboardInterrupt after winding down what it started."""

    engine: Engine

    def run(self, hosts: list[str], sink: RecordSink, cancel: CancelFlag) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class Work:
    """A job's run, as every executor needs it; pickled to engine processes as is."""

    spec: JobSpec
    inventory: FleetInventory
    templates_dir: Path
    run_id: str
    settings: Settings
    dry_run: bool = False
    processes: int | None = None  # engine processes; None: one per usable core
    shard_size: int = 50  # hosts per Celery shard
    # Set for the pass that rolls back devices a stopped rollout had changed: per host,
    # how; the devices are put back instead of running the steps.
    restore: dict[str, RestorePlan] | None = None
    # Set when carrying out an approved preview: per host, what was approved.
    approved: dict[str, ApprovedChange] | None = None
    # A change that needs approval run without one, by a recorded override (workers
    # refuse such a change otherwise: runner.dispatch.celery_app).
    override: bool = False
    # The job file's directory, where its secret_vars' `{file: ...}` may point (with
    # RUNNER_SECRETS_DIR's); None on a Celery worker, which trusts only its own settings.
    job_dir: Path | None = None

    def secret_resolver(self) -> SecretResolver:
        """Secret references of this work, read on this machine from where they may be."""
        dirs = self.settings.secrets_dirs
        return SecretResolver(roots(dirs, self.inventory.directory), roots(dirs, self.job_dir))

    @property
    def ledger_id(self) -> str:
        """The run ledger's name (Redis): a restore pass keeps its own."""
        return ledger_id(self.run_id, self.restore is not None)


ExecutorFactory = Callable[[Work], Executor]


@dataclass(frozen=True)
class ExecutorEntry:
    engine: Engine
    # Loads the executor class when a run uses the engine (Celery loads only for celery).
    load: Callable[[], ExecutorFactory]


class ExecutorRegistry(Registry[ExecutorEntry]):
    """Engines by name."""

    def __init__(self, entries: Iterable[ExecutorEntry] = ()) -> None:
        super().__init__("engine", lambda entry: entry.engine)
        for entry in entries:
            self.register(entry)

    def create(self, engine: Engine, work: Work) -> Executor:
        return self.get(engine).load()(work)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def process_count(requested: int | None, hosts: int) -> int:
    """requested: None/0 = automatic (one per usable core when the run is large enough)."""
    if requested:
        return max(1, min(requested, hosts))
    import multiprocessing  # here: a run of this process alone never loads it

    if multiprocessing.current_process().daemon:
        return 1  # e.g. inside a Celery prefork child: it may not have children
    return max(1, min(usable_cores(), hosts // MIN_DEVICES_PER_PROCESS))


def choose_engine(choice: EngineChoice, processes: int | None,
                  hosts: int) -> tuple[Engine, int | None]:
    """The engine for a run of `hosts` devices, and its engine-process count. `auto`:
    engine processes when the run is large enough for more than one (or more than one is
    asked for), else this process."""
    if choice is EngineChoice.AUTO:
        count = process_count(processes, hosts)
        return (Engine.PROCESSES, count) if count > 1 else (Engine.LOCAL, None)
    engine = Engine(choice.value)
    return engine, (process_count(processes, hosts) if engine is Engine.PROCESSES
                    and processes else processes)
