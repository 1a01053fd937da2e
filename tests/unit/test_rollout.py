"""The rollout and record-keeping module on its own: batches, the stop rule, cancel, lost
devices and exactly one record per device, driven by a scripted executor (the real ones
are tested against the simulator in tests/sim)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from runner.errors import BrokerLost, WorkerLost
from runner.execution.executor import CancelFlag, RecordSink
from runner.execution.rollout import batches, run_rollout
from runner.job.spec import JobSpec
from runner.records import DeviceResult, RestorePlan
from runner.vocab import DeviceStatus, Engine

HOSTS = [f"d{i}" for i in range(10)]
Script = Callable[[list[str], RecordSink, CancelFlag], None]


def job(**rollout: object) -> JobSpec:
    return JobSpec.model_validate({"name": "t", "steps": [{"command": "show clock"}],
                                   **({"rollout": rollout} if rollout else {})})


def ok(host: str) -> DeviceResult:
    return DeviceResult(host=host, status=DeviceStatus.OK)


class Scripted:
    """An executor whose behaviour per batch is a function: what a real one reports."""

    engine = Engine.LOCAL

    def __init__(self, script: Script) -> None:
        self.script = script
        self.batches: list[list[str]] = []

    def run(self, hosts: list[str], sink: RecordSink, cancel: CancelFlag) -> None:
        self.batches.append(hosts)
        self.script(hosts, sink, cancel)

    def close(self) -> None:
        pass

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def all_ok(hosts: list[str], sink: RecordSink, _cancel: CancelFlag) -> None:
    for host in hosts:
        sink.started(host)
        sink.finished(ok(host))


def test_batches_by_count_and_share() -> None:
    assert batches(HOSTS, None) == [HOSTS]
    assert batches(HOSTS, job(batch_size=4).rollout) == [HOSTS[:4], HOSTS[4:8], HOSTS[8:]]
    assert batches(HOSTS, job(batch_size="25%").rollout) == [
        HOSTS[:3], HOSTS[3:6], HOSTS[6:9], HOSTS[9:]]
    assert batches([], job(batch_size=2).rollout) == [[]]


def test_a_failing_batch_stops_the_rollout_and_the_rest_is_skipped() -> None:
    def second_fails(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        for host in hosts:
            status = DeviceStatus.FAILED if host == "d3" else DeviceStatus.OK
            sink.finished(DeviceResult(host=host, status=status))

    executor = Scripted(second_fails)
    seen: list[DeviceResult] = []
    records = run_rollout(job(batch_size=2, max_fail_percentage=0), HOSTS, executor,
                          seen.append)
    assert executor.batches == [["d0", "d1"], ["d2", "d3"]]  # nothing after the failure
    assert [r.host for r in records] == HOSTS and sorted(r.host for r in seen) == HOSTS
    assert [r.status for r in records[4:]] == [DeviceStatus.SKIPPED] * 6
    assert {r.error_class for r in records[4:]} == {"RolloutStopped"}
    assert records[4].error == ("rollout stopped: 1 of 4 devices failed "
                                "(25% > max_fail_percentage 0)")


def test_the_stop_rule_allows_failures_up_to_the_bound() -> None:
    def one_fails(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        for host in hosts:
            sink.finished(DeviceResult(host=host, status=DeviceStatus.TIMED_OUT
                                       if host == "d0" else DeviceStatus.OK))

    records = run_rollout(job(batch_size=5, max_fail_percentage=20), HOSTS,
                          Scripted(one_fails))
    assert [r.status for r in records].count(DeviceStatus.OK) == 9  # 1 of 5 = 20%: go on


def test_first_record_wins_and_strangers_are_ignored() -> None:
    def twice(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        for host in hosts:
            sink.finished(ok(host))
            sink.finished(DeviceResult(host=host, status=DeviceStatus.FAILED))
        sink.finished(ok("not-in-this-run"))

    seen: list[DeviceResult] = []
    records = run_rollout(job(), HOSTS, Scripted(twice), seen.append)
    assert [r.status for r in records] == [DeviceStatus.OK] * 10
    assert [r.host for r in seen] == HOSTS  # each once, to the callback too


def test_lost_devices_say_whether_they_were_in_progress() -> None:
    def loses_half(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.started("d0")
        sink.finished(ok("d1"))
        sink.lost(hosts, WorkerLost("worker w1 went silent"))  # d1 keeps its record

    records = {r.host: r for r in run_rollout(job(), HOSTS[:3], Scripted(loses_half))}
    assert records["d1"].status is DeviceStatus.OK
    assert (records["d0"].status, records["d0"].error_class) == (DeviceStatus.FAILED,
                                                                 "WorkerLost")
    assert records["d0"].error == ("worker w1 went silent; the device was in progress: its "
                                   "configuration may be partly changed")
    assert records["d2"].error == ("worker w1 went silent; the device had not started: it "
                                   "was not contacted")

    def broker_gone(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.lost(hosts, BrokerLost("Redis restarted"), progress_known=False)

    gone = run_rollout(job(), HOSTS[:2], Scripted(broker_gone))
    assert [(r.status, r.error_class, r.error) for r in gone] == [
        (DeviceStatus.FAILED, "BrokerLost", "Redis restarted")] * 2


def test_an_executor_that_forgets_a_device_does_not_lose_its_record() -> None:
    def forgets(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        for host in hosts[1:]:
            sink.finished(ok(host))

    records = run_rollout(job(), HOSTS[:3], Scripted(forgets))
    assert (records[0].status, records[0].error_class) == (DeviceStatus.FAILED, "WorkerLost")
    assert "returned without reporting" in (records[0].error or "")


def test_cancel_interrupts_in_flight_devices_and_skips_the_rest() -> None:
    cancel = threading.Event()

    def cancelled_midway(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.finished(ok(hosts[0]))
        sink.started(hosts[1])
        cancel.set()

    executor = Scripted(cancelled_midway)
    records = run_rollout(job(batch_size=4), HOSTS, executor, cancel=cancel)
    assert len(executor.batches) == 1
    by = {r.host: (r.status, r.error_class) for r in records}
    assert by["d0"] == (DeviceStatus.OK, None)
    assert by["d1"] == (DeviceStatus.FAILED, "Interrupted")
    assert all(by[h] == (DeviceStatus.SKIPPED, "Interrupted") for h in HOSTS[2:])


def test_ctrl_c_inside_an_executor_still_records_every_device() -> None:
    def interrupted(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.finished(ok(hosts[0]))
        sink.started(hosts[1])
        raise KeyboardInterrupt

    seen: list[DeviceResult] = []
    with pytest.raises(KeyboardInterrupt):
        run_rollout(job(), HOSTS[:4], Scripted(interrupted), seen.append)
    assert [(r.host, r.status) for r in seen] == [
        ("d0", DeviceStatus.OK), ("d1", DeviceStatus.FAILED), ("d2", DeviceStatus.SKIPPED),
        ("d3", DeviceStatus.SKIPPED)]


def test_a_bug_in_an_engine_still_records_every_device() -> None:
    def crashes(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.finished(ok(hosts[0]))
        sink.started(hosts[1])
        raise RuntimeError("engine bug")

    seen: list[DeviceResult] = []
    with pytest.raises(RuntimeError):
        run_rollout(job(), HOSTS[:3], Scripted(crashes), seen.append)
    assert [(r.host, r.status, r.error_class) for r in seen] == [
        ("d0", DeviceStatus.OK, None), ("d1", DeviceStatus.FAILED, "Interrupted"),
        ("d2", DeviceStatus.FAILED, "Interrupted")]
    assert "runner stopped on an internal error (RuntimeError: engine bug)" in (
        seen[1].error or "")


def test_an_engine_that_gathers_records_asks_the_tally_what_is_missing() -> None:
    """The Celery dispatcher's way: records come from several places (a task's result, the
    run ledger, the finished stream), late copies included; which devices still lack one
    is for the run's Tally to say, in the run and in the restore pass of a stopped one."""
    spec = JobSpec.model_validate({
        "name": "t", "steps": [{"config": {"lines": ["ntp server 10.9.9.9"],
                                           "rollback": True}}],
        "rollout": {"batch_size": 2, "max_fail_percentage": 0, "on_stop": "rollback"}})
    asked: list[list[str]] = []

    def changed(host: str) -> DeviceResult:
        return DeviceResult(host=host, status=DeviceStatus.CHANGED, changed=True,
                            restore=RestorePlan(["no ntp server 10.9.9.9"], "k", "a"))

    def gathers(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        sink.finished(changed(hosts[0]))
        asked.append(sink.missing(hosts))
        sink.finished(DeviceResult(host=hosts[0], status=DeviceStatus.FAILED))  # a late copy
        for host in sink.missing(hosts):
            sink.finished(DeviceResult(host=host, status=DeviceStatus.FAILED)
                          if host == "d3" else changed(host))
        asked.append(sink.missing(hosts))

    def restores(hosts: list[str], sink: RecordSink, _c: CancelFlag) -> None:
        asked.append(sink.missing(hosts))
        sink.finished(DeviceResult(host=hosts[0], status=DeviceStatus.ROLLED_BACK))
        asked.append(sink.missing(hosts))
        sink.lost(sink.missing(hosts), WorkerLost("worker w2 went silent"))
        asked.append(sink.missing(hosts))

    records = run_rollout(spec, HOSTS[:4], Scripted(gathers),
                          restorer=lambda _plans: Scripted(restores))
    assert asked == [["d1"], [], ["d3"], [], ["d0", "d1", "d2"], ["d1", "d2"], []]
    assert [(r.host, r.status, r.error_class) for r in records] == [
        ("d0", DeviceStatus.ROLLED_BACK, "RolloutStopped"),
        ("d1", DeviceStatus.FAILED, "RollbackFailed"),
        ("d2", DeviceStatus.FAILED, "RollbackFailed"),
        ("d3", DeviceStatus.FAILED, None)]
    assert "worker w2 went silent" in (records[1].error or "")
