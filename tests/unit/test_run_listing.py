"""A large run in the store (issue 28), on SQLite and PostgreSQL: its devices are listed
failed first a page at a time along an index (never a sort of the run), GET /api/runs/ID's
pages and `runner show` read only what they show, and the index's expression is the one the
queries order by; device search by last status reads the devices of that status along an
index (each device's newest record kept through every way records are written); the live
page of a running run reads what it shows, not the run's targets or records."""

from __future__ import annotations

import contextlib
import importlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from runner.inventory import fleet as fleet_module
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.records import DeviceResult, RunResult, StepResult
from runner.store import devices as store_devices
from runner.store import queries
from runner.store.results import FAILED_FIRST_SQL, ResultsStore, device_last, devices, runs
from runner.vocab import DeviceStatus, ImportOutcome, RunStatus, StepKind

STATUSES = [DeviceStatus.OK] * 6 + [DeviceStatus.CHANGED, DeviceStatus.FAILED,
                                    DeviceStatus.SKIPPED, DeviceStatus.UNREACHABLE]
DEVICES = 600


def big_run(db_url: str) -> tuple[ResultsStore, list[DeviceResult]]:
    store = ResultsStore(db_url)
    hosts = [f"d{i:04d}" for i in range(DEVICES)]
    run = RunResult(run_id="big0000000001", job="show", started="2026-12-07T10:00:00.000+00:00",
                    finished=None, devices=[])
    store.start_run(run, hosts)
    records = [DeviceResult(host=h, status=STATUSES[i * 7 % len(STATUSES)], steps=[
        StepResult(name="show version", kind=StepKind.COMMAND, output=f"version of {h}")])
        for i, h in enumerate(hosts)]
    positions = {h: i for i, h in enumerate(hosts)}
    for at in range(0, DEVICES, 250):  # stored out of order, as devices finish
        store.record_devices(run.run_id, records[at:at + 250][::-1], positions)
    run.devices, run.finished = records, "2026-12-07T10:05:00.000+00:00"
    store.finish_run(run)
    # a second run: its rows interleave with the first's in the table
    other = RunResult(run_id="small00000001", job="show", started=run.finished,
                      finished=None, devices=[])
    store.start_run(other, hosts[:50])
    store.record_devices(other.run_id, records[:50], positions)
    return store, records


def rank(status: DeviceStatus) -> int:
    return 2 if status.success else 1 if status is DeviceStatus.SKIPPED else 0


def plan(store: ResultsStore, status: DeviceStatus | None, offset: int) -> str:
    return explained(store, queries.device_rows_query("big0000000001", status, 100, offset))


def test_a_run_s_devices_are_listed_failed_first_along_the_index(db_url: str) -> None:
    store, records = big_run(db_url)
    expected = sorted(range(DEVICES), key=lambda i: (rank(records[i].status), i))
    listed = [r["host"] for at in range(0, DEVICES, 100)
              for r in queries.device_rows(store, "big0000000001", None, 100, at)]
    assert listed == [records[i].host for i in expected]
    failed = [r["host"] for r in queries.device_rows(store, "big0000000001",
                                                     DeviceStatus.FAILED, 500, 0)]
    assert failed == [r.host for r in records if r.status is DeviceStatus.FAILED]
    ok = [r["host"] for at in range(0, DEVICES, 100)
          for r in queries.device_rows(store, "big0000000001", DeviceStatus.OK, 100, at)]
    assert ok == [r.host for r in records if r.status is DeviceStatus.OK]
    for status, offset, index in ((None, 0, "ix_devices_run_failed_first"),
                                  (None, 400, "ix_devices_run_failed_first"),
                                  (DeviceStatus.OK, 100, "ix_devices_run_status_position")):
        shown = plan(store, status, offset)
        assert index in shown, shown
        assert "TEMP B-TREE" not in shown and "Sort" not in shown, shown
    store.engine.dispose()



