"""Golden config on the simulator (IOS-like): drift found per feature on many devices at
once, remediated (with every driver) and compliant again; a remediation whose post-check
fails is rolled back; one that needs approval is previewed, approved and carried out; a
check against backups opens no session (a device nothing answers on is still judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.base import free_port
from tests.support.fleet import Fleet, FleetSpec, on_device, start_fleet
from tests.support.jobs import write_job

DEVICES = 24
INTENDED = """hostname {{ host.name }}
ntp server 192.0.2.123
logging host 192.0.2.50
interface GigabitEthernet0/1
 description link 1
"""
FEATURES = [{"name": "ntp", "match": ["ntp server"]},
            {"name": "logging", "match": ["logging host"]},
            {"name": "links", "match": ["interface GigabitEthernet0/1"],
             "ignore": ["^(ip address|duplex|speed) "]}]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("sim-golden"),
                     FleetSpec(DEVICES, "127.124.0.1")) as fleet:
        yield fleet


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "golden.j2").write_text(INTENDED, encoding="utf-8")
    return tmp_path


def golden(project: Path, hosts: list[str], *after: dict[str, Any], actual: str = "running",
           **fields: Any) -> Path:
    return write_job(project, "golden", hosts=hosts, **{"driver": "asyncssh", **fields}, steps=[
        {"name": "golden", "compliance": {"intended": "golden.j2", "actual": actual,
                                          "backups": str(project / "backups"),
                                          "features": FEATURES}}, *after])


def cli(project: Path, inventory: Path, *args: str, expect: int | None = 0,
        json_out: bool = True) -> dict[str, Any]:
    argv = [sys.executable, "-m", "runner", "--db", f"sqlite:///{project / 'r.db'}", *args]
    if args[0] in ("run", "remediate", "approve"):
        argv += ["-i", str(inventory)] if args[0] != "approve" else []
        argv += ["--templates", str(project / "templates")] if args[0] != "approve" else []
    proc = subprocess.run([*argv, *(["--json"] if json_out else [])], capture_output=True,
                          text=True, check=False, cwd=project, timeout=300)
    if expect is not None:
        assert proc.returncode == expect, proc.stderr + proc.stdout
    return json.loads(proc.stdout) if json_out else {"stderr": proc.stderr,
                                                     "stdout": proc.stdout}


def drift(project: Path, inventory: Path, hosts: list[str]) -> None:
    """Someone changed these devices' logging host and link description."""
    job = write_job(project, "drift", hosts=hosts, driver="asyncssh", steps=[{"config": {"lines": [
        "no logging host 192.0.2.50", "logging host 192.0.2.66",
        "interface GigabitEthernet0/1", " description changed by hand"]}}])
    cli(project, inventory, "run", str(job))


def by_host(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["host"]: d for d in result["devices"]}


@pytest.mark.parametrize(("driver", "first"), [("asyncssh", 0), ("netmiko", 8),
                                               ("scrapli", 16)])
def test_drift_found_across_devices_remediated_and_compliant_again(
        sim: Fleet, project: Path, driver: str, first: int) -> None:
    inventory = sim.inventory
    hosts = sim.hosts[first:first + 6]
    job = golden(project, hosts, driver=driver)
    clean = cli(project, inventory, "run", str(job))
    assert clean["summary"]["ok"] == 6
    drifted = hosts[:2]
    drift(project, inventory, drifted)

    found = cli(project, inventory, "run", str(job), expect=3)
    devices = by_host(found)
    for host in hosts:
        want = "non_compliant" if host in drifted else "ok"
        assert devices[host]["status"] == want, devices[host]
    logging = devices[drifted[0]]["compliance"]["logging"]
    assert logging["missing"] == ["logging host 192.0.2.50"]
    assert logging["extra"] == ["logging host 192.0.2.66"]
    links = devices[drifted[0]]["compliance"]["links"]
    assert links["remediation"] == ["interface GigabitEthernet0/1", " description link 1",
                                    " exit"]
    assert devices[drifted[0]]["compliance"]["ntp"]["compliant"]

    done = cli(project, inventory, "remediate", found["run_id"])
    assert sorted(d["host"] for d in done["devices"]) == sorted(drifted)
    assert {d["status"] for d in done["devices"]} == {"changed"}
    assert done["remediates"] == found["run_id"]
    for host in drifted:  # what the device says now
        config = on_device(inventory, host, "show running-config")
        assert "logging host 192.0.2.50" in config and "192.0.2.66" not in config
        assert "description changed by hand" not in config
    assert cli(project, inventory, "run", str(job))["summary"]["ok"] == 6


