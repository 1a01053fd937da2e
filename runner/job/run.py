"""Running a job: check every input before any device is touched, run the engine, store each
device's record as it finishes, commit backups; used by the CLI, scheduler and workers."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.dispatch import CELERY_ENGINE
from runner.errors import (
    ApprovalRequired,
    BackupError,
    BlackedOut,
    InputError,
    RunnerError,
    StoreError,
)
from runner.execution.control.runwatch import RunWatch
from runner.execution.engines import LOCAL_ENGINES
from runner.execution.executor import ExecutorRegistry, Work, choose_engine
from runner.execution.rollout import run_devices
from runner.inventory.secretref import (
    SecretResolver,
)
from runner.job.backups import BackupRepo, BackupSink
from runner.job.blackouts import Active, Calendar, Holds, load_calendar
from runner.job.notify import NotifyTarget, notify, secrets_of, targets_for
from runner.job.prepare import Prepared, session_secrets
from runner.job.spec import BackupStep
from runner.records import ApprovedChange, DeviceResult, RunResult, now_iso
from runner.redact import Redactor
from runner.settings import Settings
from runner.store.migrate import describe
from runner.store.unsaved import not_stored
from runner.vocab import (
    ComplianceState,
    DeviceStatus,
    Engine,
    EngineChoice,
    RunStatus,
    StepKind,
)

# The store's SQLAlchemy is imported when a run opens it (checking a job is
# runner.job.prepare's, which `runner validate` uses without this module).
if TYPE_CHECKING:
    from runner.store.compliance import Change as ComplianceChange
    from runner.store.results import RecordWriter, ResultsStore

log = logging.getLogger("runner.job.run")


@dataclass
class RunOptions:
    settings: Settings = field(default_factory=Settings)
    dry_run: bool = False
    occurrence: str | None = None
    cancel: threading.Event | None = None
    run_id: str | None = None
    engine: EngineChoice = EngineChoice.AUTO
    shard_size: int = 50  # hosts per shard with the celery engine
    rerun_of: str | None = None  # the run whose failed devices this one runs again
    # A preview that waits for approval this long (seconds): a dry run whose status ends
    # awaiting_approval, with the job as previewed kept for `runner approve`.
    preview_window: float | None = None
    remediates: str | None = None  # the compliance run whose drift this run remediates
    approves: str | None = None  # carrying out this approved preview ...
    approved: dict[str, ApprovedChange] | None = None  # ... what was approved ...
    decision: dict[str, Any] | None = None  # ... and who approved it, stored as it starts
    started_by: str | None = None  # user@host, a web token's name, the scheduler
    # A real run of a job that needs approval, without one: {"by", "at", "reason"}
    override: dict[str, Any] | None = None
    # Blackout windows: the calendar to obey (None: the job file's directory's), the
    # moment they are asked about (None: now), and an override {"by", "at", "reason"}
    # (the windows it overrode are added as the run starts).
    calendar: Calendar | None = None
    now: datetime | None = None
    blackout_override: dict[str, Any] | None = None
    workflow: str | None = None  # the workflow run this run is a step of
    processes: int | None = None  # engine processes; None: one per core for big runs
    # Told each record as it is known; read its summary (host, status, changed, error):
    # once stored, a record keeps only that and what the run's end needs (slim()).
    on_device_done: list[Callable[[DeviceResult], None]] = field(default_factory=list)
    notify: list[NotifyTarget] = field(default_factory=list)  # for jobs that name none
    # Rehearsal (runner.job.rehearse): the production run carries its rehearsal's evidence;
    # the run on the twin itself (`on_twin`) notifies nobody and commits no backup (its
    # configs are the twin's, not production's).
    rehearsal: dict[str, Any] | None = None
    on_twin: bool = False


def rerun_targets(store: ResultsStore, run_id: str | None, job: str,
                  statuses: list[DeviceStatus] | None = None,
                  field: str = "--rerun") -> tuple[str, list[str]]:
    """For a rerun: (the full id of run `run_id`, its devices to run again, in its order):
    those that did not end ok or changed, or that ended with one of `statuses`. An empty or
    unknown run id, or a run of another job, is an error naming `field`: never "every
    target"."""
    if run_id is None or not run_id.strip():
        raise InputError("an empty run id names no run to rerun (expected the id, or a "
                         "unique prefix of it, of an earlier run of this job)", field=field)
    from runner.store.queries import run_head, run_hosts

    try:
        earlier = run_head(store, run_id.strip())
    except InputError as exc:
        raise type(exc)(exc.message, field=field) from None
    if earlier["job"] != job:
        raise InputError(f"run {earlier['run_id']} was of job {earlier['job']!r}, not "
                         f"{job!r}", field=field)
    wanted = set(statuses) if statuses else {s for s in DeviceStatus if not s.success}
    return earlier["run_id"], run_hosts(store, earlier["run_id"], wanted)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def check_approval(prep: Prepared, options: RunOptions) -> None:
    """The last guard before any device is touched, whoever starts the run: a real run of a
    job that needs approval carries out an approved preview or a recorded override, or is
    refused (ApprovalRequired)."""
    spec = prep.job.spec
    if options.dry_run or options.preview_window is not None or not spec.needs_approval:
        return
    if options.override is not None and options.override.get("by"):
        return
    if options.approves is not None and options.approved is not None \
            and options.decision is not None:
        return
    raise ApprovalRequired(
        f"job {spec.name!r} changes config only through an approved preview (its schedule "
        "says approval: required): run it without --dry-run to make a preview, then "
        "`runner approve RUN_ID`; or override with `runner run --no-approval` (recorded)",
        path=prep.job.path, field="schedule.approval")


