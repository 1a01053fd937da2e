"""Rehearsing a run on a twin first (`runner run --rehearse NAME`, a schedule's `rehearse:`):
the job runs on the twin's copies of the same devices, with the same rollout batches,
checks and rollback; production is contacted only when every rehearsed device ended ok or
changed. The twin itself is the lab's (runner.lab.twin.rehearsal implements `Twin`): this
layer knows only what a rehearsal needs of it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner.errors import InputError, Interrupted, RehearsalFailed, RunnerError
from runner.job.prepare import Prepared, prepare_job, session_secrets
from runner.job.run import (
    RunOptions,
    check_approval,
    check_blackouts,
    execute,
    new_run_id,
    notify_finished,
)
from runner.records import HELD_BY_POLICY, DeviceResult, RunResult, now_iso
from runner.vocab import SUCCESS, DeviceStatus, EngineChoice, RunStatus, StepKind

if TYPE_CHECKING:
    from runner.store.results import ResultsStore

log = logging.getLogger(__name__)
DIFF_LIMIT = 20_000  # characters of a device's diff kept with the production run


class Twin(Protocol):
    """A twin that is up, as a rehearsal uses it."""

    @property
    def name(self) -> str: ...

    @property
    def inventory(self) -> Path:
        """Its inventory: production's host names with the twin's addresses."""
        ...

    @property
    def records(self) -> str:
        """A database URL for the rehearsals' own full records (kept with the twin)."""
        ...

    def reset(self) -> str:
        """Reload the newest backups (`twin sync`); what that did, in a few words."""
        ...

    def hold(self, what: str, cancel: threading.Event | None,
             on_wait: Callable[[str], None]) -> AbstractContextManager[bool]:
        """The twin for this rehearsal alone (its run and its reset), waiting while another
        holds it (`on_wait` told who); False when `cancel` is set before it is free."""
        ...


# Opens twin NAME; InputError (exit 2) when there is no such twin or it is not up.
TwinOpener = Callable[[str], Twin]


@dataclass
class DeviceRehearsal:
    """What happened to one device on the twin."""

    host: str
    status: DeviceStatus
    changed: bool = False
    error_class: str | None = None
    error: str | None = None
    failed_check: str | None = None  # the step that failed (a check, a config, a rollback)
    diff: str | None = None  # the config the twin was given, as a diff

    @property
    def passed(self) -> bool:
        return self.status in SUCCESS or self.error_class == HELD_BY_POLICY

    @classmethod
    def of(cls, device: DeviceResult) -> DeviceRehearsal:
        failed = next((s for s in device.steps if s.failed), None)
        diffs = [f"# {s.name}\n{s.diff.rstrip()}" for s in device.steps
                 if s.kind is StepKind.CONFIG and s.diff]
        diff = "\n".join(diffs) or None
        if diff is not None and len(diff) > DIFF_LIMIT:
            diff = diff[:DIFF_LIMIT] + "\n... (cut: the whole record is in the twin's run)"
        return cls(device.host, device.status, device.changed, device.error_class,
                   device.error, failed.name if failed else None, diff)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": str(self.status), "changed": self.changed,
                "error_class": self.error_class, "error": self.error,
                "failed_check": self.failed_check, "diff": self.diff}


@dataclass
class Rehearsal:
    """A rehearsal's outcome, kept with the production run (`runs.rehearsal`)."""

    twin: str
    run_id: str  # the run on the twin (its full records: `records`)
    records: str
    started: str
    finished: str | None = None
    devices: list[DeviceRehearsal] = field(default_factory=list)
    status: str = ""  # the twin run's own status (ok, failed, interrupted)
    reset: str | None = None  # what resetting the twin did; "kept" with --keep

    @property
    def passed(self) -> bool:
        return self.status == RunStatus.OK and bool(self.devices) and \
            all(d.passed for d in self.devices)

    @property
    def failures(self) -> list[DeviceRehearsal]:
        return [d for d in self.devices if not d.passed]

    def reason(self) -> str:
        """Why production was not contacted, in one line."""
        bad = self.failures
        if not bad:
            return f"the rehearsal on twin {self.twin} ended {self.status or 'unfinished'}"
        first = bad[0]
        what = f"{first.host} {first.status}" + (f" ({first.error_class}" + (
            f" in {first.failed_check!r}" if first.failed_check else "") + ")"
            if first.error_class else "")
        more = f" and {len(bad) - 1} more device(s)" if len(bad) > 1 else ""
        return f"the rehearsal on twin {self.twin} failed: {what}{more}"

    def to_json(self) -> dict[str, Any]:
        summary = dict.fromkeys((str(s) for s in DeviceStatus), 0)
        for d in self.devices:
            summary[d.status] += 1
        return {"twin": self.twin, "run_id": self.run_id, "records": self.records,
                "started": self.started, "finished": self.finished, "status": self.status,
                "passed": self.passed, "summary": summary, "reset": self.reset,
                "devices": [d.to_json() for d in self.devices]}


