"""A device record's row, on SQLite and on a real PostgreSQL server: the results store hands
sqlite3 and psycopg its values straight (issue 28: SQLAlchemy's processing per row cost
more than the insert); every column, the steps' JSON text included, is what SQLAlchemy's
insert(devices) of the record's to_json() stores, and reads back as the record it was. The
run's in-progress list rides in its records' transaction and reads as it did alone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import String, cast, insert, select

from runner.lab.netns import wait_for
from runner.records import DeviceResult, RunResult, StepResult
from runner.store import results
from runner.store.queries import run_records
from runner.store.results import RecordWriter, ResultsStore, devices, record_of
from runner.store.runlinks import working
from runner.vocab import DeviceStatus, StepKind

BIG = "".join(f"interface Gi0/{i}\n description \"link\" {i} ünïcødé 東京 \t\\ end\n!\n"
              for i in range(20_000))  # ~1 MB of config


def corpus() -> list[DeviceResult]:
    """Records with every field's type, None where it may be, quotes, backslashes,
    control characters, text beyond ASCII and the BMP, a large output."""
    parsed = {"version": "15.2(4)M7", "uptime_s": 1_814_400, "load": 0.1 + 0.2,
              "big": 2**70, "neg": -1.5e-300, "up": True, "down": False, "none": None,
              "list": [1, "two", [3.0], {}], "ключ": "значение", "emoji": "\U0001f680",
              "": "empty key", "ctl": "\x00\x01\x1f\x7f"}
    return [
        DeviceResult(
            host="rtr-ü-東京-01", status=DeviceStatus.CHANGED, changed=True,
            duration_s=0.1 + 0.2, error="line 1\nline \"2\" \\ ✓", error_class="Weird",
            attempts=3, driver="asyncssh", worker="w1@host-é", started="2026-12-08T00:00:00"
            ".123+00:00", finished="2026-12-08T00:00:01.456+00:00",
            steps=[StepResult(name="show version", kind=StepKind.COMMAND,
                              output="Cisco IOS\r\n\tuptime \u2028 \U0001f680\n",
                              parsed=parsed),
                   StepResult(name="show running-config", kind=StepKind.COMMAND,
                              output=BIG),
                   StepResult(name="push", kind=StepKind.CONFIG, output="", diff="+ x\n- y",
                              changed=True, digest="ab" * 32, error=None),
                   StepResult(name="post", kind=StepKind.COMMAND, failed=True,
                              error="no \"such\" command", not_run="not evaluated (dry run)",
                              parsed=[])]),
        DeviceResult(host="bare", status=DeviceStatus.OK),  # every default: None, 0, []
        DeviceResult(host="r'; DROP TABLE devices; --", status=DeviceStatus.UNREACHABLE,
                     duration_s=12.0, error="connection refused", error_class="ConnectFailed",
                     attempts=2, started="2026-12-08T00:00:02.000+00:00",
                     finished="2026-12-08T00:00:03.000+00:00"),
    ]


def stored(store: ResultsStore, run_id: str) -> dict[str, dict[str, Any]]:
    """Each host's row of the run as the database holds it, steps as their JSON text."""
    columns = [c for c in devices.c if c.name not in ("id", "run_id", "steps")]
    with store.engine.connect() as conn:
        return {row.host: {**row._mapping} for row in conn.execute(
            select(*columns, cast(devices.c.steps, String).label("steps_text"),
                   devices.c.steps).where(devices.c.run_id == run_id))}


def a_run(store: ResultsStore, run_id: str, hosts: list[str]) -> None:
    store.start_run(RunResult(run_id=run_id, job="rows", started="2026-12-08T00:00:00.000"
                              "+00:00", finished=None, devices=[]), hosts)


def test_a_record_is_stored_as_sqlalchemys_insert_stored_it_and_reads_back_whole(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(db_url)
    records = corpus()
    hosts = [d.host for d in records]
    places = {h: i for i, h in enumerate(hosts) if i != 1}  # one record without a place
    a_run(store, "d1rec7000001", hosts)
    a_run(store, "d1rec7000002", hosts)
    a_run(store, "d1rec7000003", hosts)
    store.record_devices("d1rec7000001", records, places)  # the driver's executemany
    with monkeypatch.context() as patch:  # the path of drivers runner does not know
        patch.setattr(results, "_DIRECT", {})
        store.record_devices("d1rec7000002", records, places)
    with store.engine.begin() as conn:  # what insert(devices) of to_json() stores
        conn.execute(insert(devices), [
            {"run_id": "d1rec7000003", "position": places.get(d.host),
             **{k: v for k, v in d.to_json().items() if k != "compliance"}}
            for d in records])
    direct, generic, reference = (stored(store, f"d1rec700000{i}") for i in (1, 2, 3))
    assert direct == reference
    assert generic == reference
    for d in records:
        row = direct[d.host]
        assert row["position"] == places.get(d.host)
        assert isinstance(row["changed"], bool) and isinstance(row["status"], str)
        back = record_of({k: v for k, v in row.items() if k != "steps_text"})
        assert back.to_json() == d.to_json()  # every field, every step, read back whole
    read = list(run_records(store, "d1rec7000001"))
    assert sorted(r.host for r in read) == sorted(hosts)
    assert next(r for r in read if r.host == records[0].host).steps[1].output == BIG


def test_the_in_progress_list_rides_with_the_records_and_alone(db_url: str) -> None:
    store = ResultsStore(db_url)
    records = corpus()
    hosts = [d.host for d in records]
    a_run(store, "d1rec7000004", hosts)
    writer = RecordWriter(store, "d1rec7000004", hosts)
    for host in hosts:
        writer.started(host)
    wait_for(lambda: sorted(working(store, "d1rec7000004")) == sorted(hosts), 30,
             "every device at work")  # no record yet: the list stored alone
    writer.put(records[0])
    writer.put(records[2])
    # the list without them, stored in the transaction of their records
    wait_for(lambda: list(working(store, "d1rec7000004")) == [hosts[1]], 30,
             "two records and the list without them")
    assert sorted(stored(store, "d1rec7000004")) == sorted([hosts[0], hosts[2]])
    writer.put(records[1])
    assert writer.close() == set()
    assert working(store, "d1rec7000004") == {}
    assert sorted(stored(store, "d1rec7000004")) == sorted(hosts)