def test_a_remediation_whose_post_check_fails_is_rolled_back(sim: Fleet,
                                                             project: Path) -> None:
    inventory = sim.inventory
    host = sim.hosts[22]
    checked = {"command": "show running-config", "expect": ["'never there' in output"]}
    job = golden(project, [host])
    drift(project, inventory, [host])
    before = on_device(inventory, host, "show running-config")
    found = cli(project, inventory, "run", str(job), expect=3)
    golden(project, [host], checked)  # the job now has a post-check that cannot pass
    done = cli(project, inventory, "remediate", found["run_id"], expect=1)
    device = done["devices"][0]
    assert (device["status"], device["error_class"]) == ("rolled_back", "CheckFailed")
    assert on_device(inventory, host, "show running-config").split("\n!", 1)[1] == \
        before.split("\n!", 1)[1]


def test_a_remediation_that_needs_approval_is_previewed_then_carried_out(
        sim: Fleet, project: Path) -> None:
    inventory = sim.inventory
    host = sim.hosts[20]
    job = golden(project, [host], schedule={"cron": "0 3 * * *", "approval": "required"})
    drift(project, inventory, [host])
    found = cli(project, inventory, "run", str(job), expect=3)  # no approval to check
    preview = cli(project, inventory, "remediate", found["run_id"])
    shown = cli(project, inventory, "show", preview["run_id"])
    assert shown["status"] == "awaiting_approval" and shown["remediates"] == found["run_id"]
    assert "192.0.2.66" in on_device(inventory, host, "show running-config")  # nothing sent
    carried = cli(project, inventory, "approve", preview["run_id"])
    assert carried["remediates"] == found["run_id"]
    assert carried["devices"][0]["status"] == "changed"
    assert "192.0.2.66" not in on_device(inventory, host, "show running-config")


def test_a_check_against_backups_needs_no_session(sim: Fleet, project: Path) -> None:
    inventory = sim.inventory
    hosts = sim.hosts[6:8]
    backup = write_job(project, "backup", hosts=hosts, driver="asyncssh",
                       steps=[{"backup": {"dir": str(project / "backups")}}])
    cli(project, inventory, "run", str(backup))
    # the second device's address now answers nothing: a session could not open
    moved = project / "inventory"
    moved.mkdir()
    for name in ("groups.yaml", "defaults.yaml"):
        (moved / name).write_text((inventory / name).read_text(encoding="utf-8"),
                                  encoding="utf-8")
    table = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
    table[hosts[1]]["port"] = free_port()
    (moved / "hosts.yaml").write_text(yaml.safe_dump(table), encoding="utf-8")
    job = golden(project, hosts, actual="backup")
    result = cli(project, moved, "run", str(job))
    assert [d["status"] for d in result["devices"]] == ["ok", "ok"]
    commit = step_parsed(result["devices"][1])["source"]
    assert commit.startswith("backup ")
    missing = golden(project, [sim.hosts[9]], actual="backup")
    alone = cli(project, inventory, "run", str(missing), expect=1)["devices"][0]
    assert alone["error_class"] == "NoBackup" and "run a backup job first" in alone["error"]


def step_parsed(device: dict[str, Any]) -> dict[str, Any]:
    return dict(next(s for s in device["steps"] if s["kind"] == "compliance")["parsed"])
