"""Change semantics an engineer can trust, on the simulator with real processes (issue 21):
a job that needs approval reaches devices only through an approved preview or a recorded
override, from `runner run`, its reruns and `schedule run`; approving nothing is refused
and changes nothing; a dry run evaluates pre-checks, never post-checks, and previews the
diff the real run records (additions and removals); templates in `config.lines` are
rendered; `--rerun` of an empty or unknown id is an error; one lease per device whatever
an inventory calls it; who did what is recorded and shown; a scheduled occurrence's status
follows its run through approval to the carried-out run's outcome."""

from __future__ import annotations

import json
import os
import shutil
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
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import OccurrenceStatus
from tests.support.base import ME
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_job, write_job
from tests.support.serve import Serve
from tests.support.workers import RedisServer


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # slow devices answer each line after 0.4 s: a push holds its device for seconds
    with start_fleet(tmp_path_factory.mktemp("sim-trusted"),
                     FleetSpec(24, "127.121.0.1", faults=("slow=4", "refuse=1"),
                               slow_delay=0.4)) as fleet:
        yield fleet


def cli(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None,
        expect: int | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         *map(str, args)], capture_output=True, text=True, check=False, timeout=300,
        cwd=tmp_path, env=env or {**os.environ, "RUNNER_LOCK_DIR": str(tmp_path / "locks")})
    if expect is not None:
        assert proc.returncode == expect, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def show(tmp_path: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli(tmp_path, "show", run_id, "--json", expect=0).stdout)
    return data


def needs_approval(path: Path, hosts: list[str], lines: list[str], **extra: Any) -> Path:
    return write_job(path.parent, path.stem, driver="asyncssh", targets={"hosts": hosts},
                     schedule={"cron": "30 2 * * *", "approval": "required",
                               "approval_timeout": "2h"},
                     steps=[{"config": {"lines": lines}}], **extra)


# -- 1. approval from every command-line entry point ------------------------------------------


def test_a_change_that_needs_approval_reaches_devices_only_approved_or_overridden(
        devices: Fleet, tmp_path: Path) -> None:
    hosts = devices.take(2)
    refusing = devices.refusing[0]
    job = needs_approval(tmp_path / "nightly.yml", [*hosts, refusing],
                         ["snmp-server location rack-1"])
    # `runner run` without --dry-run: a preview for approval, nothing sent
    proc = cli(tmp_path, "run", job, "-i", devices.inventory, "--json", expect=0)
    preview = json.loads(proc.stdout)
    assert (preview["status"], preview["dry_run"]) == ("awaiting_approval", True)
    assert preview["started_by"] == ME and preview["override"] is None
    assert f"awaiting approval: runner approve {preview['run_id']}" in proc.stderr
    assert "needs approval (schedule.approval: required)" in proc.stderr
    assert [devices.sessions(h) for h in hosts] == [0, 0]
    # a rerun of what failed in it (the refusing device) is a preview as well
    again = run_job(tmp_path, job, devices.inventory, "--rerun", preview["run_id"], expect=0)
    assert (again["status"], again["rerun_of"]) == ("awaiting_approval", preview["run_id"])
    assert [d["host"] for d in again["devices"]] == [refusing]
    # a plain dry run stays one: nothing to approve
    dry = run_job(tmp_path, job, devices.inventory, "--dry-run", expect=1)
    assert (dry["status"], dry["approval_deadline"]) == ("failed", None)
    assert [devices.sessions(h) for h in hosts] == [0, 0]
    # the override: sent now, recorded with who and why
    forced = run_job(tmp_path, job, devices.inventory, "--no-approval", "--reason",
                     "P1: rack move tonight", expect=1)
    assert forced["dry_run"] is False and forced["started_by"] == ME
    assert forced["override"]["by"] == ME
    assert forced["override"]["reason"] == "P1: rack move tonight"
    assert [d["status"] for d in forced["devices"]] == ["changed", "changed", "auth_failed"]
    assert [devices.sessions(h) for h in hosts] == [1, 1]
    shown = cli(tmp_path, "show", forced["run_id"], expect=0).stdout
    assert f"started by {ME}" in shown
    assert f"approval overridden by {ME} at " in shown and ": P1: rack move tonight" in shown
    listed = cli(tmp_path, "history", expect=0).stdout
    assert ME in listed  # the BY column
    # an override is refused where it means nothing (exit 2, nothing sent)
    plain = write_job(tmp_path, "plain", driver="asyncssh", targets={"hosts": hosts},
                      steps=[{"config": {"lines": ["snmp-server location rack-2"]}}])
    for args, said in (
            ((plain, "--no-approval"), "needs no approval"),
            ((job, "--reason", "why"), "--reason goes with --no-approval"),
            ((job, "--no-approval", "--dry-run"), "choose one")):
        refused = cli(tmp_path, "run", args[0], "-i", devices.inventory, *args[1:], expect=2)
        assert said in refused.stderr
    assert [devices.sessions(h) for h in hosts] == [1, 1]


