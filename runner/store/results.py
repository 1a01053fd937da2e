"""The results store: every run and every device record, in SQLite or any SQLAlchemy URL."""

from __future__ import annotations

import enum
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
    null,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from runner.errors import (
    ApprovalTaken,
    Conflict,
    InputError,
    NotFound,
    RunnerError,
    StoreError,
)
from runner.execution.control.liveness import Running, process_identity, reap
from runner.records import RECORDS_THREAD, DeviceResult, RunResult, now_iso
from runner.settings import DEFAULT_DB_RETRY_S
from runner.store.database import open_engine, retrying
from runner.store.migrate import describe, masked
from runner.vocab import DeviceStatus, ImportOutcome, RunStatus, StepKind
from runner.vocab import Engine as EngineName

log = logging.getLogger(__name__)


metadata = MetaData()
runs = Table(
    "runs", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("job", String(200), nullable=False, index=True),
    Column("job_file", Text),
    Column("started", String(40), nullable=False, index=True),
    Column("finished", String(40)),
    Column("status", String(20), nullable=False, index=True),  # a RunStatus
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("engine", String(20), nullable=False, default="local"),
    Column("occurrence", String(100), index=True),
    Column("summary", JSON),
    Column("backup_commit", String(64)),
    Column("rerun_of", String(32), index=True),  # the run whose devices this one reran
    # while it goes: {host: started} of the devices working now (0008; the live run page)
    Column("working", JSON),
    # Approval: a preview awaiting approval keeps the job as previewed and where its inputs
    # were, until its deadline; the run that carries it out names it (`approves`).
    Column("approval_deadline", String(40)),
    Column("job_spec", JSON),
    Column("inputs", JSON),
    Column("approves", String(32), index=True),
    Column("decision", JSON),  # who approved, rejected (and why) or expired it, and when
    Column("notifications", JSON),  # outcome per notification target (runner.job.notify)
    # Which process runs it, and when it last said so: a run whose process died (SIGKILL,
    # a power cut) is found and finished as interrupted by the next runner on this store.
    Column("owner", String(200)),
    Column("heartbeat", String(40)),
    Column("hosts", JSON),  # the run's targets: records of the devices it never recorded
    Column("error", Text),  # what failed the run as a whole (a backup commit, ...)
    # Another process (`runner cancel`, `runner web`) asked the run's own process to stop it.
    Column("cancel_requested", String(40)),
    Column("cancel_requested_by", String(100)),
    # Who started it (user@host, a web token's name, the scheduler), and the override when
    # it ran a change that needed approval without one: {"by", "at", "reason"} (0004).
    Column("started_by", String(200)),
    Column("override", JSON),
    # the compliance run whose drift this run remediates (`runner remediate`, 0005)
    Column("remediates", String(32), index=True),
    # The workflow run it belongs to, and a blackout override: {"by", "at", "reason",
    # "windows"} (0006).
    Column("workflow", String(32), index=True),
    Column("blackout_override", JSON),
    # Rehearsed on a twin first: the twin, its run, passed or not, per device what happened
    # there, and whether the twin was reset (0010, issue 25)
    Column("rehearsal", JSON),
    # A finished run's records per device status, {status: n} (0012, issue 28): counted
    # once as it ends, cleared by any later write of its records (runner.store.queries
    # .status_counts counts a run without them)
    Column("counts", JSON),
)
devices = Table(
    "devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("status", String(20), nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("duration_s", Float),
    Column("error", Text),
    Column("error_class", String(100)),
    Column("attempts", Integer),
    Column("driver", String(20)),
    Column("worker", String(200)),
    Column("started", String(40)),
    Column("finished", String(40)),
    Column("steps", JSON),
    Column("position", Integer),  # the device's place in the run's targets (listing order)
    UniqueConstraint("run_id", "host", name="one_record_per_device"),
)
# The listings of `runner history` and `runner web` (runner/store/queries.py): a page of one job's
# or one status's runs newest first; a run's devices in target order, or of one status.
Index("ix_runs_job_started", runs.c.job, runs.c.started)
Index("ix_runs_status_started", runs.c.status, runs.c.started)
Index("ix_devices_run_position", devices.c.run_id, devices.c.position)
# A run's devices of one status in target order (and its counts per status, 0009).
Index("ix_devices_run_status_position", devices.c.run_id, devices.c.status,
      devices.c.position, devices.c.id)
# A device's records across runs, newest first (runner device, /devices/NAME; 0007).
Index("ix_devices_host_id", devices.c.host, devices.c.id)
# A run's devices failed first, then skipped, then those that ended well, each in target
# order (the run page, GET /api/runs/ID/devices): a page of a run of 100,000 devices read
# along this index, never sorted (issue 28). The query orders by exactly this expression.
FAILED_FIRST_SQL = (
    "CASE WHEN status IN (" + ", ".join(f"'{s}'" for s in DeviceStatus if s.success)
    + f") THEN 2 WHEN status = '{DeviceStatus.SKIPPED}' THEN 1 ELSE 0 END")
