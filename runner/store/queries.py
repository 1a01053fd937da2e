"""Read-side queries of the results store (pages of runs, a run's devices failed first,
counts per status) and the JSON documents that `runner history|show --json` print and
`runner web` serves: one function each, so both say the same."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select
from sqlalchemy.engine import Connection

from runner.errors import InputError, NotFound
from runner.records import DeviceResult, RunResult
from runner.store.jsontext import indented
from runner.store.results import (
    FAILED_FIRST_SQL,
    ResultsStore,
    devices,
    record_of,
    run_of,
    runs,
)
from runner.vocab import DeviceStatus, RunStatus

# A run as listed (history, the runs page): not its targets (thousands of names) nor the
# job and inputs as previewed (`runner show`, approval).
LISTED = ("run_id", "job", "job_file", "started", "finished", "status", "dry_run", "engine",
          "occurrence", "summary", "backup_commit", "rerun_of", "approval_deadline",
          "approves", "decision", "notifications", "owner", "heartbeat", "error",
          "started_by", "override", "cancel_requested", "cancel_requested_by", "remediates",
          "workflow", "blackout_override")
# A run's row as one run is shown (`runner show`, the API's run document, the run page):
# the listed columns and its rehearsal (too big for lists of runs).
SHOWN = (*LISTED, "rehearsal")
# Who did what to a run, in every document of it (`runner show --json`, the API).
ACCOUNT = ("started_by", "override", "blackout_override", "workflow", "decision",
           "approval_deadline", "cancel_requested",
           "cancel_requested_by")
# A device as listed on a run's page: everything but its steps' outputs.
DEVICE_LISTED = ("host", "status", "changed", "duration_s", "error", "error_class",
                 "attempts", "driver", "worker", "started", "finished")

def _moment(value: str, name: str, *, end: bool) -> str:
    """A filter bound as stored times compare (UTC ISO text): a date means its whole day."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + (timedelta(days=1) if end else timedelta())
            return day.isoformat()
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError):  # 9999-12-31 has no next day; year 1 at UTC+14
        raise InputError(f"{value[:40]!r} is not a date (YYYY-MM-DD) or ISO date-time "
                         "between years 1 and 9999", field=name) from None


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: of a job, of a status, started within [since, until], of a
    workflow run."""

    job: str | None = None
    status: RunStatus | None = None
    since: str | None = None  # a date (that day on) or an ISO date-time
    until: str | None = None  # a date (up to the end of that day) or an ISO date-time
    workflow: str | None = None

    def where(self) -> list[Any]:
        out: list[Any] = []
        if self.job:
            out.append(runs.c.job == self.job)
        if self.status:
            out.append(runs.c.status == self.status)
        if self.since:
            out.append(runs.c.started >= _moment(self.since, "since", end=False))
        if self.until:
            out.append(runs.c.started < _moment(self.until, "until", end=True))
        if self.workflow:
            out.append(runs.c.workflow == self.workflow)
        return out


def run_rows(store: ResultsStore, where: RunFilter | None = None, limit: int = 20,
             offset: int = 0) -> list[dict[str, Any]]:
    """Runs newest first, as `runner history --json` prints them."""
    query = select(*(runs.c[c] for c in LISTED)).where(*(where or RunFilter()).where()) \
        .order_by(runs.c.started.desc(), runs.c.run_id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def count_runs(store: ResultsStore, where: RunFilter | None = None) -> int:
    query = select(func.count()).select_from(runs).where(*(where or RunFilter()).where())
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def job_names(store: ResultsStore) -> list[str]:
    """Every job that has runs (the runs page's filter)."""
    with store.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(select(runs.c.job).distinct()
                                                .order_by(runs.c.job))]


def run_document(row: dict[str, Any], run: RunResult,
                 links: dict[str, Any] | None = None) -> dict[str, Any]:
    """`runner show --json`: the run, its status and error, who started, decided, overrode
    or cancelled it, notifications, its devices. `links`: run_links() of it."""
    data = run.to_json()
    data["status"], data["error"] = row["status"], row.get("error")
    for key in ACCOUNT:
        data[key] = row.get(key)
    data.update(links or {})
    data["notifications"] = row.get("notifications") or []
    return data