def blackout_holds(prep: Prepared, options: RunOptions) -> Holds:
    """What the blackout windows say about this run now: the job's directory's calendar
    (or options.calendar) and the job's own windows. A window naming a site, group or host
    the inventory lacks is an error (JobError) before any device is touched."""
    spec = prep.job.spec
    calendar = options.calendar if options.calendar is not None else \
        load_calendar(prep.job.path.parent)
    calendar = calendar.with_job(spec.blackouts, prep.job.path, prep.job.raw)
    if not calendar:
        return Holds()
    changes = spec.changes_config and not options.dry_run and options.preview_window is None
    moment = options.now or datetime.now(UTC)
    hosts = prep.inventory.hosts
    calendar.check_scopes(spec.name, changes, hosts, prep.inventory.nornir.groups)
    return Holds(calendar.fleet_hold(moment, spec.name, changes),
                 calendar.device_holds(moment, spec.name, changes, hosts, prep.hosts))


def check_blackouts(prep: Prepared, options: RunOptions) -> dict[str, Active]:
    """The guard beside the approval guard, whoever starts the run: a run inside a
    fleet-wide blackout window (or with every device in one) is refused (BlackoutActive,
    exit 2) unless it carries an override, which then records the windows it overrode.
    The devices a window holds while the run goes on elsewhere: they sit it out."""
    holds = blackout_holds(prep, options)
    names = list(dict.fromkeys([*(a.name for a in holds.fleet),
                                *(a.name for a in holds.devices.values())]))
    if options.blackout_override is not None:
        options.blackout_override = {**options.blackout_override, "windows": names} \
            if names else None  # overriding nothing is not recorded
        return {}
    refusal = holds.refusal(prep.job.spec.name, prep.hosts, "--override-blackout")
    if refusal is not None:
        refusal.path = prep.job.path
        raise refusal
    return holds.devices


def blackout_override(reason: str | None, by: str,
                      field: str = "--override-blackout") -> dict[str, str] | None:
    """--override-blackout REASON as the run records it (the windows are added as the run
    starts); an empty reason is refused: the record says why."""
    if reason is None:
        return None
    if not reason.strip():
        raise InputError("give the reason for overriding the blackout (it is recorded)",
                         field=field)
    return {"by": by, "at": now_iso(), "reason": reason.strip()[:1000]}


def check_override(prep: Prepared, options: RunOptions,
                   field: str = "--override-blackout") -> None:
    """An override when no window holds the run: an error, not a silent record."""
    if options.blackout_override is None:
        return
    holds = blackout_holds(prep, options)
    if not holds.fleet and not holds.devices:
        raise InputError(f"no blackout window holds job {prep.job.spec.name!r} now: "
                         f"{field} overrides nothing", field=field)