class Statements:
    """The statements an engine runs: their SQL (before_cursor_execute), and the offsets
    of its queries (before_execute), to tell a walk past rows from a range read."""

    def __init__(self, store: ResultsStore) -> None:
        self.sent: list[str] = []
        self.offsets: list[int] = []
        event.listen(store.engine, "before_cursor_execute", self._sql)
        event.listen(store.engine, "before_execute", self._query)

    def _sql(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(statement)

    def _query(self, _conn: Any, query: Any, *_: Any) -> None:
        self.offsets.append(getattr(query, "_offset", None) or 0)

    def clear(self) -> None:
        self.sent.clear()
        self.offsets.clear()

    def walks(self) -> list[int]:
        """The offsets past 0 the queries asked for (rows read only to be skipped)."""
        return [n for n in self.offsets if n]


def gappy_run(store: ResultsStore, records: list[DeviceResult], unplaced: bool) -> str:
    """A run of the same targets that recorded only some of them (it was interrupted);
    `unplaced`: two of them without a place (as older versions stored them)."""
    run = RunResult(run_id="gaps000000001", job="show", started="2026-12-07T12:00:00+00:00",
                    finished=None, devices=[])
    hosts = [r.host for r in records]
    store.start_run(run, hosts)
    kept = [r for i, r in enumerate(records) if i % 7 != 3]
    places = {h: i for i, h in enumerate(hosts)}
    store.record_devices(run.run_id, kept[2:], places)
    store.record_devices(run.run_id, kept[:2], None if unplaced else places)
    return run.run_id


@pytest.mark.parametrize("shape", ["every target recorded", "gaps",
                                   "gaps and records without a place"])
def test_deep_pages_are_the_pages_the_offset_query_gives(db_url: str, shape: str) -> None:
    """The pages found from the counts and positions are the OFFSET query's, at every
    depth: the first, within each rank, across rank boundaries, the last, past the end;
    failed first, of one status, and GET /api/runs/ID's records in target order."""
    store, records = big_run(db_url)
    run_id = "big0000000001" if shape == "every target recorded" else \
        gappy_run(store, records, unplaced="without a place" in shape)
    counts = queries.status_counts(store, [run_id])[run_id]
    total = sum(counts.values())
    sent = Statements(store)
    for status in (None, DeviceStatus.OK, DeviceStatus.CHANGED, DeviceStatus.FAILED,
                   DeviceStatus.SKIPPED):
        shown = counts[status] if status else total
        for offset in sorted({1, 7, 59, 120, 179, 180, 181, 250, 400, 499, shown - 100,
                              shown - 1, shown, shown + 1, 5000}):
            if offset < 0:
                continue
            sent.clear()
            fast = queries.device_rows(store, run_id, status, 100, offset, counts)
            deep = not sent.walks()
            walked = queries.device_rows(store, run_id, status, 100, offset)
            assert fast == walked, (status, offset)
            assert len(fast) == max(0, min(100, shown - offset)), (status, offset)
            if shape == "every target recorded" and offset >= shown:
                assert deep, (status, offset)  # past the end: nothing read
    # every target recorded: past the other statuses' count, a page is a range
    if shape == "every target recorded":
        sent.clear()
        last = queries.device_rows(store, run_id, None, 100, total - 50, counts)
        assert not sent.walks(), sent.walks()
        assert [r["host"] for r in last] == [
            records[i].host for i in sorted(range(DEVICES), key=lambda i: (
                rank(records[i].status), i))][-50:]
        sent.clear()
        queries.device_rows(store, run_id, DeviceStatus.OK, 100, counts[DeviceStatus.OK] - 1,
                            counts)
        assert not sent.walks(), sent.walks()
    whole = [r.host for r in queries.run_records(store, run_id)]
    assert len(whole) == total
    for offset in (1, 100, 250, total - 7, total - 1, total, total + 3):
        sent.clear()
        page = [r.host for r in queries.records_page(store, run_id, 64, offset, total)]
        assert page == whole[offset:offset + 64], offset
        if shape == "every target recorded":
            assert not sent.walks(), (offset, sent.walks())
        assert [r.host for r in queries.records_page(store, run_id, 64, offset)] == page
    document, _, _ = queries.run_document_page(store, run_id, 64, total - 10)
    assert [d["host"] for d in document["devices"]] == whole[-10:]
    store.engine.dispose()


def test_deep_pages_read_ranges_of_the_indexes(db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What a deep page runs: the other statuses' places along
    ix_devices_run_status_position, then ranges of
    ix_devices_run_failed_first / ix_devices_run_status_position / ix_devices_run_position
    from a place: no sort, no offset. (On PostgreSQL with the statistics the end of a
    large run leaves: here the run counts as one.)"""
    from runner.store import results

    monkeypatch.setattr(results, "REFRESH_PAST", DEVICES)
    store, _ = big_run(db_url)
    run_id = "big0000000001"
    for query, index in (
            (queries.nth_position_query(run_id, ["failed", "unreachable"], 300),
             "ix_devices_run_status_position"),
            (queries.deep_page_queries(run_id, None, 2, 300, 100)[0],
             "ix_devices_run_failed_first"),
            (queries.deep_page_queries(run_id, None, 1, 300, 100)[1],
             "ix_devices_run_failed_first"),
            (queries.deep_page_queries(run_id, None, 2, None, 100)[0],
             "ix_devices_run_failed_first"),
            (queries.deep_page_queries(run_id, DeviceStatus.OK, 0, 300, 100)[0],
             "ix_devices_run_status_position"),
            (queries.records_from_query(run_id, 300, 100), "ix_devices_run_position"),
            *((q, "ix_devices_run_position") for q in queries.ends_queries(run_id))):
        assert query._offset_clause is None
        shown = explained(store, query)
        assert index in shown, shown
        assert "TEMP B-TREE" not in shown and "Sort" not in shown, shown
        assert "SCAN devices" not in shown.replace("SCAN devices USING", ""), shown
    store.engine.dispose()


def test_a_large_run_refreshes_the_planner_statistics_as_it_ends(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a run of REFRESH_PAST records or more is followed by VACUUM (ANALYZE)
    of the tables it wrote to (autovacuum may come a minute later, or never); smaller runs
    and SQLite are not."""
    from runner.store import results

    monkeypatch.setattr(results, "REFRESH_PAST", 300)
    store = ResultsStore(db_url)
    sent = Statements(store)

    def vacuums() -> list[str]:
        return [s for s in sent.sent if s.upper().startswith("VACUUM")]

    def stats() -> list[tuple[Any, ...]]:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM "
                "pg_stat_user_tables WHERE relname IN ('devices', 'device_last') "
                "ORDER BY relname"))]

    for run_id, size in (("small0000001", 299), ("large0000001", 300)):
        run = RunResult(run_id=run_id, job="show", started="2026-12-07T10:00:00",
                        finished=None, devices=[DeviceResult(f"d{i:04d}", DeviceStatus.OK)
                                                for i in range(size)])
        store.start_run(run, [d.host for d in run.devices])
        store.record_devices(run_id, run.devices)
        run.finished = "2026-12-07T10:01:00"
        store.finish_run(run)
        if run_id.startswith("small"):
            assert not vacuums()
            if store.engine.dialect.name == "postgresql":
                assert stats() == [("device_last", False, False), ("devices", False, False)]
    if store.engine.dialect.name == "sqlite":
        assert not vacuums()
    else:
        assert vacuums() == ["VACUUM (ANALYZE, SKIP_LOCKED) devices, device_last"]
        assert stats() == [("device_last", True, True), ("devices", True, True)]
    store.engine.dispose()