Index("ix_devices_run_failed_first", devices.c.run_id, text(f"({FAILED_FIRST_SQL})"),
      devices.c.position, devices.c.id)
# Each device's newest record (the highest id: what `last_statuses` would find) and its
# status, kept as records are written (0011, issue 28): device search by last status reads
# the devices of one status along (status, host) instead of each device's newest record
# (10,000 look-ups for one site of 100,000 devices; every record for the whole fleet).
device_last = Table(
    "device_last", metadata,
    Column("host", String(255), primary_key=True),
    Column("record_id", Integer, nullable=False),
    Column("status", String(20), nullable=False),
)
Index("ix_device_last_status_host", device_last.c.status, device_last.c.host)


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # record_devices leaves the run's in-progress list as it is
Working = dict[str, str] | None | _Keep


def restate_last(conn: Connection, run_id: str, statuses: dict[str, str]) -> None:
    """Records' statuses changed (a backup commit changed the devices' files): so do their
    hosts' newest, where they are these records (one statement, executed for many)."""
    if not statuses:
        return
    record = select(devices.c.id).where(
        devices.c.run_id == bindparam("b_run"),
        devices.c.host == bindparam("b_host")).scalar_subquery()
    conn.execute(update(device_last).where(device_last.c.host == bindparam("b_host"),
                                           device_last.c.record_id == record)
                 .values(status=bindparam("b_status", type_=device_last.c.status.type)),
                 [{"b_run": run_id, "b_host": host, "b_status": status}
                  for host, status in statuses.items()])


def insert_records(conn: Connection, run_id: str, records: list[DeviceResult],
                   positions: dict[str, int], working: Working = KEEP) -> None:
    """Insert records of run `run_id` (`positions`: their hosts' places in its targets;
    `working`: its devices in progress, stored in the same UPDATE of its row); each is its
    host's newest (the highest id; a newer one already there, written by a run beside
    this, stays). The new rows are found again as the ids past the table's highest before
    the insert (a range of the primary key): finding them by (run_id, host IN ...) made
    PostgreSQL walk the run's records per batch, and RETURNING cost SQLite's executemany
    its speed."""
    forget_counts(conn, {run_id}, {} if working is KEEP else {"working": working})
    if conn.dialect.name not in _UPSERTS:
        _insert_devices(conn, run_id, records, positions)
        rebuild_last(conn, [d.host for d in records])
        return
    before = conn.execute(select(func.max(devices.c.id))).scalar() or 0
    _insert_devices(conn, run_id, records, positions)
    # ids past `before` are this insert's, and perhaps another run's newer ones (true
    # newest records too): one per host, in host order so two runs lock in one order
    newest = select(func.max(devices.c.id)).where(devices.c.id > before).group_by(
        devices.c.host)
    conn.execute(_upsert_last(conn, select(devices.c.host, devices.c.id, devices.c.status)
                              .where(devices.c.id.in_(newest.scalar_subquery()))
                              .order_by(devices.c.host)))


def forget_counts(conn: Connection, run_ids: set[str],
                  values: dict[str, Any] | None = None) -> None:
    """Records of these runs are written: their kept counts are out of date (and `values`
    set in the same UPDATE: SQLite rewrites the whole row, its targets too, per UPDATE).
    The update takes the run's row lock, so a finish counting at the same time (count_run,
    under the same lock) is either seen through or cleared after."""
    for run_id in sorted(run_ids):
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(
            counts=null(), **(values or {})))


def count_run(conn: Connection, run_id: str) -> None:
    """Keep a run's counts per status (it ended); the caller updated its row first in
    this transaction (holding its lock: see forget_counts)."""
    counted = {str(status): int(n) for status, n in conn.execute(
        select(devices.c.status, func.count()).where(devices.c.run_id == run_id)
        .group_by(devices.c.status))}
    conn.execute(update(runs).where(runs.c.run_id == run_id).values(counts=counted))


def rebuild_last(conn: Connection, hosts: list[str] | None = None) -> None:
    """These hosts' (None: every host's) newest records found again from the records
    (after records were deleted; the migration that made the table)."""
    chunks = [None] if hosts is None else [hosts[at:at + 500]
                                          for at in range(0, len(hosts), 500)]
    for chunk in chunks:
        newest = select(func.max(devices.c.id))
        if chunk is not None:
            newest = newest.where(devices.c.host.in_(chunk))
            conn.execute(delete(device_last).where(device_last.c.host.in_(chunk)))
        else:
            conn.execute(delete(device_last))
        found = select(devices.c.host, devices.c.id, devices.c.status).where(
            devices.c.id.in_(newest.group_by(devices.c.host).scalar_subquery()))
        conn.execute(_upsert_last(conn, found))