def run_links(store: ResultsStore, row: dict[str, Any]) -> dict[str, Any]:
    """How a run and an approval belong together, for the history to tell: a preview's
    `carried_out_by` (the run that carried out its approved change), and a carrying-out
    run's `approval` (its preview, who approved it and when); the runs that reran its
    devices (`reruns`, oldest first)."""
    out: dict[str, Any] = {"carried_out_by": None, "approval": None}
    with store.engine.connect() as conn:
        out["reruns"] = [str(r[0]) for r in conn.execute(select(runs.c.run_id).where(
            runs.c.rerun_of == row["run_id"]).order_by(runs.c.started))]
        if row.get("approves"):
            found = conn.execute(select(runs.c.decision, runs.c.status).where(
                runs.c.run_id == row["approves"])).first()
            decision = (found[0] if found else None) or {}
            out["approval"] = {"preview": row["approves"], "by": decision.get("by"),
                               "at": decision.get("at")}
        if row.get("status") == RunStatus.APPROVED or row.get("approval_deadline"):
            carried = conn.execute(select(runs.c.run_id).where(
                runs.c.approves == row["run_id"]).order_by(runs.c.started)).first()
            out["carried_out_by"] = carried[0] if carried else None
    return out


def run_head(store: ResultsStore, run_id: str, *, hosts: bool = True) -> dict[str, Any]:
    """A run's row without its devices (a unique prefix of its id is enough): with its
    targets (`hosts`), or (hosts=False) only how many there are (`host_count`: the
    database counts a list of 100,000 names; it is not sent here and parsed)."""
    full = store.resolve(run_id)
    counted = func.coalesce(func.json_array_length(runs.c.hosts), 0).label("host_count")
    with store.engine.connect() as conn:
        row = conn.execute(select(*(runs.c[c] for c in SHOWN), counted,
                                  *([runs.c.hosts] if hosts else []))
                           .where(runs.c.run_id == full)).one()
    return dict(row._mapping)


def device_document(store: ResultsStore, run_id: str, host: str) -> dict[str, Any]:
    """`runner show RUN --host HOST --json`, reading only that device's record."""
    row = run_head(store, run_id, hosts=False)  # not its 100,000 targets
    with store.engine.connect() as conn:
        found = conn.execute(select(devices).where(devices.c.run_id == row["run_id"],
                                                   devices.c.host == host)).first()
    if found is None:
        raise NotFound(f"run {row['run_id']} has no device {host!r}")
    return run_document(row, run_of(row, [record_of(dict(found._mapping))]),
                        run_links(store, row))


def status_counts(store: ResultsStore, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run, how many devices are recorded in each status: a finished run's as kept
    when it ended (runs.counts), the others (running, or finished before 0012) counted
    from their records (live, while runs go)."""
    if not run_ids:
        return {}
    out: dict[str, dict[str, int]] = {r: dict.fromkeys(DeviceStatus, 0) for r in run_ids}
    with store.engine.connect() as conn:
        kept = {r: c for r, c in conn.execute(select(runs.c.run_id, runs.c.counts).where(
            runs.c.run_id.in_(run_ids), runs.c.counts.is_not(None))) if c is not None}
        for run_id, counted in kept.items():
            for status, count in counted.items():
                out[run_id][status] = int(count)
        rest = [r for r in run_ids if r not in kept]
        if rest:
            query = select(devices.c.run_id, devices.c.status, func.count()).where(
                devices.c.run_id.in_(rest)).group_by(devices.c.run_id, devices.c.status)
            for run_id, status, count in conn.execute(query):
                out[run_id][status] = int(count)
    return out


# Failed first, then skipped, then the devices that ended well; each in target order: the
# expression of the index ix_devices_run_failed_first, written as it is there.
_FAILED_FIRST: ColumnElement[Any] = literal_column(
    re.sub(r"\bstatus\b", "devices.status", FAILED_FIRST_SQL))


def device_rows(store: ResultsStore, run_id: str, status: DeviceStatus | None = None,
                limit: int = 500, offset: int = 0,
                counts: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """A page of a run's devices without their steps, failed first. With the run's
    `counts` (status_counts) a deep page is found without walking the rows before it
    (see _deep_page)."""
    with store.engine.connect() as conn:
        if offset and counts is not None:
            rows = _deep_page(conn, run_id, status, limit, offset, counts)
            if rows is not None:
                return rows
        return [dict(r._mapping) for r in conn.execute(
            device_rows_query(run_id, status, limit, offset))]


def device_rows_query(run_id: str, status: DeviceStatus | None, limit: int,
                      offset: int) -> Select[Any]:
    """device_rows' query: along ix_devices_run_failed_first (of one status: along
    ix_devices_run_status_position), never a sort of the run."""
    query = select(*(devices.c[c] for c in DEVICE_LISTED)).where(devices.c.run_id == run_id)
    if status is not None:  # one status is one rank: target order along its own index
        return query.where(devices.c.status == status).order_by(
            devices.c.position, devices.c.id).limit(limit).offset(offset)
    return query.order_by(_FAILED_FIRST, devices.c.position, devices.c.id) \
        .limit(limit).offset(offset)


def _rank(status: DeviceStatus) -> int:
    """A status's place in the failed-first order (FAILED_FIRST_SQL)."""
    return 2 if status.success else 1 if status is DeviceStatus.SKIPPED else 0


