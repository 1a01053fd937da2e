"""A large run in the store (issue 28), on SQLite and PostgreSQL: its devices are listed
failed first a page at a time along an index (never a sort of the run), GET /api/runs/ID's
pages and `runner show` read only what they show, and the index's expression is the one the
queries order by."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql, sqlite

from runner.records import DeviceResult, RunResult, StepResult
from runner.store import queries
from runner.store.results import FAILED_FIRST_SQL, ResultsStore
from runner.vocab import DeviceStatus, StepKind

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
    query = queries.device_rows_query("big0000000001", status, 100, offset)
    dialect: Any = sqlite.dialect() if store.engine.dialect.name == "sqlite" else \
        postgresql.dialect()
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            return "\n".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN " + sql)))
        # a table this small is cheaper to sort than to index: ask whether the index can
        # give the order at all (sorting and scanning the table priced out)
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        return "\n".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql)))


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