# Past this many records from one run, PostgreSQL's statistics are refreshed as it ends
# (ResultsStore.refresh_statistics).
REFRESH_PAST = 10_000
_UPSERTS = ("postgresql", "sqlite")  # INSERT ... ON CONFLICT; other databases rebuild


def _upsert_last(conn: Connection, found: Any) -> Any:
    """INSERT into device_last `found` (a SELECT of host, id, status, one row per host),
    each replacing its host's row unless that row is of a newer record."""
    columns = ["host", "record_id", "status"]
    if conn.dialect.name not in _UPSERTS:  # rebuild_last deleted the hosts' rows first
        return insert(device_last).from_select(columns, found)
    # the dialect's own INSERT, importing only its dialect (PostgreSQL's: ~20 ms of CPU)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        made: Any = pg_insert(device_last)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        made = sqlite_insert(device_last)
    made = made.from_select(columns, found)
    # `<=`: SQLite may give a re-written record the id of the one it replaced
    return made.on_conflict_do_update(
        index_elements=[device_last.c.host],
        set_={"record_id": made.excluded.record_id, "status": made.excluded.status},
        where=device_last.c.record_id <= made.excluded.record_id)


# A record's columns, in the order of _record_values; `steps` (JSON) last.
_RECORD_COLUMNS = ("run_id", "host", "status", "changed", "duration_s", "error",
                   "error_class", "attempts", "driver", "worker", "started", "finished",
                   "position", "steps")
# The drivers given a record's values straight (one executemany of tuples, steps' JSON
# text as json.dumps makes it, as SQLAlchemy's JSON type would): SQLAlchemy's parameter
# processing per row cost more CPU than SQLite's insert itself (issue 28). Others go
# through insert(devices).
_DIRECT = {driver: "INSERT INTO devices (" + ", ".join(_RECORD_COLUMNS) + ") VALUES ("  # noqa: S608
           + ", ".join([mark] * len(_RECORD_COLUMNS)) + ")"  # constants, no input
           for driver, mark in (("pysqlite", "?"), ("psycopg", "%s"))}


def _record_values(run_id: str, d: DeviceResult, position: int | None,
                   steps: Callable[[Any], Any]) -> tuple[Any, ...]:
    """A record's row in `devices` (as to_json gives its fields), `steps` made of its
    steps' JSON value."""
    return (run_id, d.host, str(d.status), d.changed, d.duration_s, d.error, d.error_class,
            d.attempts, d.driver, d.worker, d.started, d.finished, position,
            steps(d.steps_json()))


def _insert_devices(conn: Connection, run_id: str, records: list[DeviceResult],
                    positions: dict[str, int]) -> None:
    sql = _DIRECT.get(conn.dialect.driver)
    if sql is None:
        conn.execute(insert(devices), [
            dict(zip(_RECORD_COLUMNS, _record_values(run_id, d, positions.get(d.host),
                                                     lambda steps: steps), strict=True))
            for d in records])
        return
    dumps = json.dumps
    conn.exec_driver_sql(sql, [_record_values(run_id, d, positions.get(d.host), dumps)
                               for d in records])