def dense(conn: Connection, run_id: str, total: int) -> bool:
    """Whether the run's `total` records hold exactly the positions 0..total-1 (every
    record placed: a finished run's records, or a running run's so far when none is
    missing before the last). Positions are places in the run's targets, one record per
    target: distinct, so the lowest, the highest and the count prove it (two look-ups
    at the ends of ix_devices_run_position and one for records without a place)."""
    if total <= 0:
        return False
    low, high = (conn.execute(q).scalar() for q in ends_queries(run_id))
    unplaced = conn.execute(select(func.count()).select_from(devices).where(
        devices.c.run_id == run_id, devices.c.position.is_(None))).scalar_one()
    return unplaced == 0 and low == 0 and high == total - 1


def ends_queries(run_id: str) -> list[Select[Any]]:
    """The lowest and the highest position of a run's records: one statement each (SQLite
    reads min() or max() from an end of the index only when it is alone)."""
    return [select(end(devices.c.position)).where(devices.c.run_id == run_id)
            for end in (func.min, func.max)]


def nth_position_query(run_id: str, others: list[str], bound: int) -> Select[Any]:
    """The positions, up to `bound`, of a run's records of `others` statuses: along
    ix_devices_run_status_position (its columns: PostgreSQL reads the index alone once
    the table is vacuumed)."""
    return select(devices.c.position).where(
        devices.c.run_id == run_id, devices.c.status.in_(others),
        devices.c.position <= bound)


def _nth_position(conn: Connection, run_id: str, members: set[DeviceStatus], nth: int,
                  counts: dict[str, int]) -> int | None:
    """The position of the nth (from 0) of a run's records of `members` statuses in
    target order, from the positions of the records of the other statuses before it: in
    a dense run, when there are fewer of those than `nth` (the cheaper side). None: the
    query walks the nth records instead."""
    others = [s for s in DeviceStatus if s not in members and counts.get(s)]
    if sum(counts[s] for s in others) > nth or not dense(conn, run_id, sum(counts.values())):
        return None
    place = nth  # every place before it not taken by another status is one of members'
    for taken in sorted(r[0] for r in conn.execute(
            nth_position_query(run_id, [str(s) for s in others],
                               nth + sum(counts[s] for s in others)))):
        if taken > place:
            break
        place += 1
    return place


def deep_page_queries(run_id: str, status: DeviceStatus | None, rank: int,
                      place: int | None, limit: int
                      ) -> tuple[Select[Any], Select[Any] | None]:
    """A page that starts at `place` in target order among one status (or one rank of
    the failed-first order, then the ranks after it): ranges of their indexes, no
    offset (place None: from the rank's first record)."""
    query = select(*(devices.c[c] for c in DEVICE_LISTED)).where(devices.c.run_id == run_id)
    if status is not None:
        return query.where(devices.c.status == status, devices.c.position >= place) \
            .order_by(devices.c.position, devices.c.id).limit(limit), None
    ranked = _FAILED_FIRST
    first = query.where(ranked == rank)
    if place is not None:
        first = first.where(devices.c.position >= place)
    # within one rank by (position, id) alone: SQLite sorts when the rank is in ORDER BY
    return (first.order_by(devices.c.position, devices.c.id).limit(limit),
            query.where(ranked > rank).order_by(_FAILED_FIRST, devices.c.position,
                                                devices.c.id).limit(limit))