# -- 2. approving nothing is refused; the decision and its run are one step -------------------


def test_approving_a_preview_of_nothing_is_refused_and_leaves_it_waiting(
        devices: Fleet, tmp_path: Path) -> None:
    host, = devices.take(1)
    # every simulated device has this line already: the preview has nothing to change
    same = needs_approval(tmp_path / "same.yml", [host], ["ntp server 192.0.2.123"])
    preview = run_job(tmp_path, same, devices.inventory, expect=0)
    assert preview["status"] == "awaiting_approval"
    assert preview["summary"]["ok"] == 1 and preview["summary"]["changed"] == 0
    refused = cli(tmp_path, "approve", preview["run_id"], expect=2)
    assert "previewed no change to carry out" in refused.stderr
    after = show(tmp_path, preview["run_id"])
    assert (after["status"], after["decision"], after["carried_out_by"]) == (
        "awaiting_approval", None, None)
    assert len(ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}").list_runs(10)) == 1
    assert devices.sessions(host) == 0
    # a preview whose carrying out cannot start (its inventory is gone) is not approved
    change = needs_approval(tmp_path / "change.yml", [host], ["snmp-server location rack-3"])
    second = run_job(tmp_path, change, devices.inventory, expect=0)
    gone = cli(tmp_path, "approve", second["run_id"], "-i", tmp_path / "no-inventory",
               expect=2)
    assert "no-inventory" in gone.stderr
    assert show(tmp_path, second["run_id"])["status"] == "awaiting_approval"
    # approved: the decision names the run that carries it out, and that run the approval
    done = cli(tmp_path, "approve", second["run_id"][:8], "--json", expect=0)
    carried = json.loads(done.stdout)
    decided = show(tmp_path, second["run_id"])
    assert decided["status"] == "approved" and decided["decision"]["by"] == ME
    assert decided["decision"]["run"] == carried["run_id"]
    assert decided["carried_out_by"] == carried["run_id"]
    record = show(tmp_path, carried["run_id"])
    assert record["approves"] == second["run_id"] and record["started_by"] == ME
    assert record["approval"] == {"preview": second["run_id"], "by": ME,
                                  "at": decided["decision"]["at"]}
    text = cli(tmp_path, "show", carried["run_id"], expect=0).stdout
    assert f"carries out preview {second['run_id']}, approved by {ME} at " in text
    assert f"carried out by run {carried['run_id']}" in \
        cli(tmp_path, "show", second["run_id"], expect=0).stdout
    assert devices.sessions(host) == 1 and "snmp-server location rack-3" in devices.config(host)
    # exactly what was previewed ran: the same lines, and the same diff
    previewed = show(tmp_path, second["run_id"])["devices"][0]["steps"][0]
    sent = record["devices"][0]["steps"][0]
    assert sent["output"].splitlines()[-1:] == previewed["output"].splitlines()
    assert changes(sent["diff"]) == changes(previewed["diff"])


# -- 3 and 4. a dry run is the real diff; post-checks are not evaluated; templated lines ------


def changes(diff: str | None) -> Counter[str]:
    """A diff's added and removed config lines (not separators): what a change does."""
    return Counter(line for line in (diff or "").splitlines()
                   if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
                   and line[1:].strip() not in ("!", "exit", ""))