def _new_run(prep: Prepared, options: RunOptions, dry_run: bool) -> RunResult:
    """The run's record as it starts: what it is, why and by whom."""
    return RunResult(run_id=options.run_id or new_run_id(), job=prep.job.spec.name,
                     started=now_iso(), finished=None, devices=[], dry_run=dry_run,
                     job_file=str(prep.job.path), occurrence=options.occurrence,
                     rerun_of=options.rerun_of, approves=options.approves,
                     remediates=options.remediates,
                     started_by=options.started_by, override=options.override,
                     workflow=options.workflow, blackout_override=options.blackout_override,
                     rehearsal=options.rehearsal)


def execute(prep: Prepared, store: ResultsStore, options: RunOptions) -> RunResult:
    from runner.store.results import RecordWriter

    spec = prep.job.spec
    check_approval(prep, options)
    held = check_blackouts(prep, options)
    dry_run = options.dry_run or options.preview_window is not None
    run = _new_run(prep, options, dry_run)
    engine, processes = choose_engine(options.engine, options.processes, len(prep.hosts))
    # Sessions opened here read secrets here; Celery workers read their own.
    resolver = session_secrets(prep, options.settings.secrets_dirs,
                               read=engine is not Engine.CELERY)
    run.engine = engine
    store.start_run(run, prep.hosts, options.decision)
    # `runner cancel` and `runner web` reach a run of this process through the store
    cancel = options.cancel if options.cancel is not None else threading.Event()
    writer = RecordWriter(store, run.run_id, prep.hosts)
    watch = RunWatch(store, run.run_id, cancel, paused=lambda: writer.error is not None)
    finished: list[DeviceResult] = []
    # a run on a twin backs up the twin's configs: nothing of them goes near production's
    # backup repository (the records keep them)
    sink = None if options.on_twin else backup_sink(prep, dry_run)

    def done(device: DeviceResult) -> None:
        if sink is not None:
            sink.take(device)
        finished.append(device)
        writer.put(device)
        for callback in options.on_device_done:
            callback(device)

    work = Work(spec, prep.inventory, prep.templates_dir, run.run_id, options.settings,
                dry_run=dry_run, processes=processes, shard_size=options.shard_size,
                approved=options.approved, override=options.override is not None,
                job_dir=prep.job.path.parent)
    try:
        with watch:
            run.devices = _devices(work, prep.hosts, held, engine, done, cancel,
                                   writer.started)
    except BaseException as exc:  # Ctrl-C, SIGTERM, or a bug: the run still ends, recorded
        if sink is not None:
            sink.close()  # nothing of an interrupted run is committed
        run.devices = finished  # the summary counts what did finish
        _end_interrupted(prep, store, run, writer, exc, options)
        raise
    unsaved = writer.close()
    try:
        commit_backups(prep, run, sink)
    except Exception as exc:  # the devices' records stand; the run failed as a whole
        error = exc if isinstance(exc, RunnerError) else BackupError(
            f"the backups could not be committed: {type(exc).__name__}: {exc}")
        run.finished = now_iso()
        _store_end(store, run, RunStatus.FAILED, str(error), prep.hosts, unsaved,
                   writer.error, options)
        _notifier(options)(prep, store, run, RunStatus.FAILED, options.notify, resolver)
        raise error from exc
    run.finished = now_iso()
    interrupted = cancel.is_set()
    if options.preview_window is not None and not interrupted:
        _store_end(store, run, RunStatus.AWAITING_APPROVAL, None, prep.hosts, unsaved,
                   writer.error, options)
        _await_approval(prep, store, run, options.preview_window)
        _notifier(options)(prep, store, run, RunStatus.AWAITING_APPROVAL, options.notify,
                           resolver, record_compliance(prep, store, run))
        return run
    status = RunStatus.INTERRUPTED if interrupted else None
    _store_end(store, run, status, None, prep.hosts, unsaved, writer.error, options)
    _notifier(options)(prep, store, run, status, options.notify, resolver,
                       record_compliance(prep, store, run))
    return run


