"""runner at 1,000 devices on the simulator: every device exactly one record, injected
faults classified right, sessions bounded by their timeouts, the same records from one
engine process or several; and every driver works against the simulator."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_job, write_job

EXPECTED = {  # injected fault -> (status, error class)
    "slow": ("timed_out", "DeviceTimeout"),
    "hang": ("timed_out", "DeviceTimeout"),
    "refuse": ("auth_failed", "AuthFailed"),
    "drop": ("failed", "SessionLost"),
}


# The command timeout sits far above how long a healthy device may wait for its answer
# while the simulator works through 1,000 logins at once (seconds, on a slow machine) and
# far below SLOW_DELAY, so only injected faults time out.
SHOW_JOB = {"driver": "asyncssh", "concurrency": 1000,
            "timeouts": {"connect": 60, "command": 20, "device": 120},
            "steps": [{"name": "version", "command": "show version", "parse": "textfsm"},
                      {"name": "config", "command": "show running-config"}]}


def essentials(device: dict[str, Any]) -> tuple[Any, ...]:
    steps = tuple((s["name"], s["parsed"], s["failed"]) for s in device["steps"])
    return device["status"], device["error_class"], steps


def test_a_thousand_devices_one_record_each_faults_classified(fleet: Fleet,
                                                             tmp_path: Path) -> None:
    job = write_job(tmp_path, "show", **SHOW_JOB)
    results = {}
    kept = tmp_path / ".runner" / "inventory"  # RUNNER_HOME's, in the run's directory
    first_kept = 0
    for processes in ("2", "1"):
        result = run_job(tmp_path, job, fleet.inventory, "--processes", processes, expect=1)
        # the first run kept the loaded hosts file, the second read it (and so touched it)
        (kept_file,) = kept.iterdir()
        touched = kept_file.stat().st_mtime_ns
        if processes == "1":
            assert touched > first_kept
            assert fleet.password.encode() not in kept_file.read_bytes()
        first_kept = touched
        devices = result["devices"]
        assert [d["host"] for d in devices] == fleet.hosts  # each once, in inventory order
        results[processes] = {d["host"]: d for d in devices}
        for host, device in results[processes].items():
            fault = fleet.faults.get(host)
            if fault is None:
                assert device["status"] == "ok", device
                version = device["steps"][0]["parsed"][0]
                index = int(host[3:])
                assert version["hostname"] == host
                assert version["serial"] == [f"9SIM{index:08d}"]  # this device, no other
                assert f"hostname {host}\n" in device["steps"][1]["output"]
                # the simulator's secret lines reach no record
                assert "s1mC0mmunity" not in device["steps"][1]["output"]
                assert "snmp-server community ******** RO" in device["steps"][1]["output"]
            else:
                assert (device["status"], device["error_class"]) == EXPECTED[fault], device
                # bounded: every session ends by its own timeouts, well inside the device's
                assert device["duration_s"] < SHOW_JOB["timeouts"]["device"]
        summary = result["summary"]
        assert summary["ok"] == len(fleet.hosts) - len(fleet.faults)
        assert summary["timed_out"] == len(fleet.with_fault("slow")) + \
            len(fleet.with_fault("hang"))
        # the results database holds exactly one row per device for the run
        db = sqlite3.connect(tmp_path / "runner.db")
        rows = db.execute("select count(*), count(distinct host) from devices where run_id = ?",
                          (result["run_id"],)).fetchone()
        db.close()
        assert rows == (len(fleet.hosts), len(fleet.hosts))
    # one engine process or several: the same records
    assert {h: essentials(d) for h, d in results["1"].items()} == \
        {h: essentials(d) for h, d in results["2"].items()}
    for fault in ("slow", "hang", "refuse", "drop"):
        assert fleet.with_fault(fault), f"the fixture injects {fault}"


def login(fleet: Fleet, host: str) -> Any:
    """An SSH login to a simulated device, as any client makes it (awaitable, or a context
    manager), host key checked against the simulator's known_hosts."""
    hosts = yaml.safe_load((fleet.inventory / "hosts.yaml").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((fleet.inventory / "defaults.yaml").read_text(encoding="utf-8"))
    return asyncssh.connect(
        hosts[host]["hostname"], hosts[host]["port"], username=defaults["username"],
        password=defaults["password"], known_hosts=str(fleet.inventory.parent / "known_hosts"))


def read_startup(fleet: Fleet, host: str, command: str) -> str:
    async def go() -> str:
        async with login(fleet, host) as conn:
            return str((await conn.run(command)).stdout)
    return asyncio.run(go())


@pytest.mark.parametrize("driver", ["netmiko", "scrapli", "asyncssh"])
def test_every_driver_configures_the_simulated_devices(fleet: Fleet, tmp_path: Path,
                                                       driver: str) -> None:
    offset = {"netmiko": 0, "scrapli": 3, "asyncssh": 6}[driver]
    hosts = fleet.healthy(9)[offset:offset + 3]
    job = write_job(tmp_path, "push", driver=driver, steps=[
        {"name": "push", "config": {"lines": [
            "interface GigabitEthernet0/2", f" description pushed by {driver}",
            "ntp server 192.0.2.201"], "save": True}},
        {"name": "check", "command": "show interfaces description"}])
    first = run_job(tmp_path, job, fleet.inventory, "--limit", ",".join(hosts), expect=0)
    for device in first["devices"]:
        assert device["status"] == "changed", device
        diff = device["steps"][0]["diff"]
        assert "+ description pushed by " + driver in diff
        assert "- description link 2" in diff and "+ntp server 192.0.2.201" in diff
        assert f"pushed by {driver}" in device["steps"][1]["output"]
        saved = read_startup(fleet, device["host"], "show startup-config")
        assert f"description pushed by {driver}" in saved  # save: write memory ran
    again = run_job(tmp_path, job, fleet.inventory, "--limit", ",".join(hosts), expect=0)
    assert {d["status"] for d in again["devices"]} == {"ok"}


def test_rejected_config_line_is_reported_with_the_platform_text(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    host = fleet.healthy(12)[-1]
    job = write_job(tmp_path, "bad", driver="asyncssh", steps=[
        {"config": {"lines": ["logging host 192.0.2.9", "frobnicate everything",
                              "ntp server 192.0.2.10"]}}])
    result = run_job(tmp_path, job, fleet.inventory, "--limit", host, expect=1)
    device = result["devices"][0]
    assert device["status"] == "failed" and device["error_class"] == "CommandRejected"
    assert "% Invalid input detected at '^' marker." in device["error"]
    step = device["steps"][0]
    assert "+logging host 192.0.2.9" in step["diff"]  # applied before the bad line
    assert "192.0.2.10" not in step["diff"]  # nothing after it was sent


def test_simulator_command_line_errors(tmp_path: Path, fleet: Fleet) -> None:
    bad = subprocess.run([sys.executable, "-m", "runner", "lab", "sim", "--fault", "melt=3%",
                          "--dir", str(tmp_path / "x")], capture_output=True, text=True,
                         check=False, timeout=60)
    assert bad.returncode == 2 and "melt=3%" in bad.stderr and "slow, refuse" in bad.stderr
    assert not (tmp_path / "x").exists()
    twice = subprocess.run([sys.executable, "-m", "runner", "lab", "sim", "-n", "2",
                            "--dir", str(fleet.sim.directory), "--address", "127.102.0.1"],
                           capture_output=True, text=True, check=False, timeout=60)
    assert twice.returncode == 1 and "already serves" in twice.stderr


def test_the_simulator_inventory_drives_nornir_and_netmiko(fleet: Fleet) -> None:
    from nornir import InitNornir
    from nornir_netmiko.tasks import netmiko_send_command

    inv = fleet.inventory
    nr = InitNornir(runner={"plugin": "threaded", "options": {"num_workers": 5}},
                    inventory={"plugin": "SimpleInventory", "options": {
                        "host_file": str(inv / "hosts.yaml"),
                        "group_file": str(inv / "groups.yaml"),
                        "defaults_file": str(inv / "defaults.yaml")}},
                    logging={"enabled": False})
    chosen = set(fleet.healthy(5))
    nr = nr.filter(filter_func=lambda h: h.name in chosen)
    result = nr.run(task=netmiko_send_command, command_string="show ip interface brief",
                    use_textfsm=True)
    nr.close_connections()
    assert set(result) == chosen and not result.failed
    for host, multi in result.items():
        rows = multi[0].result
        assert rows[0]["interface"] == "GigabitEthernet0/0"
        index = int(host[3:])
        assert rows[1]["ip_address"] == f"10.1.{index // 250}.{index % 250 + 1}"


def test_typing_at_the_simulated_cli_like_a_person(fleet: Fleet) -> None:
    host = fleet.healthy(1)[0]

    async def go() -> str:
        async with login(fleet, host) as conn:
            proc = await conn.create_process(term_type="vt100")
            # a typo fixed with backspace; a line abandoned with Ctrl-C; then leave
            proc.stdin.write("show clokk\x7f\x7fck\r")
            proc.stdin.write("configure bogus\x03")
            proc.stdin.write("exit\r")
            return str(await asyncio.wait_for(proc.stdout.read(), 30))

    out = asyncio.run(go())
    # what was echoed depends on how the keystrokes were packed; what ran does not
    assert "\r\n*12:00:00.000 UTC" in out  # `show clock` ran, the typo did not
    assert f"^C\r\n{host}#" in out and "Invalid input" not in out
    assert out.endswith("exit\r\n")


ENABLE_SECRET = "En4ble-s3cret-x9"


@pytest.fixture(scope="module")
def enable_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Six devices whose logins land in user exec: `enable` asks for a secret."""
    with start_fleet(tmp_path_factory.mktemp("sim-enable"), FleetSpec(
            6, "127.105.0.1", extra=("--enable-secret", ENABLE_SECRET))) as fleet:
        yield fleet.inventory


@pytest.mark.parametrize("driver", ["netmiko", "scrapli", "asyncssh"])
def test_every_driver_enters_enable_mode_with_the_secret(enable_fleet: Path, tmp_path: Path,
                                                        driver: str) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in ("hosts.yaml", "groups.yaml", "defaults.yaml"):
        text = (enable_fleet / name).read_text(encoding="utf-8")
        (wrong / name).write_text(text.replace(ENABLE_SECRET, "Wr0ng-s3cret-x9"),
                                  encoding="utf-8")
    job = write_job(tmp_path, "enable", driver=driver,
                    timeouts={"connect": 20, "command": 20, "device": 60},
                    steps=[{"config": {"lines": [f"ntp server 192.0.2.{len(driver)}"]}},
                           {"name": "privilege", "command": "show privilege"}])
    good = run_job(tmp_path, job, enable_fleet, "--limit", "sim0001,sim0002", expect=0)
    for device in good["devices"]:
        assert device["status"] in ("ok", "changed"), device
        assert device["steps"][1]["output"].strip() == "Current privilege level is 15"
    bad = run_job(tmp_path, job, wrong, "--limit", "sim0003", expect=1)
    device = bad["devices"][0]
    assert (device["status"], device["error_class"]) == ("auth_failed", "AuthFailed")
    assert device["error"] == "enable refused: the secret was not accepted"
    stored = (tmp_path / "runner.db").read_bytes()
    for secret in (ENABLE_SECRET.encode(), b"Wr0ng-s3cret-x9"):
        assert secret not in stored
