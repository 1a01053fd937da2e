"""The run table's threshold: up to 50 devices every one is listed; past it, every device
that did not end ok or changed, and the rest counted per status. Live progress's counts."""

from __future__ import annotations

import io

from runner.job.output import FULL_TABLE_UP_TO, Progress, run_table
from runner.records import DeviceResult, RunResult
from runner.vocab import DeviceStatus


def fleet(n: int) -> RunResult:
    statuses = [DeviceStatus.FAILED, DeviceStatus.SKIPPED, DeviceStatus.CHANGED]
    devices = [DeviceResult(f"r{i:03d}", statuses[i] if i < 3 else DeviceStatus.OK,
                            error="boom" if i == 0 else None,
                            error_class="CommandFailed" if i == 0 else None)
               for i in range(n)]
    return RunResult("abc123", "audit", "2026-11-23T02:30:00", None, devices)


def hosts(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.startswith("r0")]


def test_up_to_the_threshold_every_device_is_listed() -> None:
    text = run_table(fleet(FULL_TABLE_UP_TO))
    assert len(hosts(text)) == FULL_TABLE_UP_TO and "more not listed" not in text


def test_past_the_threshold_the_failures_are_listed_and_the_rest_counted() -> None:
    text = run_table(fleet(FULL_TABLE_UP_TO + 1))
    assert hosts(text) == ["r000", "r001"]
    rows = [line.split(None, 4) for line in text.splitlines() if line.startswith("r0")]
    assert rows == [["r000", "failed", "no", "0.0s", "CommandFailed: boom"],
                    ["r001", "skipped", "no", "0.0s"]]
    assert f"... and {FULL_TABLE_UP_TO - 1} more not listed (1 changed, "\
           f"{FULL_TABLE_UP_TO - 2} ok; --all lists every device)" in text
    assert text.splitlines()[-1] == f"ok {FULL_TABLE_UP_TO - 2}  changed 1  failed 1  skipped 1"
    assert len(hosts(run_table(fleet(FULL_TABLE_UP_TO + 1), show_all=True))) == 51


def test_a_large_run_with_no_failure_says_so() -> None:
    run = fleet(80)
    for d in run.devices[:2]:
        d.status, d.error, d.error_class = DeviceStatus.OK, None, None
    text = run_table(run)
    assert hosts(text) == []
    assert "every device ended ok or changed\n... and 80 more not listed (1 changed, 79 ok" \
        in text


def test_progress_counts_each_device_once_and_a_later_record_replaces_its_status() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream)
    progress(DeviceResult("r1", DeviceStatus.FAILED, error="boom"))
    progress(DeviceResult("r2", DeviceStatus.OK))
    progress(DeviceResult("r1", DeviceStatus.OK))  # e.g. a redelivered shard's record
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/3] done 1  failed 1  remaining 2  r1: failed  boom"
    assert lines[2] == "[2/3] done 2  failed 0  remaining 1  r1: ok"
    assert progress.counts == {DeviceStatus.OK: 2, DeviceStatus.FAILED: 0}
    progress(DeviceResult("r3", DeviceStatus.CHANGED))
    assert progress.bar().split("]", 1)[1].split("  ")[:3] == [" 3/3", "ok 2", "changed 1"]


def test_progress_counts_as_failed_what_did_not_work_as_records_replace_each_other() -> None:
    """The failed count is kept as records come (not summed per line): a drift found is
    not a failure, and a later record of a device moves it between the counts."""
    stream = io.StringIO()
    progress = Progress(4, stream)
    for record in (DeviceResult("r1", DeviceStatus.NON_COMPLIANT),
                   DeviceResult("r2", DeviceStatus.UNREACHABLE, error="refused"),
                   DeviceResult("r3", DeviceStatus.SKIPPED),
                   DeviceResult("r2", DeviceStatus.CHANGED),
                   DeviceResult("r1", DeviceStatus.TIMED_OUT),
                   DeviceResult("r4", DeviceStatus.OK)):
        progress(record)
    failed = [line.split("failed ")[1].split()[0] for line in stream.getvalue().splitlines()]
    assert failed == ["0", "1", "2", "1", "2", "2"]
    assert stream.getvalue().splitlines()[1] == \
        "[2/4] done 2  failed 1  remaining 2  r2: unreachable  refused"