def _deep_page(conn: Connection, run_id: str, status: DeviceStatus | None, limit: int,
               offset: int, counts: dict[str, int]) -> list[dict[str, Any]] | None:
    """device_rows' page at `offset` without walking the rows before it: the counts say
    which status (or rank of the failed-first order) it starts in and how far into it; in
    a run whose records hold positions 0..n-1 that is a place in target order, found
    from the fewer records of the other statuses. Where that does not hold, the rows of
    the page's rank before it are walked (None, one status: the query walks them)."""
    shown = counts.get(status, 0) if status is not None else sum(counts.values())
    if offset >= shown:
        return []
    if status is not None:
        members, rank, nth = {status}, 0, offset
    else:
        rank, nth = 0, offset
        sizes = [sum(counts.get(s, 0) for s in DeviceStatus if _rank(s) == r)
                 for r in range(3)]
        while nth >= sizes[rank]:  # offset < shown: it ends within the last rank
            nth -= sizes[rank]
            rank += 1
        members = {s for s in DeviceStatus if _rank(s) == rank}
    place = _nth_position(conn, run_id, members, nth, counts)
    if place is None and status is not None:
        return None  # the query walks that status's records only
    first, rest = deep_page_queries(run_id, status, rank, place, limit)
    if place is None:  # walk the page's rank only, not the ranks before it
        first = first.offset(nth)
    rows = [dict(r._mapping) for r in conn.execute(first)]
    if rest is not None and len(rows) < limit:
        rows += [dict(r._mapping) for r in conn.execute(rest.limit(limit - len(rows)))]
    return rows


def device_steps(store: ResultsStore, run_id: str, hosts: list[str]
                 ) -> dict[str, list[dict[str, Any]]]:
    """The stored steps of these devices of a run (their diffs, outputs...), by host."""
    with store.engine.connect() as conn:
        return {r.host: r.steps or [] for r in conn.execute(
            select(devices.c.host, devices.c.steps).where(devices.c.run_id == run_id,
                                                         devices.c.host.in_(hosts)))}


RECORDS_PAGE = 500  # device records read per query when a whole run is streamed


def run_records(store: ResultsStore, run_id: str, page: int = RECORDS_PAGE
                ) -> Iterator[DeviceResult]:
    """A run's device records in the order `runner show` lists them (target order; any
    without a place first), read a page at a time: a run of any size is never held whole."""
    last_id = -1
    while True:  # records without a place in the targets (stored by older versions)
        with store.engine.connect() as conn:
            rows = conn.execute(select(devices).where(
                devices.c.run_id == run_id, devices.c.position.is_(None),
                devices.c.id > last_id).order_by(devices.c.id).limit(page)).all()
        for row in rows:
            yield record_of(dict(row._mapping))
        if len(rows) < page:
            break
        last_id = rows[-1].id
    place, last_id = -1, -1
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(select(devices).where(
                devices.c.run_id == run_id, devices.c.position.is_not(None),
                or_(devices.c.position > place,
                    and_(devices.c.position == place, devices.c.id > last_id)))
                .order_by(devices.c.position, devices.c.id).limit(page)).all()
        for row in rows:
            yield record_of(dict(row._mapping))
        if len(rows) < page:
            return
        place, last_id = rows[-1].position, rows[-1].id


def records_page(store: ResultsStore, run_id: str, limit: int, offset: int,
                 total: int | None = None) -> list[DeviceResult]:
    """A page of a run's full records in run_records' order (records without a place
    first, then target order), each part read along its index: a page of a run of 100,000
    devices reads that page, never the run. With the run's `total` records, a run whose
    records hold positions 0..total-1 is paged by position (offset N is place N), never
    walking the records before the page."""
    with store.engine.connect() as conn:
        if offset and total is not None and dense(conn, run_id, total):
            return [record_of(dict(r._mapping)) for r in conn.execute(
                records_from_query(run_id, offset, limit))]
        unplaced = int(conn.execute(select(func.count()).select_from(devices).where(
            devices.c.run_id == run_id, devices.c.position.is_(None))).scalar_one())
        rows: list[Any] = []
        if offset < unplaced:
            rows += conn.execute(select(devices).where(
                devices.c.run_id == run_id, devices.c.position.is_(None))
                .order_by(devices.c.id).limit(limit).offset(offset)).all()
        if len(rows) < limit:
            rows += conn.execute(select(devices).where(
                devices.c.run_id == run_id, devices.c.position.is_not(None))
                .order_by(devices.c.position, devices.c.id)
                .limit(limit - len(rows)).offset(max(0, offset - unplaced))).all()
    return [record_of(dict(r._mapping)) for r in rows]


def records_from_query(run_id: str, place: int, limit: int) -> Select[Any]:
    """A dense run's full records from `place` on in target order: a range of
    ix_devices_run_position (its positions are distinct: no tie for the id to break)."""
    return select(devices).where(devices.c.run_id == run_id, devices.c.position >= place) \
        .order_by(devices.c.position).limit(limit)


