"""Change-management scheduling on real `runner serve` processes and simulated devices, on
SQLite and on a real PostgreSQL server (issue 26): two servers started together on a fresh
store start each workflow step, webhook delivery and syslog message once (real senders on
loopback: curl, util-linux `logger`, Python's SysLogHandler); blackout windows skip or
defer occurrences, hold a site's devices out of a run, and refuse `runner run` unless an
override is recorded with who and why."""

from __future__ import annotations

import json
import logging
import logging.handlers
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.lab.netns import wait_for
from runner.schedule.hooks import sign_github
from runner.store.events import Events
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from tests.support.base import ME, user_env
from tests.support.fleet import FleetSpec, start_fleet
from tests.support.serve import Serve

SECRET = "hook-secret-for-tests-5b1d"  # asserted never to appear in a log or an answer


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Four simulated devices on 127.0.0.1-4 (a syslog sender on loopback is one of them),
    sim0001-2 in group site-a (data site ams), sim0003-4 in site-b (site rtm)."""
    base = tmp_path_factory.mktemp("sim-scheduling")
    with start_fleet(base, FleetSpec(4, "127.0.0.1")) as fleet:
        inventory = base / "inventory"
        shutil.copytree(fleet.inventory, inventory)
        hosts = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
        for i, host in enumerate(hosts.values()):
            host["groups"] = ["site-a" if i < 2 else "site-b"]
            host["data"] = {"site": "ams" if i < 2 else "rtm"}
        (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
        (inventory / "groups.yaml").write_text("site-a: {}\nsite-b: {}\n", encoding="utf-8")
        yield inventory


def hooked(project: Path, url: str, inventory: Path, name: str) -> Serve:
    """`runner serve` as a user starts it, with webhooks and syslog on ports of its own."""
    return Serve(project, url, inventory, name, hooks=True, syslog=True,
                 env={**user_env(), "HOOK_SECRET": SECRET})


def curl(port: int, job: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    """POST /hooks/JOB with curl, as a git server would."""
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
            "-H", "Content-Type: application/json", "--data-binary", "@-"]
    for name, value in headers.items():
        args += ["-H", f"{name.replace('_', '-')}: {value}"]
    done = subprocess.run([*args, f"http://127.0.0.1:{port}/hooks/{job}"], input=body,
                          capture_output=True, timeout=30, check=True)
    text, _, code = done.stdout.decode().rpartition("\n")
    return int(code), json.loads(text)


def signed(body: bytes, delivery: str) -> dict[str, str]:
    return {"X_Hub_Signature_256": sign_github(SECRET, body), "X_GitHub_Delivery": delivery,
            "X_GitHub_Event": "push"}


def runs(url: str, job: str | None = None) -> list[dict[str, Any]]:
    return ResultsStore(url).list_runs(10_000, job)


JOBS = {
    "backup": """name: backup
driver: asyncssh
schedule: {interval: 3s, misfire_grace: 30}
trigger:
  syslog: {match: '%SYS-5-CONFIG_I', debounce: 1s}
steps:
  - backup: {dir: backups}
""",
    "verify": """name: verify
driver: asyncssh
after: {job: backup, when: success}
steps:
  - command: show clock
""",
    "cleanup": """name: cleanup
driver: asyncssh
after: {job: backup, when: failure}
steps:
  - command: show clock
""",
    "deploy": """name: deploy
driver: asyncssh
vars: {ref: none}
trigger:
  webhook:
    secret: {env: HOOK_SECRET}
    vars: {ref: {path: ref, pattern: '^refs/heads/[a-z0-9-]+$'}}
steps:
  - command: show version