def counted(store: ResultsStore, run_id: str) -> dict[str, int]:
    """A run's records per status, counted from them."""
    with store.engine.connect() as conn:
        return {**dict.fromkeys(DeviceStatus, 0), **{s: int(n) for s, n in conn.execute(
            select(devices.c.status, func.count()).where(devices.c.run_id == run_id)
            .group_by(devices.c.status))}}


def kept_counts(store: ResultsStore, run_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(runs.c.counts).where(runs.c.run_id == run_id)).scalar()


def test_a_finished_run_s_counts_are_kept_and_cleared_by_any_later_write(
        db_url: str) -> None:
    """A run's counts per status are kept as it ends (pages read them instead of counting
    100,000 records per request) and are the records' own counts through every way
    records are written after: a write clears them (counted again), a backup commit's
    restated statuses, an interrupted run, a run replaced from a file."""
    store, records = big_run(db_url)
    sent = Statements(store)
    expected = counted(store, "big0000000001")
    assert {s: n for s, n in expected.items() if n} == kept_counts(store, "big0000000001")
    assert kept_counts(store, "small00000001") is None
    sent.clear()
    both = queries.status_counts(store, ["big0000000001", "small00000001"])
    grouped = [s for s in sent.sent if "GROUP BY" in s.upper()]
    statements = len(sent.sent)  # the kept counts, and the running run's records
    assert both["big0000000001"] == expected
    assert both["small00000001"] == counted(store, "small00000001")  # running: counted
    # the running run alone is counted from its records (one run id bound)
    assert len(grouped) == 1 and "IN (" in grouped[0].upper(), grouped
    assert statements == 2, sent.sent
    # a record written after the end: the kept counts go, the records are counted
    store.record_devices("big0000000001", [DeviceResult(records[0].host,
                                                        DeviceStatus.TIMED_OUT)])
    assert kept_counts(store, "big0000000001") is None
    assert queries.status_counts(store, ["big0000000001"])["big0000000001"] == counted(
        store, "big0000000001") != expected
    # a backup whose commit changed a device's file: counted after its status changed
    backup = RunResult(run_id="backup0000001", job="backup", started="2026-12-07T11:00:00",
                       finished=None, devices=[DeviceResult(r.host, DeviceStatus.OK, steps=[
                           StepResult(name="backup", kind=StepKind.BACKUP)])
                           for r in records[:3]])
    store.start_run(backup, [r.host for r in records[:3]])
    store.record_devices(backup.run_id, backup.devices)
    backup.devices[1].status, backup.devices[1].changed = DeviceStatus.CHANGED, True
    backup.devices[1].steps[0].changed = True
    backup.finished = "2026-12-07T11:01:00"
    store.finish_run(backup)
    assert kept_counts(store, backup.run_id) == {"ok": 2, "changed": 1}
    # an interrupted run keeps its counts too; one replaced from a file is counted again
    store.record_devices("small00000001", [DeviceResult("late", DeviceStatus.FAILED)])
    assert store.interrupt("small00000001", "2026-12-07T12:00:00")
    assert kept_counts(store, "small00000001") == {
        s: n for s, n in counted(store, "small00000001").items() if n}
    kept = RunResult(run_id=backup.run_id, job="backup", started=backup.started,
                     finished=backup.finished,
                     devices=[DeviceResult(records[0].host, DeviceStatus.UNREACHABLE)])
    store.import_run(kept, RunStatus.FAILED, None, [records[0].host], replace=True)
    assert kept_counts(store, backup.run_id) == {"unreachable": 1}
    assert queries.status_counts(store, [backup.run_id])[backup.run_id] == counted(
        store, backup.run_id)
    store.engine.dispose()