def _devices(work: Work, hosts: list[str], held: dict[str, Active], engine: Engine,
             done: Callable[[DeviceResult], None], cancel: threading.Event,
             started: Callable[[str], None] | None = None) -> list[DeviceResult]:
    """Every host's record, in inventory order: the devices a blackout window holds are
    recorded first (they are known now), the others run by the engine."""
    records = {}
    for host, active in held.items():
        records[host] = DeviceResult.of_error(host, BlackedOut(f"blackout {active.text()}"))
        done(records[host])
    ran = run_devices(work, [h for h in hosts if h not in held], engine, done, cancel,
                      registry=engines(), on_start=started)
    records.update((d.host, d) for d in ran)
    return [records[h] for h in hosts if h in records]


def _await_approval(prep: Prepared, store: ResultsStore, run: RunResult,
                    window_s: float) -> None:
    """The preview waits for a decision, with what carrying it out needs."""
    store.await_approval(run.run_id, deadline(window_s),
                         prep.job.spec.model_dump(mode="json"),
                         {"job_file": str(prep.job.path),
                          "inventory": str(prep.inventory.source),
                          "templates": str(prep.templates_dir),
                          **({"remediates": run.remediates} if run.remediates else {})})


def record_compliance(prep: Prepared, store: ResultsStore,
                      run: RunResult) -> list[ComplianceChange]:
    """Keep what the run's compliance step found (latest state, history); the devices
    newly out of compliance. A store problem here is logged: the run's records stand."""
    if prep.job.spec.compliance is None:
        return []
    from runner.store.compliance import record_run

    try:
        return record_run(store, run)
    except Exception:
        log.exception("run %s: its compliance findings could not be stored", run.run_id)
        return []


def _end_interrupted(prep: Prepared, store: ResultsStore, run: RunResult,
                     writer: RecordWriter, exc: BaseException, options: RunOptions) -> None:
    """Record the end of a run that stopped on `exc` (what finished is stored)."""
    run.finished = now_iso()
    why = None if isinstance(exc, KeyboardInterrupt) else \
        f"runner stopped on an internal error: {type(exc).__name__}: {exc}"[:500]
    unsaved = writer.close(give_up=True)  # no waiting for a database that is away
    problem = _last_try(store, run, prep.hosts, unsaved, RunStatus.INTERRUPTED, why,
                        writer.error) if unsaved else \
        _finish(store, run, RunStatus.INTERRUPTED, why)
    if problem:
        log.error("%s", not_stored(run, RunStatus.INTERRUPTED, why, prep.hosts,
                                   unsaved, options.settings.unsaved_dir, problem))


def _finish(store: ResultsStore, run: RunResult, status: RunStatus | None,
            error: str | None) -> str | None:
    """Record the run's end; why that failed (the database stayed away), or None."""
    try:
        store.finish_run(run, status=status, error=error)
    except StoreError as exc:
        return str(exc)
    return None


def _last_try(store: ResultsStore, run: RunResult, hosts: list[str], unsaved: set[str],
              status: RunStatus | None, error: str | None,
              records_error: str | None) -> str | None:
    """One more attempt, without waiting, at the records the writer gave up on and the
    run's end (the database may be back by now); why it failed, or None."""
    positions = {h: i for i, h in enumerate(hosts)}
    try:
        store.record_devices(run.run_id, [d for d in run.devices if d.host in unsaved],
                             positions)
        store.finish_run(run, status=status, error=error, retry=False)
    except Exception as exc:
        return f"{records_error}; a last attempt as the run ended failed too: {describe(exc)}"
    log.warning("run %s: the %d device record(s) held back were stored after all",
                run.run_id, len(unsaved))
    return None


def _store_end(store: ResultsStore, run: RunResult, status: RunStatus | None,
               error: str | None, hosts: list[str], unsaved: set[str],
               records_error: str | None, options: RunOptions) -> None:
    """Record the run's end. When its records (or its end) could not be stored, the whole
    run is kept in a file and RecordsNotStored raised: a loud failure, nothing dropped."""
    if unsaved:
        problem = _last_try(store, run, hosts, unsaved, status, error, records_error)
    else:
        problem = _finish(store, run, status, error)
    if problem:
        final = status or (RunStatus.OK if run.ok else RunStatus.FAILED)
        if final is RunStatus.AWAITING_APPROVAL:  # a preview nobody can approve: failed
            final = RunStatus.FAILED
        raise not_stored(run, final, error, hosts, unsaved, options.settings.unsaved_dir,
                         problem)


