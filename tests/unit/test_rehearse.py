"""Rehearsal's parts that need no device: the schedule's `rehearse:` field (names, `required`,
its JSON Schema), the verdict on a rehearsal (ok and changed pass; a failed check, a
rollback, a skipped or unreachable device does not; a device a blackout held is no
failure), the evidence kept per device (the failed step, the twin's diff), how it reads to
the engineer, the exit code of a refused run, and `runner run`'s options that go together.
The rehearsals themselves run on the simulator (tests/sim/test_rehearse.py) and on FRR
(tests/lab/test_rehearse.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from runner.errors import JobError
from runner.job.load import load_job
from runner.job.output import rehearsal_text
from runner.job.rehearse import DeviceRehearsal, Rehearsal
from runner.records import DeviceResult, RunResult, StepResult
from runner.vocab import DeviceStatus, RunStatus, StepKind
from tests.support.jobs import write_job

SCHEDULE = {"cron": "30 2 * * *"}


def job(tmp_path: Path, rehearse: object) -> Path:
    return write_job(tmp_path, "change", hosts=["r1"], schedule={**SCHEDULE,
                                                                  "rehearse": rehearse},
                     steps=[{"config": {"lines": ["ntp server 192.0.2.1"]}}])


@pytest.mark.parametrize("value, twin", [("twin", "twin"), ("lab-2.night_a", "lab-2.night_a"),
                                         ("required", "twin")])
def test_a_schedule_names_its_twin_or_requires_the_default(tmp_path: Path, value: str,
                                                           twin: str) -> None:
    schedule = load_job(job(tmp_path, value)).spec.schedule
    assert schedule is not None and schedule.twin() == twin
    assert schedule.twin("night") == ("night" if value == "required" else value)


@pytest.mark.parametrize("value", ["", "-twin", "my twin", "a/b", 3, ["twin"], "x" * 101])
def test_a_bad_twin_name_is_an_error_at_its_line(tmp_path: Path, value: object) -> None:
    with pytest.raises(JobError) as caught:
        load_job(job(tmp_path, value))
    assert caught.value.field is not None and "rehearse" in caught.value.field
    assert caught.value.line is not None


def test_the_json_schema_has_the_field() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "schema"], capture_output=True,
                          text=True, check=True)
    schema = json.loads(proc.stdout)
    field = schema["$defs"]["ScheduleSpec"]["properties"]["rehearse"]
    assert "required" in field["description"]
    good = {"name": "x", "steps": [{"command": "show"}],
            "schedule": {**SCHEDULE, "rehearse": "twin-1"}}
    jsonschema.validate(good, schema)
    jsonschema.validate({**good, "schedule": {**SCHEDULE, "rehearse": "required"}}, schema)
    with pytest.raises(jsonschema.ValidationError):  # an editor flags it as it is typed
        jsonschema.validate({**good, "schedule": {**SCHEDULE, "rehearse": "my twin"}},
                            schema)


def record(host: str, status: DeviceStatus, *steps: StepResult,
           error_class: str | None = None) -> DeviceResult:
    return DeviceResult(host, status, changed=status is DeviceStatus.CHANGED,
                        error_class=error_class, error="it said so" if error_class else None,
                        steps=list(steps))


CONFIG = StepResult("ntp", StepKind.CONFIG, diff="+ntp server 192.0.2.1", changed=True)


def rehearsal(*devices: DeviceResult, status: RunStatus = RunStatus.OK) -> Rehearsal:
    return Rehearsal("twin", "abc123", "sqlite:///t.db", "2026-12-07T02:30:00",
                     "2026-12-07T02:31:00", [DeviceRehearsal.of(d) for d in devices],
                     str(status))


def test_ok_and_changed_pass_anything_else_fails() -> None:
    assert rehearsal(record("r1", DeviceStatus.CHANGED, CONFIG),
                     record("r2", DeviceStatus.OK)).passed
    held = record("r3", DeviceStatus.SKIPPED, error_class="BlackedOut")
    assert rehearsal(record("r1", DeviceStatus.OK), held).passed  # held out: no failure
    for status in DeviceStatus:
        if status not in (DeviceStatus.OK, DeviceStatus.CHANGED):
            assert not rehearsal(record("r1", DeviceStatus.OK),
                                 record("r2", status, error_class="X")).passed, status
    assert not rehearsal().passed  # nothing rehearsed proves nothing
    assert not rehearsal(record("r1", DeviceStatus.OK), status=RunStatus.INTERRUPTED).passed


def test_the_evidence_names_the_failed_check_and_keeps_the_twins_diff() -> None:
    check = StepResult("ospf after", StepKind.COMMAND, failed=True, error="check is false")
    back = StepResult("rollback", StepKind.ROLLBACK, output="no ntp server 192.0.2.1")
    failed = rehearsal(record("r1", DeviceStatus.ROLLED_BACK, CONFIG, check, back,
                              error_class="CheckFailed"),
                       record("r2", DeviceStatus.SKIPPED, error_class="RolloutStopped"),
                       record("r3", DeviceStatus.SKIPPED, error_class="RolloutStopped"),
                       status=RunStatus.FAILED)
    r1 = failed.devices[0]
    assert (r1.failed_check, r1.error_class) == ("ospf after", "CheckFailed")
    assert r1.diff == "# ntp\n+ntp server 192.0.2.1"
    assert failed.reason() == ("the rehearsal on twin twin failed: r1 rolled_back "
                               "(CheckFailed in 'ospf after') and 2 more device(s)")
    data = failed.to_json()
    assert data["passed"] is False and data["summary"]["skipped"] == 2
    text = rehearsal_text({**data, "reset": "synced with backups commit 0123456789ab"})
    lines = text.splitlines()
    assert lines[0] == "rehearsal on twin twin: FAILED: production was NOT contacted"
    assert "runner --db sqlite:///t.db show abc123" in lines[1]
    row = next(line for line in lines if line.startswith("  r1 "))
    assert "rolled_back" in row and "ospf after" in row and "CheckFailed: it said so" in row
    assert "  twin afterwards: synced with backups commit 0123456789ab" in lines
    assert "--- r1 on the twin\n# ntp\n+ntp server 192.0.2.1" in text
    passed = rehearsal(record("r1", DeviceStatus.CHANGED, CONFIG)).to_json()
    assert rehearsal_text(passed, dry_run=True).startswith(
        "rehearsal on twin twin: PASSED: production was previewed after it (nothing sent)")


def test_a_large_rehearsal_lists_only_what_did_not_pass() -> None:
    devices = [record(f"d{i:02}", DeviceStatus.CHANGED, CONFIG) for i in range(60)]
    devices[7] = record("d07", DeviceStatus.FAILED, error_class="CommandRejected")
    text = rehearsal_text(rehearsal(*devices, status=RunStatus.FAILED).to_json(),
                          with_diffs=False)
    assert "  d07 " in text and "  d08 " not in text
    assert "... and 59 more ended ok or changed (--all lists every device)" in text
    every = rehearsal_text(rehearsal(*devices, status=RunStatus.FAILED).to_json(),
                           with_diffs=False, show_all=True)
    assert "  d08 " in every


def test_a_refused_run_exits_4() -> None:
    run = RunResult("r", "job", "2026-12-07", None, [record("r1", DeviceStatus.SKIPPED,
                                                            error_class="RehearsalFailed")])
    assert run.exit_code == 1
    run.rehearsal = {"passed": False}
    assert run.exit_code == 4 and run.rehearsal_failed
    run.rehearsal = {"passed": True}
    assert not run.rehearsal_failed


@pytest.mark.parametrize("args, message", [
    (["--keep"], "--keep goes with --rehearse TWIN"),
    (["--rehearse", " "], "--rehearse needs a twin's name"),
])
def test_rehearse_options_that_go_together(tmp_path: Path, args: list[str],
                                           message: str) -> None:
    path = write_job(tmp_path, "plain", hosts=["r1"],
                     steps=[{"config": {"lines": ["ntp server 192.0.2.1"]}}])
    proc = subprocess.run([sys.executable, "-m", "runner", "--db",
                           f"sqlite:///{tmp_path / 'r.db'}", "run", str(path), "-i",
                           str(tmp_path / "inventory"), *args], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


def test_the_notification_says_what_the_twin_found() -> None:
    """A rehearsed run's message carries the rehearsal: its verdict, each device that did
    not pass on the twin (status, error class, the failed step, its error, masked), and
    the twin's reset; a passing one says so in a line."""
    from runner.job.notify import build_message
    from runner.redact import Redactor

    check = StepResult("ospf after", StepKind.COMMAND, failed=True)
    failing = rehearsal(record("r1", DeviceStatus.ROLLED_BACK, CONFIG, check,
                               error_class="CheckFailed"),
                        record("r2", DeviceStatus.OK), status=RunStatus.FAILED).to_json()
    failing["devices"][0]["error"] = "check is false; key s3cr3t-value seen"
    failing["reset"] = "synced with backups commit 0123456789ab (put back: r1)"
    run = RunResult(run_id="run1", job="change", started="2026-12-07T02:30:00",
                    finished="2026-12-07T02:32:00", devices=[], rehearsal=failing)
    message = build_message(run, RunStatus.REHEARSAL_FAILED, Redactor(["s3cr3t-value"]))
    assert message.kind == "failure"  # even with no device record (the status says it)
    run.devices = [record(h, DeviceStatus.SKIPPED, error_class="RehearsalFailed")
                   for h in ("r1", "r2")]
    message = build_message(run, RunStatus.REHEARSAL_FAILED, Redactor(["s3cr3t-value"]))
    body = message.body
    assert "Rehearsal on twin twin: FAILED (twin run abc123; 1 ok, 1 rolled_back); " \
           "production was not contacted" in body
    assert "- r1 on the twin: rolled_back, CheckFailed in 'ospf after': check is false" \
        in body
    assert "r2 on the twin" not in body  # it passed there
    assert "twin reset: synced with backups commit 0123456789ab (put back: r1)" in body
    assert "s3cr3t-value" not in body and message.kind == "failure"

    passing = rehearsal(record("r1", DeviceStatus.CHANGED, CONFIG)).to_json()
    run.rehearsal, run.devices = passing, [record("r1", DeviceStatus.CHANGED, CONFIG)]
    body = build_message(run, RunStatus.OK, Redactor([])).body
    assert "Rehearsal on twin twin: passed (twin run abc123; 1 changed)" in body
    assert "production was not contacted" not in body and "on the twin:" not in body