def test_the_index_orders_by_the_expression_the_queries_use(db_url: str) -> None:
    migration = importlib.import_module(
        "runner.store.migrations.versions.v0009_issue28_run_listing")
    assert migration.FAILED_FIRST.format(success=", ".join(
        f"'{s}'" for s in migration.SUCCESS)) == FAILED_FIRST_SQL
    assert list(migration.SUCCESS) == [str(s) for s in DeviceStatus if s.success]
    ResultsStore(db_url).engine.dispose()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            made = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = "
                                     "'ix_devices_run_failed_first'")).scalar_one()
            assert FAILED_FIRST_SQL in made
        else:
            made = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                     "'ix_devices_run_failed_first'")).scalar_one()
            assert "CASE" in made and "'skipped'" in made and "ok" in made
    engine.dispose()


def test_pages_of_a_run_and_runner_show_read_only_what_they_show(db_url: str) -> None:
    store, records = big_run(db_url)
    whole = [r.host for r in queries.run_records(store, "big0000000001")]
    pages = [r.host for at in range(0, DEVICES, 128)
             for r in queries.records_page(store, "big0000000001", 128, at)]
    assert pages == whole == [r.host for r in records]  # target order, every one once
    document, _, counts = queries.run_document_page(store, "big0000000001", 50, 550)
    assert [d["host"] for d in document["devices"]] == whole[550:]
    assert document["devices_total"] == DEVICES == sum(document["summary"].values())
    assert document["summary"] == {str(s): n for s, n in counts.items()}
    assert document["devices"][0]["steps"][0]["output"] == f"version of {whole[550]}"
    # the run's head counts its targets without reading them
    head = queries.run_head(store, "big0000000001", hosts=False)
    assert head["host_count"] == DEVICES and "hosts" not in head
    assert queries.run_head(store, "big0000000001")["hosts"] == whole
    # `runner show` past 50 devices: only the ones that did not end well, and the counts
    _, run, counts = queries.run_for_show(store, "big0000000001", steps=False,
                                          failing_past=50)
    failing = [r.host for r in records if not r.status.success]
    assert [d.host for d in run.devices] == failing
    assert all(d.steps == [] for d in run.devices)
    assert sum(counts.values()) == DEVICES
    _, one, _ = queries.run_for_show(store, "big0000000001", host=whole[7])
    assert [d.host for d in one.devices] == [whole[7]] and one.devices[0].steps
    store.engine.dispose()