def twin_prepared(prep: Prepared, twin: Twin) -> Prepared:
    """The job on the twin: the same hosts in the same order (so the same rollout batches),
    from the twin's inventory. A production host the twin lacks is an input error."""
    from runner.inventory.loading import load_inventory

    hosts = set(load_inventory(twin.inventory).hosts)
    missing = [h for h in prep.hosts if h not in hosts]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more"
                                           if len(missing) > 10 else "")
        raise InputError(f"twin {twin.name} has no copy of {len(missing)} host(s) this run "
                         f"targets: {shown} (no backup of them when the twin was built? "
                         f"`runner twin sync {twin.name}` reloads the newest backups): "
                         "nothing was run", field="--rehearse")
    on_twin = prepare_job(prep.job, twin.inventory, prep.templates_dir, only=prep.hosts)
    on_twin.hosts = list(prep.hosts)
    return on_twin


def rehearse(prep: Prepared, store: ResultsStore, options: RunOptions, twin: Twin, *,
             keep: bool = False,
             on_rehearsed: Callable[[Rehearsal], None] | None = None,
             on_wait: Callable[[str], None] | None = None,
             on_begin: Callable[[], None] | None = None) -> RunResult:
    """Run the job on `twin`, then on production only if the rehearsal passed; else record
    the production run as rehearsal_failed (every device skipped, never contacted). The
    twin is reset afterwards unless `keep`. Every input (production's and the twin's) is
    checked before the twin is touched; the twin is held from its run to its reset, so
    two rehearsals never share it (the second waits, told through `on_wait`; `on_begin`
    is told once it holds the twin)."""
    check_approval(prep, options)
    check_blackouts(prep, replace(options))  # refused now, before the twin is touched
    # workers read production's secrets; else one production's run could not read is
    # refused now, not after the twin
    session_secrets(prep, options.settings.secrets_dirs,
                    read=options.engine is not EngineChoice.CELERY)
    twin_prepared(prep, twin)  # a host the twin lacks: refused now, not after a wait
    twin_options = RunOptions(
        settings=options.settings, engine=_twin_engine(options.engine),
        processes=options.processes, cancel=options.cancel, started_by=options.started_by,
        calendar=options.calendar, now=options.now,
        blackout_override=dict(options.blackout_override) if options.blackout_override
        else None, occurrence=options.occurrence, on_twin=True,
        on_device_done=list(options.on_device_done),
        # the twin is no production: a job that needs approval is rehearsed without one
        override={"by": options.started_by or "runner", "at": now_iso(),
                  "reason": f"rehearsal on twin {twin.name}"}
        if prep.job.spec.needs_approval else None)
    what = f"a rehearsal of job {prep.job.spec.name}" + (
        f" (run {options.run_id})" if options.run_id else "")
    with ExitStack() as held:
        try:
            ours = held.enter_context(twin.hold(what, options.cancel,
                                                on_wait or log.warning))
        except KeyboardInterrupt:  # Ctrl-C while waiting: recorded, then as any run's
            _cancelled(prep, store, options, twin.name)
            raise
        if not ours:
            return _cancelled(prep, store, options, twin.name)
        # read again once held: a reset while this one waited may have moved the twin's
        # simulated devices to another port (its inventory says where they are now)
        on_twin = twin_prepared(prep, twin)
        if on_begin is not None:
            on_begin()
        return _rehearse(prep, store, options, twin, on_twin, twin_options, keep,
                         on_rehearsed)


def _cancelled(prep: Prepared, store: ResultsStore, options: RunOptions,
               twin: str) -> RunResult:
    """The run cancelled while it waited for the twin: interrupted, nothing contacted."""
    why = f"cancelled while waiting for twin {twin}"
    return refuse(prep, store, options, _not_run(twin, why), why,
                  status=RunStatus.INTERRUPTED)


def _not_run(twin: str, why: str) -> dict[str, Any]:
    """The rehearsal evidence of a run whose rehearsal never ran (`why`)."""
    return {"twin": twin, "run_id": None, "records": None, "started": now_iso(),
            "finished": now_iso(), "status": "not run", "passed": False, "summary": {},
            "reset": None, "error": why, "devices": []}