def test_a_dry_run_previews_the_real_diff_and_never_evaluates_post_checks(
        devices: Fleet, tmp_path: Path) -> None:
    hosts = devices.take(3)
    job = write_job(
        tmp_path, "ntp", driver="asyncssh", targets={"hosts": hosts},
        vars={"site": "ams-1"}, rollout={"batch_size": 1, "max_fail_percentage": 0},
        steps=[
            {"name": "pre", "command": "show running-config",
             "expect": ["output is search('ntp server 192.0.2.123')"]},
            {"config": {"lines": [
                "no ntp server 192.0.2.123", "ntp server 192.0.2.20",
                "no logging host 192.0.2.50",
                "interface GigabitEthernet0/2",
                " description uplink {{ vars.site }} {{ host.name }}",
                "{% if host.name == '" + hosts[0] + "' %}snmp-server location first"
                "{% endif %}"]}},
            # a post-check that verifies the change itself: false on an unchanged device
            {"name": "post", "command": "show running-config",
             "expect": ["output is search('ntp server 192.0.2.20')",
                        "'192.0.2.123' not in output"]}])
    dry = run_job(tmp_path, job, devices.inventory, "--dry-run", expect=0)
    by = {d["host"]: d for d in dry["devices"]}
    assert [by[h]["status"] for h in hosts] == ["changed"] * 3  # the stop rule never fired
    for host in hosts:
        steps = {s["name"]: s for s in by[host]["steps"]}
        assert steps["pre"]["output"] and not steps["pre"]["failed"]  # evaluated
        post = steps["post"]
        assert post["not_run"] == "not evaluated (dry run)"
        assert (post["output"], post["failed"], post["error"]) == (None, False, None)
        diff = steps["config"]["diff"]
        assert diff.startswith("--- running-config (before)\n+++ running-config (after)")
        assert {"-ntp server 192.0.2.123", "+ntp server 192.0.2.20",
                "-logging host 192.0.2.50", "- description link 2",
                f"+ description uplink ams-1 {host}"} <= set(changes(diff))
        assert ("+snmp-server location first" in changes(diff)) == (host == hosts[0])
    assert [devices.sessions(h) for h in hosts] == [0, 0, 0]
    shown = cli(tmp_path, "show", dry["run_id"], "--host", hosts[1], expect=0).stdout
    assert "== post (command) not evaluated (dry run)" in shown
    # the real run: each device's diff is the one its preview showed; post-checks pass
    real = run_job(tmp_path, job, devices.inventory, expect=0)
    for device in real["devices"]:
        steps = {s["name"]: s for s in device["steps"]}
        preview = next(s for s in by[device["host"]]["steps"] if s["name"] == "config")
        assert changes(steps["config"]["diff"]) == changes(preview["diff"]), device["host"]
        assert steps["post"]["output"] and steps["post"]["not_run"] is None
    assert f"description uplink ams-1 {hosts[2]}" in devices.config(hosts[2])
    # and pre-checks are evaluated in a dry run: one that fails fails its device
    guarded = write_job(tmp_path, "guarded", driver="asyncssh", targets={"hosts": hosts},
                        steps=[{"name": "pre", "command": "show clock",
                                "expect": [f"host.name != '{hosts[1]}'"]},
                               {"config": {"lines": ["ntp server 192.0.2.21"]}}])
    checked = run_job(tmp_path, guarded, devices.inventory, "--dry-run", expect=1)
    assert [(d["status"], d["error_class"]) for d in checked["devices"]] == [
        ("changed", None), ("failed", "CheckFailed"), ("changed", None)]


def test_templates_in_config_lines_are_rendered_or_refused_before_any_device(
        devices: Fleet, tmp_path: Path) -> None:
    host, = devices.take(1)
    job = write_job(tmp_path, "where", driver="asyncssh", targets={"hosts": [host]},
                    vars={"location": "rack-9"},
                    steps=[{"config": {"lines": ["snmp-server location {{ vars.location }}",
                                                 "snmp-server contact {{ host.name }}"]}}])
    preview = run_job(tmp_path, job, devices.inventory, "--dry-run", expect=0)
    assert preview["devices"][0]["steps"][0]["output"] == \
        f"snmp-server location rack-9\nsnmp-server contact {host}\n"
    run_job(tmp_path, job, devices.inventory, expect=0)
    config = devices.config(host)
    assert "snmp-server location rack-9" in config and "{{" not in config
    # a name the job does not give is refused at validation, naming file and line
    wrong = write_job(tmp_path, "wrong", driver="asyncssh", targets={"hosts": [host]},
                      steps=[{"config": {"lines": ["snmp-server location {{ vars.nowhere }}"]}}])
    text = wrong.read_text(encoding="utf-8")
    line = text.splitlines().index(next(t for t in text.splitlines() if "nowhere" in t)) + 1
    for args in (("validate", wrong), ("run", wrong, "-i", devices.inventory)):
        refused = cli(tmp_path, *args, expect=2)
        assert f"{wrong}:{line}: steps[0].config.lines[0]: unknown name 'nowhere'" \
            in refused.stderr, refused.stderr
    assert devices.sessions(host) == 1