@pytest.mark.parametrize("show_all", [False, True])
def test_runner_show_s_table_counts_the_whole_run(db_url: str, show_all: bool) -> None:
    from runner.job.output import run_table

    store, records = big_run(db_url)
    _, run, counts = queries.run_for_show(store, "big0000000001", steps=False,
                                          failing_past=None if show_all else 50)
    table = run_table(run, show_all, counts)
    assert f"ok {counts['ok']}" in table and f"changed {counts['changed']}" in table
    listed = [line.split()[0] for line in table.splitlines()[2:] if line.startswith("d")]
    assert len(listed) == (DEVICES if show_all else
                           sum(not r.status.success for r in records))
    if not show_all:
        assert f"... and {counts['ok'] + counts['changed']} more not listed" in table
    store.engine.dispose()


# -- device search by last status, and the live page of a running run -----------------------


def last_kept(store: ResultsStore) -> dict[str, tuple[str, int]]:
    """What device_last holds: host -> (status, record id)."""
    with store.engine.connect() as conn:
        return {h: (s, i) for h, i, s in conn.execute(select(device_last))}


def test_each_device_s_newest_record_is_kept_through_every_way_records_are_written(
        db_url: str) -> None:
    store, records = big_run(db_url)
    assert last_kept(store) == store_devices.last_statuses(store)
    hosts = [r.host for r in records]
    # a record written again (the newest row of the table: SQLite may give it the same id)
    store.record_devices("small00000001", [DeviceResult(hosts[49], DeviceStatus.FAILED)])
    assert last_kept(store)[hosts[49]][0] == DeviceStatus.FAILED
    assert last_kept(store) == store_devices.last_statuses(store)
    # a backup whose commit changed the device's file: its status changes at the run's end
    backup = RunResult(run_id="backup0000001", job="backup", started="2026-12-07T11:00:00",
                       finished=None, devices=[])
    store.start_run(backup, hosts[:3])
    backup.devices = [DeviceResult(h, DeviceStatus.OK, steps=[StepResult(
        name="backup", kind=StepKind.BACKUP)]) for h in hosts[:3]]
    store.record_devices(backup.run_id, backup.devices)
    backup.devices[1].status, backup.devices[1].changed = DeviceStatus.CHANGED, True
    backup.devices[1].steps[0].changed = True
    backup.finished = "2026-12-07T11:01:00"
    store.finish_run(backup)
    assert last_kept(store)[hosts[1]][0] == DeviceStatus.CHANGED
    assert last_kept(store) == store_devices.last_statuses(store)
    # a run replaced by one kept in a file: the devices it no longer has fall back to
    # their record before it; the missing records of a stored run are filled in
    kept = RunResult(run_id="backup0000001", job="backup", started="2026-12-07T11:00:00",
                     finished="2026-12-07T11:01:00",
                     devices=[DeviceResult(hosts[0], DeviceStatus.UNREACHABLE)])
    assert store.import_run(kept, RunStatus.FAILED, None, hosts[:1], replace=True) is \
        ImportOutcome.REPLACED
    last = last_kept(store)
    assert last[hosts[0]][0] == DeviceStatus.UNREACHABLE
    assert last[hosts[1]][0] == records[1].status  # the big run's record again
    assert last == store_devices.last_statuses(store)
    late = DeviceResult(hosts[2], DeviceStatus.TIMED_OUT)
    late.stored = True
    kept.devices.append(late)
    store.import_run(kept, RunStatus.INTERRUPTED, None, hosts[:3], replace=True)
    assert last_kept(store)[hosts[2]][0] == DeviceStatus.TIMED_OUT
    assert last_kept(store) == store_devices.last_statuses(store)
    store.engine.dispose()