def deadline(window_s: float) -> str:
    """now + window_s, in the form runs' times are stored in (comparable as text)."""
    moment = datetime.now(UTC) + timedelta(seconds=window_s)
    return moment.isoformat(timespec="milliseconds")


def _silent(*_args: Any) -> None:
    """A rehearsal's run on a twin notifies nobody: the production run that follows does."""


def _notifier(options: RunOptions) -> Callable[..., None]:
    return _silent if options.on_twin else notify_finished


def notify_finished(prep: Prepared, store: ResultsStore, run: RunResult,
                    status: RunStatus | None, defaults: list[NotifyTarget],
                    resolver: SecretResolver | None = None,
                    compliance: list[ComplianceChange] | None = None) -> None:
    """Send the run's notifications and record their outcomes; never fails the run. The
    records are masked already; this masks again, with the secrets read on this machine
    (`resolver`: none when Celery workers read them)."""
    spec = prep.job.spec
    targets = targets_for(spec.notify, "notify" in spec.model_fields_set, defaults)
    if not targets:
        return
    backup = next((s for s in spec.steps if isinstance(s, BackupStep)), None)
    try:
        secret_vars = [] if resolver is None else [
            v for v in map(resolver.known, (s.ref() for s in spec.secret_vars.values())) if v]
        notify_run(store, run, status, targets,
                   secrets_of(prep.inventory, prep.hosts, resolver, secret_vars),
                   backup_dir=Path(backup.backup.dir) if backup else None,
                   drift=drift_of(compliance or []))
    except Exception:  # the run is done and stored: a notification problem stays one
        log.exception("run %s: notifications failed", run.run_id)


def backup_sink(prep: Prepared, dry_run: bool) -> BackupSink | None:
    """Where a backup job's configs go as its devices finish; None for other jobs."""
    step = next((s for s in prep.job.spec.steps if isinstance(s, BackupStep)), None)
    if step is None:
        return None
    return BackupSink(BackupRepo(Path(step.backup.dir)), dry_run=dry_run)


def commit_backups(prep: Prepared, run: RunResult, sink: BackupSink | None) -> None:
    """One commit for the run, of the devices whose config changed since the last backup
    (none without a sink: no backup step, or a run on a twin)."""
    if sink is None:
        return
    try:
        if run.dry_run:
            changed = sink.changed_hosts()
        else:
            run.backup_commit, changed = sink.commit(f"runner {run.job} run {run.run_id}")
    finally:
        sink.close()
    for device in run.devices:
        if device.host not in changed:
            continue
        for s in device.steps:
            if s.kind is StepKind.BACKUP:
                s.changed = True
        if device.status == DeviceStatus.OK:
            # known only now: a device whose backed-up config changed is `changed`
            device.status, device.changed = DeviceStatus.CHANGED, True


def drift_of(changes: list[ComplianceChange]) -> dict[str, list[str]]:
    """Per device, the features it is newly out of compliance with (a first check that
    finds drift is news too; drift seen at the last check is not)."""
    out: dict[str, list[str]] = {}
    for change in changes:
        if change.status is ComplianceState.NON_COMPLIANT:
            out.setdefault(change.host, []).append(change.feature)
    return out


def notify_run(store: ResultsStore, run: RunResult, status: RunStatus | None,
               targets: Iterable[NotifyTarget], secrets: Redactor, *,
               backup_dir: Path | None = None,
               drift: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Notify about `run` in `status` (a finished run, or one awaiting approval) and add the
    outcomes to the run's record in the results store. `drift`: devices newly out of
    compliance, and with which features."""
    outcomes = notify(run, status, targets, secrets, backup_dir=backup_dir, drift=drift)
    if outcomes:
        store.add_notifications(run.run_id, outcomes)
    return outcomes


@cache
def engines() -> ExecutorRegistry:
    """Every engine a run can use: this machine's and the Celery dispatcher's."""
    return ExecutorRegistry((*LOCAL_ENGINES, CELERY_ENGINE))