class ResultsStore:
    def __init__(self, url: str, retry_s: float = DEFAULT_DB_RETRY_S) -> None:
        """Opens the database at `url`, its schema brought to head (runner.store.migrate), and
        finishes runs whose process is gone (run control's reap: the store only stores).
        `retry_s`: how long a run's writes wait for a database that went away
        (RUNNER_DB_RETRY)."""
        self.url = url
        self.retry_s = retry_s
        self.engine: Engine = open_engine(url)
        try:
            reaped = reap(self)
        except Exception as exc:
            raise StoreError(f"results database {self._safe_url()}: {describe(exc)}") \
                from None
        for run_id in reaped:
            log.warning("run %s was left running by a runner process that is gone: recorded "
                        "as interrupted", run_id)

    def _safe_url(self) -> str:
        return masked(self.engine)

    def _retrying(self, what: str, action: Callable[[], None]) -> None:
        retrying(self.engine, what, action, self.retry_s)

    def start_run(self, run: RunResult, hosts: list[str] | None = None,
                  decision: dict[str, Any] | None = None) -> None:
        """Record a run as running. `decision`: the run carries out preview run.approves,
        approved so: the preview's decision and this run's row are one transaction, taken
        only while the preview still awaits approval within its window (ApprovalTaken
        otherwise, and nothing is recorded)."""
        def insert_run() -> None:
            with self.engine.begin() as conn:
                if conn.execute(select(runs.c.run_id).where(
                        runs.c.run_id == run.run_id)).first() is not None:
                    return  # stored by an attempt whose answer the lost connection ate
                if decision is not None:
                    self._take_approval(conn, run, decision)
                conn.execute(insert(runs).values(
                    owner=process_identity(), heartbeat=now_iso(), hosts=hosts,
                    run_id=run.run_id, job=run.job, job_file=run.job_file,
                    started=run.started, status=RunStatus.RUNNING, dry_run=run.dry_run,
                    engine=run.engine, occurrence=run.occurrence, summary=run.summary,
                    rerun_of=run.rerun_of, approves=run.approves,
                    started_by=run.started_by, override=run.override,
                    remediates=run.remediates, workflow=run.workflow,
                    blackout_override=run.blackout_override, rehearsal=run.rehearsal))
        self._retrying(f"starting run {run.run_id}", insert_run)

    def set_rehearsal(self, run_id: str, rehearsal: dict[str, Any]) -> None:
        """The run's rehearsal as it ends (the twin reset or kept, after the run)."""
        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(
                    rehearsal=rehearsal))
        self._retrying(f"recording the rehearsal of run {run_id}", write)

    @staticmethod
    def _take_approval(conn: Connection, run: RunResult, decision: dict[str, Any]) -> None:
        """Move preview run.approves to approved, naming the run that carries it out."""
        assert run.approves is not None
        now = now_iso()
        taken = conn.execute(update(runs).where(
            runs.c.run_id == run.approves, runs.c.status == RunStatus.AWAITING_APPROVAL,
            runs.c.approval_deadline > now).values(
            status=RunStatus.APPROVED, decision={**decision, "run": run.run_id}))
        if taken.rowcount != 1:
            raise ApprovalTaken(f"run {run.approves} was decided by someone else just now "
                                "(or its approval window ended): nothing was sent")

    def record_devices(self, run_id: str, batch: list[DeviceResult],
                       positions: dict[str, int] | None = None,
                       working: Working = KEEP) -> None:
        """Finished devices in one transaction (a device's newer record wins); RecordWriter
        calls it moments after each device finishes, so a crash loses no finished device.
        `positions`: each host's place in the run's targets, the order runs are shown in;
        `working`: the run's devices in progress now (as set_working), stored with them."""
        latest = {d.host: d for d in batch}
        places = positions or {}
        rows = list(latest.values())
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Nearly every batch is of devices not recorded before: inserted as they are.
                # PostgreSQL plans the DELETE below, on statistics older than the run's rows,
                # as a walk of every record of the run so far (quadratic over a run of
                # 100,000 devices); it runs only when a host of the batch was recorded.
                try:
                    with conn.begin_nested():
                        insert_records(conn, run_id, rows, places, working)
                    return
                except IntegrityError as exc:
                    if "one_record_per_device" not in str(exc.orig):
                        raise
            conn.execute(delete(devices).where(devices.c.run_id == run_id,
                                               devices.c.host.in_(list(latest))))
            insert_records(conn, run_id, rows, places, working)

    def set_working(self, run_id: str, working: dict[str, str] | None) -> None:
        """The devices of a running run that are working now, and since when."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(working=working))

    def beat(self, run_id: str) -> None:
        """The run's process is alive (run control's RunWatch calls this while it goes)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == run_id,
                                                runs.c.status == RunStatus.RUNNING)
                             .values(heartbeat=now_iso()))
        except Exception as exc:
            raise StoreError(describe(exc)) from None

    def request_cancel(self, run_id: str, by: str) -> bool:
        """Ask the process running `run_id` to stop it (its RunWatch looks every
        REQUEST_POLL_S): False when the run is not running."""
        with self.engine.begin() as conn:
            done = conn.execute(update(runs).where(
                runs.c.run_id == run_id, runs.c.status == RunStatus.RUNNING).values(
                cancel_requested=now_iso(), cancel_requested_by=by[:100]))
            return bool(done.rowcount)

    def cancel_requested(self, run_id: str) -> str | None:
        """Who asked to cancel the run, if anyone did."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(runs.c.cancel_requested,
                                          runs.c.cancel_requested_by)
                                   .where(runs.c.run_id == run_id)).first()
        except Exception as exc:
            raise StoreError(describe(exc)) from None
        return None if row is None or row[0] is None else str(row[1] or "someone")

    def running(self) -> list[Running]:
        """Every run recorded as running, with its owner, heartbeat and targets."""
        with self.engine.connect() as conn:
            return [Running(r.run_id, r.owner, r.heartbeat, r.hosts) for r in conn.execute(
                select(runs.c.run_id, runs.c.owner, runs.c.heartbeat, runs.c.hosts).where(
                    runs.c.status == RunStatus.RUNNING))]

    def finish_run(self, run: RunResult, status: RunStatus | None = None,
                   error: str | None = None, *, retry: bool = True) -> None:
        if not retry:
            self._finish_run(run, status, error)
        else:
            self._retrying(f"finishing run {run.run_id}",
                           lambda: self._finish_run(run, status, error))
        self.refresh_statistics(len(run.devices))

    def refresh_statistics(self, records: int) -> None:
        """After a run wrote `records` device records: on PostgreSQL, past REFRESH_PAST,
        VACUUM (ANALYZE) the tables they went to, now rather than when autovacuum comes
        round (up to a minute later, or never if it is off). Until then the planner's
        statistics predate the run (it guesses a run has a few hundred devices and reads a
        page of 100,000 by scanning them all and sorting) and the visibility map does not
        cover its rows (counting them along an index visits every row). Best effort: the
        run is stored either way; a table another VACUUM holds is skipped, not waited
        for. It costs about a second at 100,000 records (bench/store_scale.py)."""
        if self.engine.dialect.name != "postgresql" or records < REFRESH_PAST:
            return
        try:
            with self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"VACUUM (ANALYZE, SKIP_LOCKED) {devices.name}, "
                                  f"{device_last.name}"))
        except Exception as exc:
            log.warning("planner statistics of the results database not refreshed after "
                        "%d records (autovacuum will): %s", records, describe(exc))

    def _finish_run(self, run: RunResult, status: RunStatus | None,
                    error: str | None) -> None:
        with self.engine.begin() as conn:
            # Stored as each device finished; only backup steps learn more afterwards:
            # whether the commit changed the device's file (stored unchanged), and so the
            # device's status. Only the changed devices' rows are written, and only their
            # backup steps in them (the record in memory may be slimmed).
            backed_up = {d.host: d for d in run.devices if any(
                s.kind is StepKind.BACKUP and s.changed for s in d.steps)}
            hosts = list(backed_up)
            # one UPDATE executed for many rows per chunk: a statement built and run per
            # device cost ~0.3 ms of CPU each (100,000 on a first backup of 100,000)
            rewrite = update(devices).where(
                devices.c.run_id == bindparam("b_run"),
                devices.c.host == bindparam("b_host")).values(
                steps=bindparam("b_steps", type_=devices.c.steps.type),
                status=bindparam("b_status", type_=devices.c.status.type),
                changed=bindparam("b_changed", type_=devices.c.changed.type))
            for at in range(0, len(hosts), 500):
                rows = []
                for host, steps in conn.execute(select(devices.c.host, devices.c.steps).where(
                        devices.c.run_id == run.run_id,
                        devices.c.host.in_(hosts[at:at + 500]))).all():
                    device = backed_up[host]
                    for step in steps or []:
                        if step.get("kind") == StepKind.BACKUP:
                            step["changed"] = True
                    rows.append({"b_run": run.run_id, "b_host": host, "b_steps": steps,
                                 "b_status": device.status, "b_changed": device.changed})
                if rows:
                    conn.execute(rewrite, rows)
                    restate_last(conn, run.run_id,
                                 {r["b_host"]: r["b_status"] for r in rows})
            conn.execute(update(runs).where(runs.c.run_id == run.run_id).values(
                finished=run.finished, summary=run.summary,
                status=status or (RunStatus.OK if run.ok else RunStatus.FAILED),
                backup_commit=run.backup_commit, error=error))
            count_run(conn, run.run_id)

    def import_run(self, run: RunResult, status: RunStatus, error: str | None,
                   hosts: list[str], *, replace: bool = False) -> ImportOutcome:
        """Store a run kept in a file because the database was away (runner.store.unsaved): its
        row (made, or brought up to date: the next runner start may have finished it as
        interrupted meanwhile) and every device record, replacing placeholders.

        A run the database already holds is completed only when it is that run (same job,
        same start) left unfinished (running, or interrupted by the start that found it);
        stored as the file has it already: nothing changes. Any other stored run is never
        overwritten (Conflict) unless `replace`."""
        with self.engine.begin() as conn:
            row = conn.execute(select(runs.c.job, runs.c.started, runs.c.status,
                                      runs.c.finished).where(
                runs.c.run_id == run.run_id)).first()
            outcome = ImportOutcome.STORED
            if row is not None:
                same = row.job == run.job and row.started == run.started
                if same and row.status == status and row.finished == run.finished:
                    return ImportOutcome.UNCHANGED
                unfinished = row.status in (RunStatus.RUNNING, RunStatus.INTERRUPTED)
                if not (same and unfinished) and not replace:
                    raise Conflict(
                        f"run {run.run_id} is already stored (job {row.job!r}, started "
                        f"{row.started}, {row.status}) and is not the unfinished run this "
                        "file completes: not overwritten (--replace overwrites it)")
                outcome = ImportOutcome.COMPLETED if same and unfinished else \
                    ImportOutcome.REPLACED
                if outcome is ImportOutcome.REPLACED:
                    gone = [str(r[0]) for r in conn.execute(select(devices.c.host).where(
                        devices.c.run_id == run.run_id))]
                    conn.execute(delete(devices).where(devices.c.run_id == run.run_id))
                    rebuild_last(conn, gone)
                    conn.execute(update(runs).where(runs.c.run_id == run.run_id).values(
                        job=run.job, job_file=run.job_file, started=run.started,
                        dry_run=run.dry_run, engine=run.engine, occurrence=run.occurrence,
                        rerun_of=run.rerun_of, approves=run.approves, hosts=hosts))
            else:
                conn.execute(insert(runs).values(
                    run_id=run.run_id, job=run.job, job_file=run.job_file,
                    started=run.started, status=status, dry_run=run.dry_run,
                    engine=run.engine, occurrence=run.occurrence, rerun_of=run.rerun_of,
                    approves=run.approves, hosts=hosts, started_by=run.started_by,
                    override=run.override, remediates=run.remediates,
                    workflow=run.workflow, blackout_override=run.blackout_override))
        positions = {h: i for i, h in enumerate(hosts)}
        whole = [d for d in run.devices if not d.stored]
        if whole:
            self.record_devices(run.run_id, whole, positions)
        # A record the run had stored before the database went away was kept in the file
        # only as its summary: the full record stored then stays; the summary only fills
        # in for a database that never had it.
        self._record_missing(run.run_id, [d for d in run.devices if d.stored], positions)
        self._finish_run(run, status, error)
        self.refresh_statistics(len(run.devices))
        return outcome

    def _record_missing(self, run_id: str, batch: list[DeviceResult],
                        positions: dict[str, int]) -> None:
        if not batch:
            return
        with self.engine.begin() as conn:
            have = {r[0] for r in conn.execute(select(devices.c.host).where(
                devices.c.run_id == run_id))}
            rows = [d for d in batch if d.host not in have]
            if rows:
                insert_records(conn, run_id, rows, positions)

    # -- approval -------------------------------------------------------------------------

    def await_approval(self, run_id: str, deadline: str, job_spec: dict[str, Any],
                       inputs: dict[str, str]) -> None:
        """A finished preview waits for an operator until `deadline`."""
        def store() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(
                    status=RunStatus.AWAITING_APPROVAL, approval_deadline=deadline,
                    job_spec=job_spec, inputs=inputs))
        self._retrying(f"storing preview {run_id}", store)

    def decide(self, run_id: str, status: RunStatus, decision: dict[str, Any],
               now: str) -> bool:
        """Move a preview out of awaiting_approval, once: False when it was not awaiting
        approval any more (decided, or expired, by anyone) or its deadline passed."""
        with self.engine.begin() as conn:
            query = update(runs).where(runs.c.run_id == run_id,
                                       runs.c.status == RunStatus.AWAITING_APPROVAL)
            if status is not RunStatus.EXPIRED:
                query = query.where(runs.c.approval_deadline > now)
            return bool(conn.execute(query.values(status=status, decision=decision))
                        .rowcount == 1)

    def expire_overdue(self, now: str) -> list[str]:
        """Previews whose approval window has passed become expired; their ids."""
        with self.engine.connect() as conn:
            due = [str(r[0]) for r in conn.execute(select(runs.c.run_id).where(
                runs.c.status == RunStatus.AWAITING_APPROVAL,
                runs.c.approval_deadline <= now))]
        return [r for r in due if self.decide(r, RunStatus.EXPIRED,
                                              {"by": "runner", "at": now,
                                               "reason": "approval window passed"}, now)]

    def add_notifications(self, run_id: str, outcomes: list[dict[str, Any]]) -> None:
        """Outcomes of notifications about a run, after those already recorded."""
        with self.engine.begin() as conn:
            before = conn.execute(select(runs.c.notifications).where(
                runs.c.run_id == run_id).with_for_update()).scalar()
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(
                notifications=[*(before or []), *outcomes]))

    def interrupt(self, run_id: str | None, finished: str, *,
                  summary: dict[str, Any] | None = None, error: str | None = None) -> bool:
        """A run its process never finished (killed): recorded as interrupted, with its
        summary and why when known. False when it was not running (any more)."""
        if not run_id:
            return False
        extra = {k: v for k, v in (("summary", summary), ("error", error)) if v is not None}
        with self.engine.begin() as conn:
            done = conn.execute(update(runs).where(
                runs.c.run_id == run_id, runs.c.status == RunStatus.RUNNING).values(
                status=RunStatus.INTERRUPTED, finished=finished, **extra))
            if done.rowcount:
                count_run(conn, run_id)
        return bool(done.rowcount)

    def last_run(self, job: str) -> dict[str, Any] | None:
        rows = self.list_runs(1, job)
        return rows[0] if rows else None

    def list_runs(self, limit: int = 20, job: str | None = None) -> list[dict[str, Any]]:
        query = select(runs).order_by(runs.c.started.desc()).limit(limit)
        if job:
            query = query.where(runs.c.job == job)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def resolve(self, run_id: str) -> str:
        """A full run id from an unambiguous prefix (an empty one names no run: it is an
        error, never "every run"; `%` and `_` are plain characters, not wildcards)."""
        if not run_id or not run_id.strip():
            raise InputError("an empty run id names no run (expected a run id or a unique "
                             "prefix of one, as `runner history` lists them)",
                             field="run id")
        with self.engine.connect() as conn:
            found = [r[0] for r in conn.execute(
                select(runs.c.run_id).where(runs.c.run_id.startswith(run_id, autoescape=True))
                .limit(3))]  # `%` and `_` are characters of the prefix, not wildcards
        if not found:
            raise NotFound(f"no run {run_id!r} in {self._safe_url()}")
        if len(found) > 1:
            raise InputError(f"run id {run_id!r} is ambiguous ({', '.join(found)}, ...)")
        return str(found[0])

    def get_run(self, run_id: str) -> tuple[dict[str, Any], RunResult]:
        full = self.resolve(run_id)
        with self.engine.connect() as conn:
            row = dict(conn.execute(select(runs).where(runs.c.run_id == full)).one()._mapping)
            # records without a place first on every backend, as run_records pages them
            rows = conn.execute(select(devices).where(devices.c.run_id == full)
                                .order_by(devices.c.position.asc().nulls_first(),
                                          devices.c.id)).all()
        return row, run_of(row, [record_of(dict(r._mapping)) for r in rows])


def record_of(row: dict[str, Any]) -> DeviceResult:
    """A device's record from its row in `devices`."""
    return DeviceResult.from_json({k: v for k, v in row.items()
                                   if k not in ("id", "run_id", "position")})