@pytest.fixture
def fleet_of_the_big_run(tmp_path: Path) -> FleetInventory:
    """The big run's devices in three groups, and 30 more no run has recorded."""
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "hosts.yaml").write_text(yaml.safe_dump({
        f"d{i:04d}": {"hostname": f"10.0.{i // 256}.{i % 256}", "groups": [f"g{i % 3}"]}
        for i in range(DEVICES + 30)}), encoding="utf-8")
    (directory / "groups.yaml").write_text(yaml.safe_dump({"g0": {}, "g1": {}, "g2": {}}),
                                           encoding="utf-8")
    (directory / "defaults.yaml").write_text(yaml.safe_dump({"platform": "cisco_ios"}),
                                             encoding="utf-8")
    return load_inventory(directory)


@pytest.mark.parametrize("way", ["look up each device", "read the devices of a status"])
def test_device_search_by_group_and_status_either_way(
        db_url: str, fleet_of_the_big_run: FleetInventory, way: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = big_run(db_url)
    fleet = fleet_of_the_big_run
    if way == "look up each device":
        monkeypatch.setattr(store_devices, "LOOKUPS", 10**6)
    else:
        monkeypatch.setattr(store_devices, "LOOKUPS", 0)
        monkeypatch.setattr(store_devices, "SCAN_PER_LOOKUP", 10**6)
    last = store_devices.last_statuses(store)
    for group in (None, "g1"):
        members = [n for n in fleet.hosts if group is None or n in {
            f.name for f in fleet.group_members(group)}]
        for status in (DeviceStatus.FAILED, DeviceStatus.OK, DeviceStatus.SKIPPED,
                       store_devices.NEVER):
            expected = [n for n in members if (last[n][0] if n in last else
                                               store_devices.NEVER) == status]
            where = store_devices.DeviceFilter(group=group, status=status)
            total, rows = store_devices.device_list(store, fleet, where, 100, 10)
            assert total == len(expected), (group, status)
            assert [r["device"] for r in rows] == expected[10:110], (group, status)
            for row in rows:
                run = row["last_run"]
                assert (run is None) if status == store_devices.NEVER else \
                    run["status"] == status and run["run_id"] in ("big0000000001",
                                                                  "small00000001")
    store.engine.dispose()


def explained(store: ResultsStore, query: Any) -> str:
    """The plan of a query; on PostgreSQL with sorting and scanning the table priced out (a
    table this small is cheaper to scan: whether an index can answer is the question)."""
    dialect: Any = sqlite.dialect() if store.engine.dialect.name == "sqlite" else \
        postgresql.dialect()
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            return "\n".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN " + sql)))
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        return "\n".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql)))