def _rehearse(prep: Prepared, store: ResultsStore, options: RunOptions, twin: Twin,
              on_twin: Prepared, twin_options: RunOptions, keep: bool,
              on_rehearsed: Callable[[Rehearsal], None] | None) -> RunResult:
    """rehearse() with the twin held."""
    from runner.store.queries import run_records
    from runner.store.results import ResultsStore

    records = ResultsStore(twin.records, retry_s=options.settings.db_retry)
    rehearsal = Rehearsal(twin.name, "", twin.records, now_iso())
    run: RunResult | None = None
    try:
        try:
            twin_run = execute(on_twin, records, twin_options)
            # whole records: the ones execute() kept were slimmed of their command steps
            rehearsal.devices = [DeviceRehearsal.of(d)
                                 for d in run_records(records, twin_run.run_id)]
        finally:
            records.engine.dispose()
        rehearsal.run_id, rehearsal.finished = twin_run.run_id, now_iso()
        rehearsal.status = str(RunStatus.INTERRUPTED if options.cancel is not None and
                               options.cancel.is_set() else
                               RunStatus.OK if twin_run.ok else RunStatus.FAILED)
        if on_rehearsed is not None:
            on_rehearsed(rehearsal)
        if rehearsal.passed:
            run = execute(prep, store, replace(options, rehearsal=rehearsal.to_json()))
        else:
            run = refuse(prep, store, options, rehearsal.to_json(), rehearsal.reason())
    finally:
        if not keep:
            rehearsal.reset = _reset(twin)
        else:
            rehearsal.reset = "kept"
        if run is not None:
            run.rehearsal = rehearsal.to_json()
            try:
                store.set_rehearsal(run.run_id, run.rehearsal)
            except RunnerError:
                log.exception("run %s: the twin's reset could not be recorded", run.run_id)
    assert run is not None  # execute() and _refused() return one or raise
    return run


def _twin_engine(engine: EngineChoice) -> EngineChoice:
    """The twin is on this machine: Celery workers elsewhere may not reach it."""
    return EngineChoice.AUTO if engine is EngineChoice.CELERY else engine


def _reset(twin: Twin) -> str:
    try:
        return twin.reset()
    except (RunnerError, OSError) as exc:  # the run's outcome stands; the twin is stale
        log.error("twin %s could not be reset: %s", twin.name, exc)
        return f"NOT reset: {exc} (`runner twin sync {twin.name}` tries again)"


def unattended(prep: Prepared, store: ResultsStore, options: RunOptions, name: str,
               opener: TwinOpener, *, on_wait: Callable[[str], None] | None = None,
               on_begin: Callable[[], None] | None = None) -> RunResult:
    """rehearse() on twin `name` for a run nobody watches (`runner serve`, the web): a twin
    that cannot be opened (unknown, not up, a host it lacks) fails the run as
    rehearsal_failed, recorded with why, production not contacted."""
    try:
        twin = opener(name)
        return rehearse(prep, store, options, twin, on_wait=on_wait, on_begin=on_begin)
    except InputError as exc:
        if exc.field != "--rehearse":
            raise  # production's own input: refused as any run's would be
        why = f"not rehearsed: {exc.message}"
        return refuse(prep, store, options, _not_run(name, exc.message), why)


def refuse(prep: Prepared, store: ResultsStore, options: RunOptions,
           rehearsal: dict[str, Any], why: str,
           status: RunStatus = RunStatus.REHEARSAL_FAILED) -> RunResult:
    """The production run that never contacted production: one record per device
    (skipped, RehearsalFailed), status rehearsal_failed, notified as a failure; or, when
    it was cancelled before its rehearsal began, interrupted (Interrupted)."""
    error = Interrupted if status is RunStatus.INTERRUPTED else RehearsalFailed
    run = RunResult(run_id=options.run_id or new_run_id(), job=prep.job.spec.name,
                    started=now_iso(), finished=None, devices=[], dry_run=options.dry_run,
                    job_file=str(prep.job.path), occurrence=options.occurrence,
                    rerun_of=options.rerun_of, remediates=options.remediates,
                    started_by=options.started_by, override=options.override,
                    workflow=options.workflow, blackout_override=options.blackout_override,
                    rehearsal=rehearsal)
    store.start_run(run, prep.hosts)
    run.devices = [DeviceResult.of_error(h, error(f"not contacted: {why}"),
                                         status=DeviceStatus.SKIPPED) for h in prep.hosts]
    store.record_devices(run.run_id, run.devices, {h: i for i, h in enumerate(prep.hosts)})
    run.finished = now_iso()
    store.finish_run(run, status=status, error=why)
    for callback in options.on_device_done:
        for device in run.devices:
            callback(device)
    notify_finished(prep, store, run, status, options.notify)
    return run