# -- 5. --rerun of an empty or unknown id ----------------------------------------------------


def test_rerun_of_an_empty_or_unknown_run_is_an_error_never_everything(
        devices: Fleet, tmp_path: Path) -> None:
    host, = devices.take(1)
    refusing = devices.refusing[0]
    job = write_job(tmp_path, "push", driver="asyncssh",
                    targets={"hosts": [host, refusing]},
                    steps=[{"config": {"lines": ["logging host 192.0.2.60"]}}])
    first = run_job(tmp_path, job, devices.inventory, expect=1)  # the one run in the database
    assert devices.sessions(host) == 1
    for bad, said in (("", "empty run id"), ("   ", "empty run id"),
                      ("nosuchrun", "no run 'nosuchrun'"),
                      ("%", "no run '%'"),  # a LIKE wildcard: matched every run before
                      ("_", "no run '_'")):
        refused = cli(tmp_path, "run", job, "-i", devices.inventory, "--rerun", bad,
                      expect=2)
        assert said in refused.stderr and "--rerun" in refused.stderr, refused.stderr
    # the same for every command that takes a run id
    for command in (("show", ""), ("approve", ""), ("reject", ""), ("cancel", ""),
                    ("show", "%")):
        assert cli(tmp_path, *command).returncode == 2, command
    assert devices.sessions(host) == 1  # nothing ran again
    history = json.loads(cli(tmp_path, "history", "--json", expect=0).stdout)
    assert [r["run_id"] for r in history] == [first["run_id"]]


# -- 7. one lease per device, whatever an inventory calls it ----------------------------------


def renamed(tmp_path: Path, devices: Fleet, host: str, name: str) -> Path:
    """Another inventory for the same simulated device, under another name."""
    inventory = tmp_path / f"inventory-{name}"
    inventory.mkdir()
    for file in ("groups.yaml", "defaults.yaml"):
        shutil.copy(devices.inventory / file, inventory / file)
    (inventory / "hosts.yaml").write_text(yaml.safe_dump({name: devices.entries[host]}),
                                          encoding="utf-8")
    return inventory


@pytest.mark.parametrize("brokers", [("none", "none"), ("redis", "redis"),
                                     ("redis", "none")])
def test_two_inventories_naming_one_device_differently_share_its_lease(
        devices: Fleet, tmp_path: Path, redis_server: RedisServer,
        brokers: tuple[str, str]) -> None:
    host, = devices.take(1, devices.slow)
    other = renamed(tmp_path, devices, host, "core-router")
    lines = [f"ntp server 192.0.2.{i}" for i in range(100, 106)]
    # the device stays leased for its show commands too: ~10 s, however slowly the other
    # runs' processes start on a busy machine
    first = write_job(tmp_path, "first", driver="asyncssh", steps=[
        {"config": {"lines": lines}}, {"command": ["show clock"] * 20}])
    impatient = write_job(tmp_path, "impatient", driver="asyncssh", busy_wait=0,
                          steps=[{"config": {"lines": ["logging host 192.0.2.251"]}}])
    patient = write_job(tmp_path, "patient", driver="asyncssh", busy_wait=120,
                        steps=[{"config": {"lines": ["logging host 192.0.2.250"]}}])
    base = {**os.environ, "RUNNER_LOCK_DIR": str(tmp_path / "locks")}
    base.pop("RUNNER_BROKER_URL", None)
    envs = {"none": base, "redis": {**base, "RUNNER_BROKER_URL": redis_server.url}}

    def start(job: Path, inventory: Path, limit: str, broker: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
             "run", str(job), "-i", str(inventory), "--limit", limit, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
            env=envs[broker])

    procs = [start(first, devices.inventory, host, brokers[0])]
    wait_for(lambda: "192.0.2.100" in devices.run_on(host, "show archive log config all"),
             60, "the first run to be configuring the device")
    procs += [start(impatient, other, "core-router", brokers[1]),
              start(patient, other, "core-router", brokers[1])]
    outs = [json.loads(p.communicate(timeout=300)[0])["devices"][0] for p in procs]
    assert outs[0]["status"] == "changed"
    assert (outs[1]["host"], outs[1]["status"], outs[1]["error_class"]) == (
        "core-router", "skipped", "DeviceBusy")
    said = "its lease is held by" if brokers == ("redis", "redis") \
        else "holds its lock on this machine"
    assert said in outs[1]["error"]
    assert outs[2]["status"] == "changed" and outs[2]["started"] >= outs[0]["finished"]
    log = devices.run_on(host, "show archive log config all").splitlines()[1:]
    sessions = [line.split()[1] for line in log if line.strip()]
    assert sessions == sorted(sessions)  # each run's lines together
    assert "192.0.2.251" not in "\n".join(log)