def test_device_search_by_status_reads_along_indexes(db_url: str) -> None:
    store, _ = big_run(db_url)
    for status in (DeviceStatus.FAILED, DeviceStatus.OK):
        shown = explained(store, store_devices.hosts_of_status_query(status))
        assert "ix_device_last_status_host" in shown, shown
        assert "TEMP B-TREE" not in shown and "Sort" not in shown, shown
    # a few devices: each looked up by its name (the names bound as one parameter the
    # database unpacks), never a scan of every device
    dialect = store.engine.dialect
    for status in (True, False):
        query = store_devices.by_name_query(dialect.name, status)
        compiled = query.compile(dialect=dialect)
        values = {"hosts": store_devices._names_param(dialect.name, ["d0001", "d0002"]),
                  "status": "failed"}
        with store.engine.connect() as conn:
            if dialect.name == "sqlite":
                shown = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {compiled}",
                    tuple(values[n] for n in compiled.positiontup or [])))
            else:
                conn.exec_driver_sql("SET enable_seqscan = off")
                shown = "\n".join(str(r[0]) for r in conn.exec_driver_sql(
                    f"EXPLAIN {compiled}", {n: values[n] for n in compiled.params}))
        assert "SEARCH device_last" in shown or "Index" in shown, shown
        assert "SCAN device_last" not in shown and "Seq Scan on device_last" not in shown, \
            shown
        assert set(store_devices._recorded(store, ["d0001", "d0002", "nope"])) == {
            "d0001", "d0002"}
    store.engine.dispose()


