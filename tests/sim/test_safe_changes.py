"""Safe changes on the simulator, with every driver: post-checks, automatic rollback
(verified by reading each device's config afterwards), a stopped rollout rolling back the
devices it changed, rerun of what failed, approval of a previewed change, and two runs on
one device without a broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from tests.support.base import ROOT
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_job, write_job
from tests.support.serve import Serve

DRIVERS = ["netmiko", "scrapli", "asyncssh"]


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # slow devices answer each line after 0.4 s: a device budget runs out mid-job
    with start_fleet(tmp_path_factory.mktemp("sim-safe"),
                     FleetSpec(40, "127.109.0.1", faults=("slow=4",), slow_delay=0.4)) as fleet:
        yield fleet


def runner(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
            *args]


BREAK = ["interface GigabitEthernet0/3", " description broken by a change",
         " shutdown", "ntp server 192.0.2.201"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failing_post_check_rolls_the_change_back(devices: Fleet, tmp_path: Path,
                                                     driver: str) -> None:
    hosts = devices.take(2)
    before = {h: devices.config(h) for h in hosts}
    job = write_job(tmp_path, "change", driver=driver, rollback=True, steps=[
        {"name": "pre", "command": "show interfaces description",
         "expect": ["'broken' not in output"]},
        {"config": {"lines": BREAK, "save": True}},
        {"name": "post", "command": "show interfaces description",
         "expect": ["'broken' not in output"]}])
    result = run_job(tmp_path, job, devices.inventory, "--limit", ",".join(hosts), expect=1)
    for device in result["devices"]:
        assert (device["status"], device["error_class"]) == ("rolled_back", "CheckFailed")
        assert device["changed"] is False
        assert "'broken' not in output" in device["error"] and "rolled back" in device["error"]
        steps = {s["name"]: s for s in device["steps"]}
        assert steps["post"]["failed"] and "saw \"broken\" not in" in steps["post"]["error"]
        assert "+ description broken by a change" in steps["config"]["diff"]
        rollback = steps["rollback"]
        assert not rollback["failed"] and "no ntp server 192.0.2.201" in rollback["output"]
        # the device's own account: its config is as it was, saved too
        assert devices.config(device["host"]) == before[device["host"]]
        startup = devices.run_on(device["host"], "show startup-config")
        assert "broken by a change" not in startup


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_rejected_line_rolls_back_what_was_applied_and_a_dry_run_shows_the_rollback(
        devices: Fleet, tmp_path: Path, driver: str) -> None:
    host, = devices.take(1)
    before = devices.config(host)
    job = write_job(tmp_path, "reject", driver=driver, rollback=True, steps=[
        {"config": {"lines": ["logging host 192.0.2.77", "frobnicate everything",
                              "ntp server 192.0.2.78"]}}])
    preview = run_job(tmp_path, job, devices.inventory, "--limit", host, "--dry-run", expect=0)
    shown = next(s for s in preview["devices"][0]["steps"] if s["kind"] == "rollback")
    assert shown["output"].splitlines()[:1] == ["no logging host 192.0.2.77"]
    assert devices.config(host) == before  # a dry run sends nothing
    result = run_job(tmp_path, job, devices.inventory, "--limit", host, expect=1)
    device = result["devices"][0]
    assert (device["status"], device["error_class"]) == ("rolled_back", "CommandRejected")
    assert "logging host 192.0.2.77" in device["steps"][0]["diff"]  # it had applied
    assert devices.config(host) == before


def test_a_device_budget_running_out_after_the_push_rolls_back_in_a_session_of_its_own(
        devices: Fleet, tmp_path: Path) -> None:
    host = devices.slow[0]
    before = devices.config(host)
    job = write_job(tmp_path, "budget", driver="asyncssh", rollback=True,
                    timeouts={"connect": 20, "command": 20, "device": 8, "rollback": 60},
                    steps=[{"config": {"lines": ["ntp server 192.0.2.90"]}},
                           {"command": ["show clock"] * 40}])
    result = run_job(tmp_path, job, devices.inventory, "--limit", host, expect=1)
    device = result["devices"][0]
    assert (device["status"], device["error_class"]) == ("rolled_back", "DeviceTimeout")
    assert "did not finish within 8s" in device["error"]
    assert devices.config(host) == before


def test_a_stopped_rollout_rolls_back_every_device_it_changed(devices: Fleet,
                                                              tmp_path: Path) -> None:
    hosts = devices.take(6)
    before = {h: devices.config(h) for h in hosts}
    bad = hosts[3]
    job = write_job(tmp_path, "rollout", driver="asyncssh", rollback=True,
                    targets={"hosts": hosts},
                    rollout={"batch_size": 2, "max_fail_percentage": 0, "on_stop": "rollback"},
                    steps=[{"config": {"lines": ["ntp server 192.0.2.91"]}},
                           {"name": "post", "command": "show clock",
                            "expect": [f"host.name != '{bad}'"]}])
    result = run_job(tmp_path, job, devices.inventory, "--engine", "processes",
                     "--processes", "2", expect=1)
    by = {d["host"]: d for d in result["devices"]}
    assert [(by[h]["status"], by[h]["error_class"]) for h in hosts] == [
        ("rolled_back", "RolloutStopped"), ("rolled_back", "RolloutStopped"),
        ("rolled_back", "RolloutStopped"), ("rolled_back", "CheckFailed"),
        ("skipped", "RolloutStopped"), ("skipped", "RolloutStopped")]
    assert "this device's change was rolled back" in by[hosts[0]]["error"]
    for host in hosts:
        assert devices.config(host) == before[host], host
    assert [devices.sessions(h) for h in hosts] == [2, 2, 2, 2, 0, 0]  # change, rollback


def test_rerun_runs_only_what_failed_and_says_which_run_it_reran(devices: Fleet,
                                                                 tmp_path: Path) -> None:
    hosts = devices.take(4)
    bad = hosts[1:3]
    job = write_job(tmp_path, "fix", driver="asyncssh", targets={"hosts": hosts},
                    steps=[{"command": "show clock",
                            "expect": [f"host.name not in {bad!r}"]}])
    first = run_job(tmp_path, job, devices.inventory, expect=1)
    failed = subprocess.run(runner(tmp_path, "show", first["run_id"], "--failed", "--json"),
                            capture_output=True, text=True, check=True)
    assert [d["host"] for d in json.loads(failed.stdout)["devices"]] == bad
    write_job(tmp_path, "fix", driver="asyncssh", targets={"hosts": hosts},
              steps=[{"command": "show clock"}])
    again = run_job(tmp_path, job, devices.inventory, "--rerun", first["run_id"][:6], expect=0)
    assert [d["host"] for d in again["devices"]] == bad
    assert again["rerun_of"] == first["run_id"]
    nothing = subprocess.run(
        runner(tmp_path, "run", str(job), "-i", str(devices.inventory), "--rerun",
               first["run_id"], "--status", "timed_out"), capture_output=True, text=True,
        check=False)
    assert nothing.returncode == 0 and "no device to run again" in nothing.stderr
    other = write_job(tmp_path, "other", steps=[{"command": "show clock"}])
    wrong = subprocess.run(runner(tmp_path, "run", str(other), "-i", str(devices.inventory),
                                  "--rerun", first["run_id"]), capture_output=True,
                           text=True, check=False)
    assert wrong.returncode == 2
    assert "was of job 'fix', not 'other'" in wrong.stderr


def test_two_runs_on_one_device_without_a_broker_never_interleave(devices: Fleet,
                                                                  tmp_path: Path) -> None:
    host = devices.slow[1]
    lines = [f"ntp server 192.0.2.{i}" for i in range(100, 106)]
    # the device stays leased for its show commands too: ~10 s, however slowly the other
    # runs' processes start on a busy machine
    first = write_job(tmp_path, "first", driver="asyncssh", steps=[
        {"config": {"lines": lines}}, {"command": ["show clock"] * 20}])
    second = write_job(tmp_path, "second", driver="asyncssh", busy_wait=120, steps=[
        {"config": {"lines": ["logging host 192.0.2.250"]}}])
    impatient = write_job(tmp_path, "impatient", driver="asyncssh", busy_wait=0,
                          steps=[{"config": {"lines": ["logging host 192.0.2.251"]}}])
    env = {**os.environ, "RUNNER_LOCK_DIR": str(tmp_path / "locks")}

    def start(job: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(runner(tmp_path, "run", str(job), "-i", str(devices.inventory),
                                       "--limit", host, "--json"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=tmp_path, env=env)

    procs = [start(first)]
    # the first is configuring the device (a slow one: its push takes seconds)
    wait_for(lambda: "192.0.2.100" in devices.run_on(host, "show archive log config all"), 60,
             "the first run to be configuring the device")
    procs += [start(second), start(impatient)]
    outs = [json.loads(p.communicate(timeout=300)[0])["devices"][0] for p in procs]
    assert outs[0]["status"] == "changed" and outs[1]["status"] == "changed"
    assert outs[1]["started"] >= outs[0]["finished"]  # it waited for the first
    # and each run's record holds only its own change
    assert "+ntp server 192.0.2.100" in outs[0]["steps"][0]["diff"]
    assert "192.0.2.100" not in "".join(line for line in outs[1]["steps"][0]["diff"]
                                        .splitlines() if line.startswith(("+", "-")))
    assert (outs[2]["status"], outs[2]["error_class"]) == ("skipped", "DeviceBusy")
    assert "holds its lock on this machine" in outs[2]["error"]
    log = devices.run_on(host, "show archive log config all").splitlines()[1:]
    sessions = [line.split()[1] for line in log if line.strip()]
    assert sessions == sorted(sessions)  # each run's lines together, one session each


def previewed(tmp_path: Path, devices: Fleet, hosts: list[str], marker: str) -> str:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    write_job(jobs, "nightly", driver="asyncssh", rollback=True,
              targets={"hosts": hosts},
              schedule={"cron": "30 2 * * *", "approval": "required",
                        "approval_timeout": "2h"},
              steps=[{"config": {"lines": [f"snmp-server location {marker}"]}}])
    proc = subprocess.run(runner(tmp_path, "schedule", "run", "nightly", "--jobs", str(jobs),
                                 "-i", str(devices.inventory), "--templates",
                                 str(ROOT / "templates")),
                          capture_output=True, text=True, check=True)
    assert "awaiting approval: runner approve" in proc.stdout
    runs = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}").list_runs(1)
    assert runs[0]["status"] == "awaiting_approval" and runs[0]["dry_run"]
    return str(runs[0]["run_id"])


def test_an_approved_preview_is_carried_out_once_and_not_onto_a_moved_config(
        devices: Fleet, tmp_path: Path) -> None:
    hosts = devices.take(3)
    preview = previewed(tmp_path, devices, hosts, "rack-7")
    assert all(devices.sessions(h) == 0 for h in hosts)  # the preview sent nothing
    # someone changes one device meanwhile: its preview no longer holds
    job = write_job(tmp_path, "meanwhile", driver="asyncssh",
                    steps=[{"config": {"lines": ["ntp server 192.0.2.5"]}}])
    run_job(tmp_path, job, devices.inventory, "--limit", hosts[2], expect=0)
    # two operators approve at once: exactly one carries it out
    procs = [subprocess.Popen(runner(tmp_path, "approve", preview[:8], "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    winners = [r for r in results if r[0] != 2]
    losers = [r for r in results if r[0] == 2]
    assert len(winners) == 1 and len(losers) == 1, results
    assert "not awaiting approval" in losers[0][2] or "decided by someone" in losers[0][2]
    carried = json.loads(winners[0][1])
    assert carried["approves"] == preview
    by = {d["host"]: (d["status"], d["error_class"]) for d in carried["devices"]}
    assert by == {hosts[0]: ("changed", None), hosts[1]: ("changed", None),
                  hosts[2]: ("skipped", "ConfigDrift")}
    assert [devices.sessions(h) for h in hosts] == [1, 1, 1]  # the third: only "meanwhile"
    assert "snmp-server location rack-7" in devices.config(hosts[0])
    history = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    row, _ = history.get_run(preview)
    assert row["status"] == "approved" and row["decision"]["by"]


def test_a_rejected_or_expired_preview_sends_nothing(devices: Fleet, tmp_path: Path) -> None:
    hosts = devices.take(1)
    preview = previewed(tmp_path, devices, hosts, "rack-8")
    rejected = subprocess.run(runner(tmp_path, "reject", preview, "--reason", "not tonight"),
                              capture_output=True, text=True, check=True)
    assert rejected.stdout.strip() == f"rejected {preview}"
    late = subprocess.run(runner(tmp_path, "approve", preview), capture_output=True,
                          text=True, check=False)
    assert late.returncode == 2 and "it is rejected by" in late.stderr
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    assert store.get_run(preview)[0]["decision"]["reason"] == "not tonight"
    second = previewed(tmp_path, devices, hosts, "rack-9")
    # the approval window passes (as `runner serve` checks on each tick)
    assert store.expire_overdue("2999-01-01T00:00:00.000+00:00") == [second]
    expired = subprocess.run(runner(tmp_path, "approve", second), capture_output=True,
                             text=True, check=False)
    assert expired.returncode == 2 and "it is expired" in expired.stderr
    assert devices.sessions(hosts[0]) == 0


def test_serve_previews_each_occurrence_once_and_expires_what_nobody_approved(
        devices: Fleet, tmp_path: Path) -> None:
    hosts = devices.take(1)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    at = datetime.now(UTC) + timedelta(seconds=4)
    write_job(jobs, "tonight", driver="asyncssh", targets={"hosts": hosts},
              schedule={"at": at.isoformat(timespec="seconds"), "approval": "required",
                        "approval_timeout": "5s"},
              steps=[{"config": {"lines": ["snmp-server contact noc"]}}])
    serves = [Serve(tmp_path, f"sqlite:///{tmp_path / 'runner.db'}", devices.inventory,
                    f"serve{i}", jobs=jobs, engine=None, env=os.environ)
              for i in range(2)]  # two servers on one store
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    try:
        wait_for(lambda: bool(store.list_runs(5)) and store.list_runs(5)[0]["status"] in (
            "awaiting_approval", "expired"), 60, "the occurrence's preview")
        # the active server expires it when its window passes
        wait_for(lambda: store.list_runs(5)[0]["status"] == "expired", 60, "the expiry")
    finally:
        for serve in serves:
            serve.stop(30)
    runs = store.list_runs(10)
    assert len(runs) == 1 and runs[0]["dry_run"]  # one preview for the one occurrence
    assert runs[0]["decision"]["reason"] == "approval window passed"
    logs = "".join(serve.text() for serve in serves)
    assert "awaiting approval (runner approve" in logs and "expired" in logs
    assert devices.sessions(hosts[0]) == 0  # nothing was sent
