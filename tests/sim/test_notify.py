"""Notifications end to end: `runner run` and `runner serve` against simulated devices (one
refusing logins) notify a JSON webhook and a mailbox on loopback with the job, the run id,
the failed device's error and the changed devices' diffs; `runner show` holds the outcomes;
a receiver that is down is recorded and changes nothing about the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.lab.netns import wait_for
from tests.support.base import free_port
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import write_job
from tests.support.receivers import JsonReceiver, SmtpReceiver
from tests.support.serve import Serve

DEVICES = 4
NTP = "ntp server 192.0.2.44"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four devices of their own (127.108.0.x: no other test uses it), one refusing logins."""
    with start_fleet(tmp_path_factory.mktemp("sim-notify"),
                     FleetSpec(DEVICES, "127.108.0.1", faults=("refuse=1",))) as fleet:
        yield fleet


def hosts_of(sim: Fleet) -> tuple[list[str], str]:
    """(healthy devices, the one refusing logins)."""
    (refused,) = sim.faults
    return [h for h in sim.hosts if h != refused], refused


def runner_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'results.db'}", *args],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)


JOB = {"driver": "asyncssh", "timeouts": {"connect": 20, "command": 20, "device": 60}}


def push_job(tmp_path: Path, notify: list[dict[str, Any]]) -> Path:
    return write_job(tmp_path, "push-ntp", **JOB, notify=notify, steps=[
        {"name": "ntp", "config": {"lines": [NTP]}},
        {"backup": {"dir": str(tmp_path / "backups")}}])


def test_run_notifies_webhook_and_mail_and_records_the_outcomes(
        sim: Fleet, webhook: JsonReceiver, smtp: SmtpReceiver, tmp_path: Path) -> None:
    healthy, refused = hosts_of(sim)
    closed = free_port()
    job = push_job(tmp_path, [
        {"url": webhook.url(), "on": ["failed", "changed"]},
        {"url": smtp.url(), "on": ["always"]},
        {"url": f"json://127.0.0.1:{closed}/hook", "on": ["always"]}])
    proc = runner_cli(tmp_path, "run", str(job), "-i", str(sim.inventory), "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the refused device, nothing else
    result = json.loads(proc.stdout)
    run_id = result["run_id"]
    devices = {d["host"]: d for d in result["devices"]}
    assert devices[refused]["status"] == "auth_failed"
    assert all(devices[h]["status"] == "changed" for h in healthy)
    # the receiver that is down: a warning on stderr, masked, naming the run
    assert f"run {run_id}: notification to json://127.0.0.1:{closed}/hook not delivered" \
        in proc.stderr

    (hook,) = webhook.bodies
    assert hook["title"] == f"runner push-ntp: failed, {len(healthy)} changed, 1 auth_failed"
    lines = hook["message"].splitlines()
    assert lines[:2] == [f"job push-ntp ({job})", f"run {run_id}: failed"]
    assert result["backup_commit"]
    assert f"backups: commit {result['backup_commit'][:12]}" in lines
    error = devices[refused]["error"]
    assert error
    assert f"- {refused}: auth_failed, AuthFailed: {error}" in lines
    for host in healthy:
        at = lines.index(f"== {host}: ntp")
        assert f"+{NTP}" in lines[at + 1:at + 12]
        # the backup changed too: named, its diff not shown twice
        assert f"== {host}: {tmp_path / 'backups' / host}.cfg (its config diff is above)" \
            in lines
    (mail,) = smtp.mails
    assert mail.recipients == ["ops@example.net"]
    assert mail.subject == hook["title"]
    assert mail.body.splitlines() == lines
    password = sim.password
    assert password not in json.dumps(hook) + mail.body

    shown = runner_cli(tmp_path, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    sent = json.loads(shown.stdout)["notifications"]
    assert [(n["url"], n["events"], n["status"], n["delivered"]) for n in sent] == [
        (webhook.url(), ["failed", "changed"], "failed", True),
        (f"mailto://127.0.0.1:{smtp.port}/ops%40example.net", ["always"], "failed", True),
        (f"json://127.0.0.1:{closed}/hook", ["always"], "failed", False)]
    assert sent[2]["error"] == \
        "A Connection error occurred sending JSON notification to 127.0.0.1."
    text = runner_cli(tmp_path, "show", run_id).stdout
    assert f"notified {webhook.url()} (failed, changed): delivered" in text
    assert f"notified json://127.0.0.1:{closed}/hook (always): NOT delivered: " \
           "A Connection error occurred" in text


def test_a_receiver_that_is_down_leaves_the_run_as_it_was(sim: Fleet,
                                                          tmp_path: Path) -> None:
    healthy, _ = hosts_of(sim)
    closed = free_port()
    job = write_job(tmp_path, "clock", **JOB, steps=[{"command": "show clock"}],
                    notify=[{"url": f"json://127.0.0.1:{closed}/hook", "on": ["always"]}])
    quiet = write_job(tmp_path / "quiet", "clock", **JOB, steps=[{"command": "show clock"}])
    runs = {}
    for name, path in (("notified", job), ("quiet", quiet)):
        proc = runner_cli(tmp_path, "run", str(path), "-i", str(sim.inventory), "--json",
                          "--limit", ",".join(healthy))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads(proc.stdout)
    for name in runs:
        assert [(d["host"], d["status"], d["error"]) for d in runs[name]["devices"]] == \
            [(h, "ok", None) for h in healthy]
    assert runs["notified"]["summary"] == runs["quiet"]["summary"]
    notified = json.loads(runner_cli(tmp_path, "show", runs["notified"]["run_id"],
                                     "--json").stdout)
    assert [(n["delivered"], bool(n["error"])) for n in notified["notifications"]] == \
        [(False, True)]
    assert notified["status"] == "ok"
    quiet_run = json.loads(runner_cli(tmp_path, "show", runs["quiet"]["run_id"],
                                      "--json").stdout)
    assert quiet_run["notifications"] == []


def test_serve_notify_is_the_default_for_jobs_that_name_no_targets(
        sim: Fleet, webhook: JsonReceiver, tmp_path: Path) -> None:
    healthy, refused = hosts_of(sim)
    at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0, tzinfo=None)
    write_job(tmp_path / "jobs", "audit", **JOB, targets={"hosts": [healthy[0], refused]},
              schedule={"at": at.isoformat()}, steps=[{"command": "show clock"}])
    # a job with targets of its own is notified there, not at the serve default
    write_job(tmp_path / "jobs", "own", **JOB, targets={"hosts": [refused]},
              schedule={"at": at.isoformat()}, steps=[{"command": "show clock"}],
              notify=[{"url": webhook.url("own"), "on": ["always"]}])
    serve = Serve(tmp_path, f"sqlite:///{tmp_path / 'results.db'}", sim.inventory, "serve",
                  "--notify", webhook.url("default"), engine=None, env=os.environ)
    try:
        bodies = webhook.wait(2, timeout=120)
        wait_for(lambda: serve.text().count("finished: failed") == 2, 60,
                 "both occurrences to be recorded")
    finally:
        assert serve.stop() == 0
    # each job notified once: its own target, else the serve default
    assert sorted(zip(webhook.paths, (b["title"] for b in webhook.bodies), strict=True)) == [
        ("/default", "runner audit: failed, 1 ok, 1 auth_failed"),
        ("/own", "runner own: failed, 1 auth_failed")]
    audit = next(b for b in bodies if b["title"].startswith("runner audit"))
    assert f"- {refused}: auth_failed, AuthFailed: " in audit["message"]
    assert audit["message"].splitlines()[1].endswith(": failed")
    assert "occurrence audit@" in audit["message"]