""",
}


def test_two_servers_start_each_event_and_workflow_step_once(
        db_url: str, devices: Path, tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    for name, text in JOBS.items():
        (tmp_path / "jobs" / f"{name}.yml").write_text(text, encoding="utf-8")
    servers = [hooked(tmp_path, db_url, devices, name) for name in ("a", "b")]
    try:
        wait_for(lambda: all("active scheduler" in s.text() or "standing by" in s.text()
                             for s in servers), 60, "both servers to start")
        # each delivery, sent to both servers (a retrying sender, a replay): one run
        for n in (1, 2, 3):
            body = json.dumps({"ref": f"refs/heads/feature-{n}",
                               "sender": {"login": "alice"}}).encode()
            answers = [curl(s.hooks, "deploy", body, **signed(body, f"delivery-{n}"))
                       for s in servers]
            assert sorted(code for code, _ in answers) == [200, 202], answers
            assert {a["status"] for _, a in answers} == {"accepted", "duplicate"}
        body = b'{"ref": "refs/heads/main"}'
        refused = [
            curl(servers[0].hooks, "deploy", body, X_Hub_Signature_256=sign_github("x", body),
                 X_GitHub_Delivery="bad-1"),
            curl(servers[1].hooks, "deploy", body, X_GitHub_Delivery="bad-2"),
            curl(servers[0].hooks, "nope", body, **signed(body, "bad-3")),
            curl(servers[0].hooks, "deploy", b'{"ref": "main;reload"}',
                 **signed(b'{"ref": "main;reload"}', "bad-4")),
            curl(servers[1].hooks, "deploy", b"x" * (2 * 1024 * 1024),
                 **signed(b"x" * (2 * 1024 * 1024), "bad-5")),
        ]
        assert [code for code, _ in refused] == [401, 401, 404, 400, 413], refused
        assert "does not match" in refused[0][1]["error"]
        assert "does not match '^refs/heads/" in refused[3][1]["error"]
        # one config change, logged to both servers: one backup of that device, who did it
        for server in servers:
            subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(server.syslog), "-d",
                            "--rfc3164", "-t", "IOS", "%SYS-5-CONFIG_I: Configured from "
                            "console by alice on vty0 (192.0.2.7)"], check=True, timeout=10)
        events = Events(ScheduleStore(db_url).engine)

        def syslog_done(count: int) -> bool:
            rows = [r for r in events.all("backup") if r["source"] == "syslog"]
            return len(rows) >= count and all(r["status"] == "done" for r in rows)

        wait_for(lambda: syslog_done(1), 60, "the UDP message's backup")
        for server in servers:  # TCP, octet-counted, RFC 5424
            subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(server.syslog), "-T",
                            "--octet-count", "%SYS-5-CONFIG_I: Configured from console by "
                            "bob on vty1"], check=True, timeout=10)
        wait_for(lambda: syslog_done(2), 60, "the TCP message's backup")
        for server in servers:  # another device: its own address as the sender's
            handler = logging.handlers.SysLogHandler(("127.0.0.1", server.syslog),
                                                     socktype=socket.SOCK_DGRAM)
            handler.socket.bind(("127.0.0.2", 0))
            device = logging.getLogger(f"device-{server.syslog}")
            device.propagate = False
            device.addHandler(handler)
            device.warning("%%SYS-5-CONFIG_I: Configured from console by carol on vty2")
            handler.close()
        wait_for(lambda: syslog_done(3), 60, "the second device's backup")
        wait_for(lambda: len(runs(db_url, "deploy")) == 3 and
                 all(r["status"] == "ok" for r in runs(db_url, "deploy")), 60,
                 "the deliveries' runs")
        wait_for(lambda: len([r for r in runs(db_url, "verify") if r["status"] == "ok"]) >= 4,
                 90, "workflow steps")
    finally:
        codes = [s.stop() for s in servers]
    logs = [s.text() for s in servers]
    assert codes == [0, 0], [log[-2000:] for log in logs]
    for log in logs:
        assert "Traceback" not in log and SECRET not in log
    everything = runs(db_url)
    counts = Counter(r["occurrence"] for r in everything)
    assert [o for o, n in counts.items() if n > 1] == []
    # the deliveries: a run each, with the payload's ref and the sender recorded
    deploys = runs(db_url, "deploy")
    assert sorted(r["occurrence"] for r in deploys) == [f"deploy@webhook:delivery-{n}"
                                                        for n in (1, 2, 3)]
    assert all("webhook from alice" in r["started_by"] for r in deploys)
    rows = {r["key"]: r for r in events.all("deploy")}
    assert rows["webhook:delivery-2"]["vars"] == {"ref": "refs/heads/feature-2"}
    assert set(rows) == {f"webhook:delivery-{n}" for n in (1, 2, 3)}
    # the messages: a backup each, of the device that sent it, naming who changed it
    syslogs = sorted((r for r in events.all("backup") if r["source"] == "syslog"),
                     key=lambda r: r["received"])
    assert [(r["hosts"], r["by"]) for r in syslogs] == [
        (["sim0001"], "alice"), (["sim0001"], "bob"), (["sim0002"], "carol")]
    for row in syslogs:
        run = ResultsStore(db_url).get_run(row["run_id"])[1]
        assert [d.host for d in run.devices] == row["hosts"]
        assert f"config changed by {row['by']}" in (run.started_by or "")
    # workflows: each backup run started one verify, never a cleanup, once across servers
    backups = [r for r in runs(db_url, "backup") if r["status"] == "ok"]
    verifies = runs(db_url, "verify")
    assert runs(db_url, "cleanup") == []
    by_flow = Counter(r["workflow"] for r in verifies)
    assert all(n == 1 for n in by_flow.values()) and None not in by_flow
    flows = {r["workflow"] for r in backups}
    assert set(by_flow) <= flows
    listed = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db_url, "workflow", "list", "--json",
         "-n", "1000"], capture_output=True, text=True, check=True, timeout=60).stdout)
    finished = [w for w in listed if w["status"] != "running"]
    assert len(finished) >= 4 and {w["status"] for w in finished} == {"ok"}
    one = next(w for w in finished if w["id"] in by_flow)
    shown = subprocess.run([sys.executable, "-m", "runner", "--db", db_url, "workflow",
                            "show", one["id"]], capture_output=True, text=True, check=True,
                           timeout=60).stdout
    assert "verify  backup (success)  done" in " ".join(shown.split("  ")).replace(
        "   ", "  ") or "backup (success)" in shown
    assert "cleanup" in shown and "not run: backup ok (it waits for failure)" in shown
    history = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db_url, "history", "--workflow", one["id"],
         "--json"], capture_output=True, text=True, check=True, timeout=60).stdout)
    assert sorted(r["job"] for r in history) == ["backup", "verify"]


def window(name: str, start: datetime, end: datetime, extra: str = "") -> str:
    fmt = "%Y-%m-%d %H:%M:%S"
    return f"  - {{name: {name}, start: '{start:{fmt}}', end: '{end:{fmt}}'{extra}}}\n"


def test_blackouts_skip_defer_hold_a_site_and_refuse_runs(
        db_url: str, devices: Path, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)
    # as the file says it: to the second; long enough for the CLI steps below on a busy machine
    end = now + timedelta(seconds=150)
    (jobs / "blackouts.yml").write_text(
        "blackouts:\n" + window("maint", now - timedelta(minutes=1), end, ", jobs: [audit, push]")
        + window("office-hours", now - timedelta(minutes=1), now + timedelta(hours=1),
                 ", groups: [site-a], jobs: [facts]")
        + window("freeze", now - timedelta(minutes=1), now + timedelta(hours=1),
                 ", changes_only: true, jobs: [ntp]"), encoding="utf-8")
    # a line new to the session's simulator for each database (the other one's run set its own)
    server_ip = "192.0.2.44" if db_url.startswith("sqlite") else "192.0.2.45"
    (jobs / "ntp.yml").write_text(
        "name: ntp\ndriver: asyncssh\ntargets: {hosts: [sim0004]}\nschedule: {cron: '0 3 1 1 *',"
        f" approval: required}}\nsteps:\n  - config: {{lines: [ntp server {server_ip}]}}\n",
        encoding="utf-8")
    base = "driver: asyncssh\nsteps:\n  - command: show clock\n"
    (jobs / "audit.yml").write_text("name: audit\nschedule: {interval: 2s, on_blackout: skip}\n"
                                    + base, encoding="utf-8")
    (jobs / "push.yml").write_text("name: push\nschedule: {interval: 2s, on_blackout: defer}\n"
                                   + base, encoding="utf-8")
    (jobs / "facts.yml").write_text("name: facts\nschedule: {interval: 3s}\n" + base,
                                    encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runner", "--db", db_url, *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              cwd=tmp_path, env=user_env())

    server = hooked(tmp_path, db_url, devices, "a")
    try:
        wait_for(lambda: "active scheduler" in server.text(), 60, "the server to start")
        listed = {j["job"]: j for j in json.loads(cli("schedule", "list", "--jobs", str(jobs),
                                                      "--json").stdout)}
        assert datetime.fromisoformat(listed["audit"]["next"][0]) >= end  # after the window
        assert listed["audit"]["blackouts"]["now"][0]["window"] == "maint"
        assert listed["push"]["next"][0] == end.isoformat()
        assert listed["facts"]["blackouts"]["now"][0]["devices_only"] is True
        # ad hoc: refused naming the window, then run under a recorded override
        refused = cli("run", str(jobs / "audit.yml"), "-i", str(devices))
        assert refused.returncode == 2 and "job 'audit' is in blackout maint (" in refused.stderr
        done = cli("run", str(jobs / "audit.yml"), "-i", str(devices), "--json",
                   "--override-blackout", "INC-42: the core is down, we need the clocks")
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        override = record["blackout_override"]
        assert override["by"] == ME and override["windows"] == ["maint"]
        assert override["reason"] == "INC-42: the core is down, we need the clocks"
        shown = cli("show", record["run_id"])
        assert f"blackout maint overridden by {ME} at " in shown.stdout
        assert ": INC-42: the core is down" in shown.stdout
        fired = cli("schedule", "run", "audit", "--jobs", str(jobs), "-i", str(devices))
        assert fired.returncode == 2 and "in blackout maint (" in fired.stderr
        fired = cli("schedule", "run", "audit", "--jobs", str(jobs), "-i", str(devices),
                    "--override-blackout", "INC-42")
        assert fired.returncode == 0, fired.stderr
        # a change freeze: the preview goes on, its approval waits for the freeze's end
        preview = cli("run", str(jobs / "ntp.yml"), "-i", str(devices), "--json")
        assert preview.returncode == 0, preview.stderr
        preview_id = json.loads(preview.stdout)["run_id"]
        held = cli("approve", preview_id)
        assert held.returncode == 2 and "job 'ntp' is in blackout freeze (" in held.stderr
        approved = cli("approve", preview_id, "--json", "--override-blackout", "CAB-9 said yes")
        assert approved.returncode == 0, approved.stderr
        carried = json.loads(approved.stdout)
        assert carried["blackout_override"]["windows"] == ["freeze"]
        assert carried["blackout_override"]["reason"] == "CAB-9 said yes"
        assert datetime.now(UTC) < end, "the window ended before the server was checked"
        after_window = (end - datetime.now(UTC)).total_seconds() + 120
        wait_for(lambda: any(r["status"] == "ok" for r in runs(db_url, "audit")
                             if r["occurrence"] and "@20" in r["occurrence"]), after_window,
                 "audit to run after the window")
        wait_for(lambda: any(r["occurrence"].startswith("push@deferred:")
                             for r in runs(db_url, "push")), 60, "the deferred push")
        wait_for(lambda: len(runs(db_url, "facts")) >= 2, 60, "facts runs")
    finally:
        assert server.stop() == 0, server.text()[-3000:]
    assert "Traceback" not in server.text()
    store = ScheduleStore(db_url)
    audit = store.occurrences("audit")
    inside = [o for o in audit if datetime.fromisoformat(o["occurrence"]) < end]
    assert inside and all(o["status"] == "skipped" and o["reason"].startswith(
        "blackout maint (") for o in inside)
    ran = [o for o in audit if o["status"] == "done"]
    assert ran and all(datetime.fromisoformat(o["occurrence"]) >= end for o in ran)
    # defer: one run at the window's end for all the held occurrences
    push = store.occurrences("push")
    held = [o for o in push if datetime.fromisoformat(o["occurrence"]) < end]
    assert held[0]["status"] == "deferred" and {o["status"] for o in held[1:]} <= {"missed"}
    deferred = [r for r in runs(db_url, "push") if r["occurrence"].startswith("push@deferred:")]
    assert len(deferred) == 1 and deferred[0]["status"] == "ok"
    assert datetime.fromisoformat(deferred[0]["started"]) >= end
    # a site in a window sits the run out; the run goes on and ends ok
    for run in runs(db_url, "facts"):
        record_ = ResultsStore(db_url).get_run(run["run_id"])[1]
        held_out = {d.host: d for d in record_.devices if d.error_class == "BlackedOut"}
        assert set(held_out) == {"sim0001", "sim0002"}, record_.devices
        assert all(d.status == "skipped" and "blackout office-hours (" in (d.error or "")
                   for d in held_out.values())
        assert run["status"] == "ok"
    # every occurrence (one each 2 s of the window, and the deferred one)
    occurrences = json.loads(cli("schedule", "occurrences", "push", "--json",
                                 "-n", "1000").stdout)
    assert any(o["trigger"] == "deferred" and o["status"] == "done" for o in occurrences)