# -- 8 and 9. who did what; an occurrence's status follows its run ----------------------------


def occurrences(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cli(
        tmp_path, "schedule", "occurrences", name, "--json", expect=0).stdout)
    return found


def test_occurrences_follow_their_runs_through_approval(devices: Fleet,
                                                        tmp_path: Path) -> None:
    hosts = devices.take(1)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "tonight", driver="asyncssh", targets={"hosts": hosts},
              schedule={"interval": "3s", "approval": "required", "approval_timeout": "2h"},
              steps=[{"config": {"lines": ["snmp-server contact noc-{{ host.name }}"]}}])
    serve = Serve(tmp_path, f"sqlite:///{tmp_path / 'runner.db'}", devices.inventory,
                  jobs=jobs, engine=None, env=os.environ)
    try:
        wait_for(lambda: sum(o["status"] == "awaiting_approval" for o in occurrences(
            tmp_path, "tonight")) >= 3, 120, "three occurrences previewed")
    finally:
        assert serve.stop(60) == 0
    found = sorted(occurrences(tmp_path, "tonight"), key=lambda o: o["occurrence"])
    waiting = [o for o in found if o["status"] == "awaiting_approval"]
    first, second, third = waiting[:3]
    assert all(o["run_status"] == "awaiting_approval" and o["decision"] is None
               for o in waiting)
    preview = show(tmp_path, first["run_id"])
    assert preview["started_by"].startswith("runner serve (")
    cli(tmp_path, "reject", first["run_id"], "--reason", "not tonight", expect=0)
    cli(tmp_path, "approve", third["run_id"], expect=0)
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    expired = store.expire_overdue((datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert second["run_id"] in expired
    after = {o["occurrence"]: o for o in occurrences(tmp_path, "tonight")}
    assert after[first["occurrence"]]["status"] == "rejected"
    assert after[first["occurrence"]]["decision"]["by"] == ME
    assert after[second["occurrence"]]["status"] == "expired"
    done = after[third["occurrence"]]
    assert (done["status"], done["run_status"]) == ("done", "approved")
    assert done["carried_out_status"] == "ok" and done["carried_out_by"]
    assert devices.sessions(hosts[0]) == 1  # only the approved occurrence changed it
    table = cli(tmp_path, "schedule", "occurrences", "tonight", expect=0).stdout
    assert "rejected" in table and "expired" in table and done["carried_out_by"] in table
    # the schedule store keeps what serve recorded; the status shown follows the runs
    stored = {o["occurrence"]: o["status"] for o in ScheduleStore(
        f"sqlite:///{tmp_path / 'runner.db'}").occurrences("tonight")}
    assert stored[third["occurrence"]] == OccurrenceStatus.AWAITING_APPROVAL


def test_who_cancelled_a_run_is_recorded_and_shown(devices: Fleet, tmp_path: Path) -> None:
    host = devices.take(1, devices.slow)[0]
    job = write_job(tmp_path, "long", driver="asyncssh", targets={"hosts": [host]},
                    timeouts={"command": 60, "device": 300},
                    steps=[{"command": ["show clock"] * 60}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         "run", str(job), "-i", str(devices.inventory), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    try:
        wait_for(lambda: bool(store.list_runs(1)), 60, "the run to start")
        run_id = str(store.list_runs(1)[0]["run_id"])
        cli(tmp_path, "cancel", run_id, expect=0)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    record = show(tmp_path, run_id)
    assert record["status"] == "interrupted"
    assert (record["started_by"], record["cancel_requested_by"]) == (ME, ME)
    text = cli(tmp_path, "show", run_id).stdout
    assert f"cancel requested by {ME} at " in text and f"started by {ME}" in text