def run_of(row: dict[str, Any], records: list[DeviceResult]) -> RunResult:
    """A run from its row in `runs` and its devices' records."""
    return RunResult(run_id=row["run_id"], job=row["job"], started=row["started"],
                     finished=row["finished"], devices=records, dry_run=row["dry_run"],
                     job_file=row["job_file"], engine=EngineName(row["engine"]),
                     occurrence=row["occurrence"], backup_commit=row["backup_commit"],
                     rerun_of=row.get("rerun_of"), approves=row.get("approves"),
                     started_by=row.get("started_by"), override=row.get("override"),
                     remediates=row.get("remediates"), workflow=row.get("workflow"),
                     blackout_override=row.get("blackout_override"),
                     rehearsal=row.get("rehearsal"))


MAX_WORKING = 1000  # devices in progress stored per run (the page lists fewer)
FLUSH_S = 0.25  # a finished device is on disk this long after at most
BATCH_RECORDS = 500  # records per transaction at most ...
BATCH_OUTPUT = 4 * 1024 * 1024  # ... and characters of step output
# Records handed over and not yet stored, at most: past this put() waits for the writer (a
# database slower than the devices slows the run; it does not grow its memory) ...
PENDING_RECORDS = 4 * BATCH_RECORDS
PENDING_OUTPUT = 4 * BATCH_OUTPUT
# ... unless the writer has been stuck this long on one batch: the database is away, and
# the run goes on with its records waiting here (see RecordWriter).
STALLED_S = 10.0


