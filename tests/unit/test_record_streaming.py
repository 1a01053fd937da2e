"""A run's records stream (issue 28): a record the store holds is kept in memory only as its
summary, a run's JSON is written a device at a time exactly as one json.dumps would, and a
run kept in a file while the database was away never overwrites the full records the
database took before it went away."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.records import DeviceResult, RestorePlan, RunResult, StepResult
from runner.store import results, unsaved
from runner.store.queries import document_chunks, run_chunks, run_document, run_links, run_records
from runner.store.results import BATCH_RECORDS, KEEP, RecordWriter, ResultsStore, Working
from runner.vocab import DeviceStatus, RunStatus, StepKind

T0 = "2026-12-07T08:00:00.000+00:00"


def show(host: str, text: str = "x" * 2000) -> DeviceResult:
    return DeviceResult(host=host, status=DeviceStatus.OK, duration_s=0.25, driver="asyncssh",
                        started=T0, finished=T0, steps=[
                            StepResult(name="show", kind=StepKind.COMMAND,
                                       output=f"{host}\n{text}", parsed={"host": host})])


def push(host: str, *, restore: bool = False) -> DeviceResult:
    record = show(host)
    record.status, record.changed = DeviceStatus.CHANGED, True
    record.steps.append(StepResult(name="ntp", kind=StepKind.CONFIG, output="ntp server 1",
                                   diff="+ntp server 1", changed=True))
    if restore:
        record.restore = RestorePlan(["no ntp server 1"], "a", "b")
    return record


def test_a_stored_record_keeps_only_what_the_end_of_a_run_reads() -> None:
    record = push("r1")
    record.slim()
    assert record.stored and [s.kind for s in record.steps] == [StepKind.CONFIG]
    assert record.steps[0].diff == "+ntp server 1"  # notifications and --diff read it
    assert (record.status, record.changed, record.duration_s, record.driver) == \
        (DeviceStatus.CHANGED, True, 0.25, "asyncssh")
    assert record.to_json()["stored"] is True
    assert DeviceResult.from_json(record.to_json()).stored
    # a rollback may amend it, or the run's backup commit reads it: kept whole
    for whole in (push("r2", restore=True), show("r3")):
        if whole.host == "r3":
            whole.backup = "hostname r3"
        whole.slim()
        assert not whole.stored and len(whole.steps) == (2 if whole.host == "r2" else 1)
    # a backup step's record whose text went to the run's backups: its backup step kept
    # (the run's commit marks it changed), its command steps dropped
    backed_up = show("r6")
    backed_up.steps.append(StepResult(name="backup", kind=StepKind.BACKUP))
    backed_up.slim()
    assert backed_up.stored and [s.kind for s in backed_up.steps] == [StepKind.BACKUP]
    # nothing to drop: the record is the same as before, and says nothing new
    config_only = push("r4")
    config_only.steps = config_only.steps[1:]
    config_only.slim()
    assert not config_only.stored and "stored" not in config_only.to_json()
    assert "stored" not in show("r5").to_json()


@pytest.mark.parametrize("records", [
    [],
    [{"host": "r1", "steps": []}],
    [{"host": "r1", "n": 1.5, "steps": [{"output": "a\nb\t\"c\" \u00e9 \u0000"}]},
     {"host": "r2", "parsed": {"x": [1, {"y": None}], "e": {}, "l": []}}],
])
def test_a_streamed_document_is_the_text_json_dumps_makes(records: list[dict[str, Any]]) \
        -> None:
    document = {"run_id": "a", "summary": {"ok": 1}, "devices": [], "after": [1, 2],
                "notifications": []}
    streamed = "".join(document_chunks(document, iter(records)))
    assert streamed == json.dumps({**document, "devices": records}, indent=2)


def _store(tmp_path: Path, name: str = "runner.db") -> ResultsStore:
    return ResultsStore(f"sqlite:///{tmp_path / name}")


def _started(store: ResultsStore, run_id: str, hosts: list[str]) -> RunResult:
    run = RunResult(run_id=run_id, job="audit", started=T0, finished=None, devices=[])
    store.start_run(run, hosts)
    return run


def test_the_writer_slims_what_it_stored_and_the_store_has_it_whole(db_url: str) -> None:
    store = ResultsStore(db_url)
    hosts = [f"r{i}" for i in range(7)]
    run = _started(store, "c0ffee000001", hosts)
    run.devices = [push(h, restore=True) if h == "r3" else show(h) for h in hosts]
    whole = [json.dumps(d.to_json()) for d in run.devices]
    writer = RecordWriter(store, run.run_id, hosts)
    for device in reversed(run.devices):
        writer.put(device)
    assert writer.close() == set()
    assert [d.stored for d in run.devices] == [h != "r3" for h in hosts]
    assert all(not d.steps for d in run.devices if d.stored)
    run.finished = T0
    store.finish_run(run)
    # read back a page at a time, in target order, as get_run reads them all
    back = [json.dumps(d.to_json()) for d in run_records(store, run.run_id, page=2)]
    assert back == whole
    assert [d.to_json() for d in store.get_run(run.run_id)[1].devices] == \
        [json.loads(w) for w in whole]
    # the streamed `runner show --json` is the document built whole, to the character
    row, stored = store.get_run(run.run_id)
    assert "".join(run_chunks(store, run.run_id)) == \
        json.dumps(run_document(row, stored, run_links(store, row)), indent=2)
    assert "".join(run_chunks(store, run.run_id, account=False)) == \
        json.dumps(stored.to_json(), indent=2)


class SlowStore(ResultsStore):
    """A real store whose batches take a while, or wait for `go` (a database slower than
    the devices, or one that stopped answering); it notes the records waiting meanwhile."""

    def __init__(self, url: str, delay: float) -> None:
        super().__init__(url)
        self.delay, self.go = delay, threading.Event()
        self.writer: RecordWriter | None = None
        self.waiting: list[int] = []

    def record_devices(self, run_id: str, devices: list[DeviceResult],
                       positions: dict[str, int] | None = None,
                       working: Working = KEEP) -> None:
        assert self.writer is not None
        self.waiting.append(self.writer.pending[0])
        if self.delay:
            time.sleep(self.delay)  # the slow database itself, not a wait for something
        else:
            self.go.wait(30)
        super().record_devices(run_id, devices, positions, working)


def slow_writer(url: str, run_id: str, hosts: list[str], delay: float
                ) -> tuple[SlowStore, RecordWriter]:
    """A run started on a SlowStore and its record writer."""
    store = SlowStore(url, delay)
    store.writer = RecordWriter(store, _started(store, run_id, hosts).run_id, hosts)
    return store, store.writer


def test_a_slow_database_slows_the_run_instead_of_growing_its_memory(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "BATCH_RECORDS", 10)
    monkeypatch.setattr(results, "PENDING_RECORDS", 40)
    hosts = [f"r{i}" for i in range(400)]
    store, writer = slow_writer(db_url, "c0ffee000003", hosts, delay=0.02)
    for host in hosts:  # as fast as an engine could hand them over
        writer.put(show(host, "y" * 100))
    assert writer.close() == set()
    assert max(store.waiting) <= 40  # never more than the bound waiting to be stored
    assert len(store.waiting) >= 400 // 10  # batches of at most BATCH_RECORDS
    assert [d.host for d in run_records(store, "c0ffee000003")] == hosts  # nothing lost


def test_a_database_that_stopped_answering_does_not_stop_the_run(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound holds back an engine only while the writer makes progress: stuck on one
    # batch past STALLED_S, records wait in memory and the run goes on (as when the
    # database is away), then are stored when it answers.
    monkeypatch.setattr(results, "BATCH_RECORDS", 5)
    monkeypatch.setattr(results, "PENDING_RECORDS", 10)
    monkeypatch.setattr(results, "STALLED_S", 0.5)
    hosts = [f"r{i}" for i in range(60)]
    store, writer = slow_writer(db_url, "c0ffee000004", hosts, delay=0)
    for host in hosts:
        writer.put(show(host, "z"))
    assert writer.pending[0] > 10  # past the bound: the writer is stuck
    store.go.set()
    assert writer.close() == set()
    assert [d.host for d in run_records(store, "c0ffee000004")] == hosts


def test_records_without_a_place_come_first_in_every_page(db_url: str) -> None:
    store = ResultsStore(db_url)
    run = _started(store, "c0ffee000002", ["a", "b", "c", "d", "e"])
    store.record_devices(run.run_id, [show("z1"), show("z2"), show("z3")])  # no positions
    store.record_devices(run.run_id, [show(h) for h in "edcba"],
                         {h: i for i, h in enumerate("abcde")})
    expected = [d.host for d in store.get_run(run.run_id)[1].devices]
    assert expected == ["z1", "z2", "z3", "a", "b", "c", "d", "e"]
    for page in (1, 2, 3, 500):
        assert [d.host for d in run_records(store, run.run_id, page=page)] == expected


def test_a_kept_run_never_overwrites_the_records_the_database_took(tmp_path: Path) -> None:
    """The database took r1 and r2, then went away: the run's file keeps r1 and r2 only
    as summaries (`"stored": true`) and r3 whole. Importing it stores r3 and leaves r1
    and r2 whole; into a database that never had them, the summaries fill in."""
    store = _store(tmp_path)
    hosts = ["r1", "r2", "r3"]
    run = _started(store, "c0ffee000003", hosts)
    run.devices = [show(h) for h in hosts]
    store.record_devices(run.run_id, run.devices[:2], {h: i for i, h in enumerate(hosts)})
    for device in run.devices[:2]:
        device.slim()
    run.finished = T0
    path = unsaved.keep(run, RunStatus.OK, None, hosts, tmp_path / "unsaved", "db away")
    assert path is not None
    kept = json.loads(path.read_text(encoding="utf-8"))["run"]["devices"]
    assert [d.get("stored", False) for d in kept] == [True, True, False]
    loaded, status, error, targets = unsaved.load(path)
    store.import_run(loaded, status, error, targets)
    back = {d.host: d for d in store.get_run(run.run_id)[1].devices}
    assert [back[h].steps[0].output for h in hosts] == [f"{h}\n{'x' * 2000}" for h in hosts]
    assert not any(d.stored for d in back.values())

    elsewhere = _store(tmp_path, "other.db")
    elsewhere.import_run(*unsaved.load(path))
    row, other = elsewhere.get_run(run.run_id)
    assert row["summary"]["ok"] == 3
    assert [(d.host, len(d.steps)) for d in other.devices] == [("r1", 0), ("r2", 0), ("r3", 1)]


class _CountingStore(ResultsStore):
    """The real store, counting the transactions records arrive in."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[int] = []

    def record_devices(self, run_id: str, batch: list[DeviceResult],
                       positions: dict[str, int] | None = None,
                       working: Working = KEEP) -> None:
        self.batches.append(len(batch))
        super().record_devices(run_id, batch, positions, working)


def test_the_writer_stores_records_that_come_together_in_few_bounded_batches(
        tmp_path: Path) -> None:
    store = _CountingStore(f"sqlite:///{tmp_path / 'runner.db'}")
    hosts = [f"r{i:04d}" for i in range(2 * BATCH_RECORDS + 200)]
    run = _started(store, "c0ffee000003", hosts)
    writer = RecordWriter(store, run.run_id, hosts)
    for host in hosts:
        writer.started(host)
        writer.put(show(host, "x" * 100))
    assert writer.close() == set() and writer.error is None
    assert sum(store.batches) == len(hosts)
    assert max(store.batches) <= BATCH_RECORDS  # a batch is bounded ...
    assert len(store.batches) < len(hosts) // 10  # ... and not a transaction per record
    assert sorted(d.host for d in store.get_run(run.run_id)[1].devices) == hosts