def run_for_show(store: ResultsStore, run_id: str, *, host: str | None = None,
                 statuses: Iterable[DeviceStatus] | None = None, steps: bool = True,
                 failing_past: int | None = None,
                 ) -> tuple[dict[str, Any], RunResult, dict[str, int]]:
    """`runner show`'s run: its row (without the host list), its counts per status and only
    the records it prints: one host's, those in `statuses` (all when None; only those that
    did not end ok or changed when the run has more than `failing_past` devices), with
    their steps or (`steps` False: a table) without. (row, run, counts)."""
    full = store.resolve(run_id)
    counts = status_counts(store, [full])[full]
    if failing_past is not None and sum(counts.values()) > failing_past:
        statuses = [s for s in DeviceStatus if not s.success]
    with store.engine.connect() as conn:
        row = dict(conn.execute(select(*(runs.c[c] for c in SHOWN)).where(
            runs.c.run_id == full)).one()._mapping)
        columns = [devices] if steps else [devices.c[c] for c in DEVICE_LISTED]
        query = select(*columns).where(devices.c.run_id == full)
        if host is not None:
            query = query.where(devices.c.host == host)
        if statuses is not None:
            query = query.where(devices.c.status.in_([str(s) for s in statuses]))
        found = conn.execute(query.order_by(devices.c.position.asc().nulls_first(),
                                            devices.c.id)).all()
    return row, run_of(row, [record_of(dict(r._mapping)) for r in found]), counts


def run_document_page(store: ResultsStore, run_id: str, limit: int, offset: int
                      ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """`GET /api/runs/ID`: `runner show --json`'s document with one page of its devices
    (`devices_total`, `offset`, `limit` say which) and the counts of the whole run; the
    run's row (without its host list) read once. (document, the run's row, counts)."""
    full = store.resolve(run_id)
    with store.engine.connect() as conn:
        row = dict(conn.execute(select(*(runs.c[c] for c in SHOWN)).where(
            runs.c.run_id == full)).one()._mapping)
    counts = status_counts(store, [full])[full]
    document = run_document(row, run_of(row, records_page(store, full, limit, offset,
                                                          sum(counts.values()))),
                            run_links(store, row))
    document["summary"] = {str(s): n for s, n in counts.items()}
    document.update(devices_total=sum(counts.values()), offset=offset, limit=limit)
    return document, row, counts


_DEVICES = "\u0000runner: the devices go here\u0000"


def document_chunks(document: dict[str, Any], records: Iterable[dict[str, Any]]
                    ) -> Iterator[str]:
    """`json.dumps(document, indent=2)` with document["devices"] = `records`, as text
    chunks: the head, then one device at a time, so a run's JSON is streamed, never built
    whole. The text is exactly what json.dumps would print."""
    text = json.dumps({**document, "devices": _DEVICES}, indent=2)
    head, tail = text.split(json.dumps(_DEVICES), 1)
    yield head
    first = True
    for record in records:
        yield ("[\n    " if first else ",\n    ") + indented(record, 2)
        first = False
    yield ("[]" if first else "\n  ]") + tail


def run_chunks(store: ResultsStore, run_id: str, *, account: bool = True) -> Iterator[str]:
    """A stored run's JSON document as text chunks, its records streamed from the store:
    `runner show --json`'s (account: status, error, who did what, links, notifications) or
    the run's own to_json() form. The run's row, links and counts are read before the
    first chunk is given, so a store that is away fails before anything is printed."""
    full = store.resolve(run_id)
    with store.engine.connect() as conn:
        row = dict(conn.execute(select(runs).where(runs.c.run_id == full)).one()._mapping)
    base = run_of(row, [])
    document = run_document(row, base, run_links(store, row)) if account else base.to_json()
    document["summary"] = {str(s): n for s, n in status_counts(store, [full])[full].items()}
    return document_chunks(document, (r.to_json() for r in run_records(store, full)))


def run_hosts(store: ResultsStore, run_id: str, statuses: Iterable[DeviceStatus]) -> list[str]:
    """The devices of a run that ended in one of `statuses`, in the order `runner show`
    lists them (what a rerun runs again), without reading their records."""
    query = select(devices.c.host).where(
        devices.c.run_id == run_id, devices.c.status.in_([str(s) for s in statuses])) \
        .order_by(devices.c.position, devices.c.id)
    with store.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(query)]