def _output_size(device: DeviceResult) -> int:
    return sum(len(s.output or "") for s in device.steps)


class RecordWriter:
    """Stores device records from a background thread, a batch per transaction, so the
    engine never waits on the database and a finished device is on disk within moments.
    A database slower than the devices slows the run (put() waits while PENDING_RECORDS
    or PENDING_OUTPUT wait to be stored: memory stays bounded). While the database is away
    (a batch stuck past STALLED_S) the run goes on and records wait here, written when it is
    back; after the store's retry bound they are given up on, and close() names them (the
    caller keeps the run elsewhere: nothing is dropped silently). The run's heartbeat and
    its cancel requests are run control's (runner.execution.control.runwatch.RunWatch)."""

    def __init__(self, store: ResultsStore, run_id: str, hosts: list[str] | None = None) \
            -> None:
        self._store = store
        self._run_id = run_id
        self._positions = {h: i for i, h in enumerate(hosts or [])}
        # a device's record, a host that started (str), or None: the run has ended
        self._queue: queue.SimpleQueue[DeviceResult | str | None] = queue.SimpleQueue()
        self._working: dict[str, str] = {}  # host -> when it started, until its record
        self._told: dict[str, str] | None = None  # the working map last stored
        self._give_up = threading.Event()
        self._closing = threading.Event()
        self.error: str | None = None  # why records could not be stored
        self.unsaved: set[str] = set()  # hosts whose record is not in the database
        self._room = threading.Condition()
        self.pending = (0, 0)  # records put and not yet stored, and their output's size
        self._writing_since: float | None = None  # when the batch being stored was taken
        self._thread = threading.Thread(target=self._loop, name=RECORDS_THREAD, daemon=True)
        self._thread.start()

    def put(self, device: DeviceResult) -> None:
        """Hand a record over; waits while too many wait to be stored (backpressure)."""
        size = _output_size(device)
        with self._room:
            while self._full() and self.error is None and not self._stalled():
                self._room.wait(0.25)
            count, total = self.pending
            self.pending = (count + 1, total + size)
        self._queue.put(device)

    def _full(self) -> bool:
        count, total = self.pending
        return count >= PENDING_RECORDS or total >= PENDING_OUTPUT

    def _stalled(self) -> bool:
        since = self._writing_since
        return since is not None and time.monotonic() - since > STALLED_S

    def started(self, host: str) -> None:
        """A device started: stored with the next batch (the run page's in-progress list)."""
        self._queue.put(host)

    def _loop(self) -> None:
        done = full = False
        while not done:
            batch: list[DeviceResult] = []
            item = self._queue.get()
            # Gather what finishes within a moment: one transaction per batch costs a
            # tenth of one per record, and the engine shares this process's CPU. This
            # thread sleeps through the moment rather than waking for each record (a
            # wake-up per record, and the GIL handed over each time, cost the engine's
            # thread CPU at 10,000 devices); close() ends the wait.
            if item is not None and not full:
                self._closing.wait(FLUSH_S)
            size = 0
            full = False
            while item is not None:
                if isinstance(item, str):
                    self._working[item] = now_iso()
                else:
                    batch.append(item)
                    self._working.pop(item.host, None)
                    size += _output_size(item)
                # a batch is copied twice on its way to the database: big records, few
                # (the rest waits in the queue for the next batch, taken at once)
                if len(batch) >= BATCH_RECORDS or size >= BATCH_OUTPUT:
                    full = True
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            done = item is None
            if batch:
                self._writing_since = time.monotonic()
                self._store_batch(batch, None if done else self._working)
                with self._room:
                    self._writing_since = None
                    count, total = self.pending
                    self.pending = (count - len(batch), total - size)
                    self._room.notify_all()
            self._store_working(None if done else self._working)

    @staticmethod
    def _shown(working: dict[str, str] | None) -> dict[str, str] | None:
        return dict(list(working.items())[:MAX_WORKING]) if working else None

    def _store_working(self, working: dict[str, str] | None) -> None:
        """Best effort: the in-progress list is a view; the records are what matter."""
        shown = self._shown(working)
        if self.error is not None or shown == self._told:
            return
        try:
            self._store.set_working(self._run_id, shown)
            self._told = shown
        except Exception as exc:
            log.debug("run %s: devices in progress not stored: %s", self._run_id,
                      describe(exc))

    def _store_batch(self, batch: list[DeviceResult], working: dict[str, str] | None) \
            -> None:
        """The batch's records, and the in-progress list when it changed in the same
        UPDATE of the run's row (one rewrite of the row and one commit a batch, not two)."""
        if self.error is None:
            shown: Working = self._shown(working)
            if shown == self._told:
                shown = KEEP
            try:
                retrying(self._store.engine, f"storing records of run {self._run_id}",
                         lambda: self._store.record_devices(self._run_id, batch,
                                                            self._positions,
                                                            working=shown),
                         self._store.retry_s, self._give_up)
            except Exception as exc:
                self.error = str(exc) if isinstance(exc, RunnerError) else \
                    f"results database {self._store._safe_url()}: {describe(exc)}"
                log.error("run %s: %s; its records are kept until it ends", self._run_id,
                          self.error)
            else:
                if shown is not KEEP:
                    self._told = shown
                # On disk now: the run keeps only its summary of each (memory stays flat
                # however many devices finish); whoever wants more reads the store.
                for device in batch:
                    device.slim()
                return
        self.unsaved |= {d.host for d in batch}

    def close(self, *, give_up: bool = False) -> set[str]:
        """Wait until every record put so far is stored, or (`give_up`: the run was
        interrupted) stop waiting for a database that is away. The hosts whose records
        could not be stored (see `error`)."""
        if give_up:
            self._give_up.set()
        self._queue.put(None)
        self._closing.set()
        self._thread.join()
        return set(self.unsaved)