class Fetched:
    """Every value the database hands over on an engine (its DBAPI cursors' fetches)."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def engine(self, url: str) -> Engine:
        seen = self.rows

        if url.startswith("sqlite"):
            class SqliteCursor(sqlite3.Cursor):
                def fetchone(self) -> Any:
                    row = super().fetchone()
                    seen.extend([row] if row is not None else [])
                    return row

                def fetchmany(self, size: int | None = 1) -> list[Any]:
                    rows = super().fetchmany(size or self.arraysize)
                    seen.extend(rows)
                    return rows

                def fetchall(self) -> list[Any]:
                    rows = super().fetchall()
                    seen.extend(rows)
                    return rows

            class SqliteConnection(sqlite3.Connection):
                def cursor(self, factory: Any = SqliteCursor) -> Any:
                    return super().cursor(factory)

            return create_engine(url, connect_args={"factory": SqliteConnection})

        class PgCursor(psycopg.Cursor[Any]):
            def fetchone(self) -> Any:
                row = super().fetchone()
                seen.extend([row] if row is not None else [])
                return row

            def fetchmany(self, size: int = 0) -> list[Any]:
                rows = super().fetchmany(size)
                seen.extend(rows)
                return rows

            def fetchall(self) -> list[Any]:
                rows = super().fetchall()
                seen.extend(rows)
                return rows

        return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                             connect_args={"cursor_factory": PgCursor})

    def names(self, wanted: set[str]) -> set[str]:
        """Which of these names were among the values (JSON lists of them included)."""
        found: set[str] = set()

        def look(value: Any) -> None:
            if isinstance(value, str) and value[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            if isinstance(value, str) and value in wanted:
                found.add(value)
            elif isinstance(value, list | tuple):
                for item in value:
                    look(item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    look(key)
                    look(item)

        for row in self.rows:
            look(row)
        return found


def test_the_live_page_of_a_running_run_reads_only_what_it_shows(db_url: str) -> None:
    from runner.web.runs_live import LIVE_DEVICES, live_document

    store = ResultsStore(db_url)
    targets = [f"edge{i:05d}" for i in range(3000)]
    run = RunResult(run_id="live000000001", job="show", started="2026-12-07T10:00:00+00:00",
                    finished=None, devices=[])
    store.start_run(run, targets)
    positions = {h: i for i, h in enumerate(targets)}
    done = [DeviceResult(h, DeviceStatus.FAILED if i % 10 == 0 else DeviceStatus.OK)
            for i, h in enumerate(targets[:1500])]
    for at in range(0, len(done), 500):
        store.record_devices(run.run_id, done[at:at + 500], positions)
    # at work: 40 devices, as the run's process stores them (two of them just recorded)
    at_work = {h: f"2026-12-07T10:0{i % 5}:00+00:00" for i, h in enumerate(
        targets[1498:1540])}
    store.set_working(run.run_id, at_work)
    store.engine.dispose()

    fetched = Fetched()
    store.engine = fetched.engine(db_url)
    document = live_document(store, run.run_id)
    working = [h for h in at_work if h not in {d.host for d in done}]
    assert document["status"] == RunStatus.RUNNING
    assert (document["total"], document["done"]) == (3000, 1500)
    assert [d["host"] for d in document["in_progress"]] == working
    assert document["in_progress_total"] == len(working) == 40
    assert document["waiting"] == 3000 - 1500 - 40
    assert document["summary"][DeviceStatus.FAILED] == 150
    assert len(document["devices"]) == LIVE_DEVICES
    assert [d["host"] for d in document["failed"]] == [h.host for h in done
                                                       if h.status is DeviceStatus.FAILED][:100]
    # what the page shows, and no more: neither the run's 3,000 targets nor its 1,500
    # records (the old document read both on every poll)
    shown = {d["host"] for d in document["devices"]} | set(at_work)
    assert fetched.names(set(targets)) <= shown
    assert len(fetched.rows) <= LIVE_DEVICES + len(at_work) + 20, len(fetched.rows)
    store.engine.dispose()


def test_a_search_finds_what_testing_each_device_finds(
        fleet_of_the_big_run: FleetInventory, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = fleet_of_the_big_run
    for found_first in (1000, 5):  # past that many found, the rest are tested one by one
        monkeypatch.setattr(fleet_module, "MATCHES_FOUND", found_first)
        for needle in ("d0042", "d00", "10.0.1.", "0.1", "d", "", "1\t1", "0\n1", "zzz",
                       "d0629", "10.0.2.117", ".11"):
            expected = [f.name for f in fleet.facts_table()
                        if needle in f.lname or needle in f.lhostname]
            assert [f.name for f in fleet.matching(needle)] == expected, needle


def test_the_migration_fills_device_last_from_the_records(db_url: str) -> None:
    from runner.store.migrate import VERSION_TABLE, upgrade

    store, _ = big_run(db_url)
    store.engine.dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the database as 0010 left it: records, no device_last
        conn.execute(text("DROP TABLE device_last"))
        assert VERSION_TABLE == "runner_alembic_version"
        conn.execute(text("UPDATE runner_alembic_version SET version_num = '0010'"))
    assert upgrade(engine).revision == "0012"
    engine.dispose()
    store = ResultsStore(db_url)
    assert len(last_kept(store)) == DEVICES
    assert last_kept(store) == store_devices.last_statuses(store)
    store.engine.dispose()


def test_the_migration_keeps_the_counts_of_the_runs_already_finished(db_url: str) -> None:
    from runner.store.migrate import upgrade

    store, _ = big_run(db_url)  # the big run finished, the small one running
    expected = counted(store, "big0000000001")
    store.engine.dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the database as 0011 left it: no runs.counts
        conn.execute(text("ALTER TABLE runs DROP COLUMN counts"))
        conn.execute(text("UPDATE runner_alembic_version SET version_num = '0011'"))
    assert upgrade(engine).revision == "0012"
    engine.dispose()
    store = ResultsStore(db_url)
    assert kept_counts(store, "big0000000001") == {s: n for s, n in expected.items() if n}
    assert kept_counts(store, "small00000001") is None
    assert queries.status_counts(store, ["big0000000001"])["big0000000001"] == expected
    store.engine.dispose()
