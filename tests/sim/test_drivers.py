"""Every driver at the edges of a session, on a small simulator of its own: a session the
device drops mid-answer is SessionLost (failed, never retried: a push may be half done),
whether a command, a config push or the driver's configure itself trips it; a connection
refused before login is ConnectFailed (unreachable) and retried."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from runner.drivers.base import Timeouts
from runner.drivers.sessions import open_session
from runner.errors import DeviceError, SessionLost
from runner.inventory.loading import load_inventory
from tests.support.base import free_port
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_job, write_job

DRIVERS = ["netmiko", "scrapli", "asyncssh"]
TIMEOUTS = {"connect": 20, "command": 20, "device": 60}
RETRIES = {"count": 2, "backoff": 0}


@pytest.fixture(scope="module")
def drop_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Twelve devices, half of them dropping their session 200 characters into any long
    answer (`show running-config`, `show version`)."""
    with start_fleet(tmp_path_factory.mktemp("sim-drop"),
                     FleetSpec(12, "127.106.0.1", faults=("drop=50%",))) as fleet:
        assert len(fleet.with_fault("drop")) == 6 and len(fleet.healthy(12)) == 6
        yield fleet


def _healthy(fleet: Fleet, driver: str) -> str:
    return fleet.healthy(6)[DRIVERS.index(driver)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_session_dropped_mid_command_is_lost_and_not_retried(drop_fleet: Fleet,
                                                              tmp_path: Path,
                                                              driver: str) -> None:
    drops = drop_fleet.with_fault("drop")[:3]
    healthy = _healthy(drop_fleet, driver)
    job = write_job(tmp_path, "show", driver=driver, timeouts=TIMEOUTS, retries=RETRIES,
                    steps=[{"name": "config", "command": "show running-config"}])
    result = run_job(tmp_path, job, drop_fleet.inventory, "--limit", ",".join([*drops, healthy]),
                 expect=1)
    devices = {d["host"]: d for d in result["devices"]}
    for host in drops:
        device = devices[host]
        assert (device["status"], device["error_class"]) == ("failed", "SessionLost"), device
        assert device["attempts"] == 1, device  # logged in once: never retried
        assert device["error"].startswith("session lost"), device
    # the same long answer arrives whole where nothing drops it
    device = devices[healthy]
    assert (device["status"], device["attempts"]) == ("ok", 1), device
    assert f"hostname {healthy}\n" in device["steps"][0]["output"]
    assert result["summary"]["failed"] == len(drops)
    assert result["summary"]["unreachable"] == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_config_push_on_a_dropping_device_is_lost_not_unreachable(drop_fleet: Fleet,
                                                                   tmp_path: Path,
                                                                   driver: str) -> None:
    drops = drop_fleet.with_fault("drop")[3:]
    job = write_job(tmp_path, "push", driver=driver, timeouts=TIMEOUTS, retries=RETRIES,
                    steps=[{"name": "push", "config": {"lines": [
                        f"ntp server 192.0.2.{DRIVERS.index(driver) + 40}"]}}])
    result = run_job(tmp_path, job, drop_fleet.inventory, "--limit", ",".join(drops), expect=1)
    assert [d["host"] for d in result["devices"]] == drops
    for device in result["devices"]:
        # the running config read before the push trips the drop
        assert (device["status"], device["error_class"]) == ("failed", "SessionLost"), device
        assert device["attempts"] == 1, device
        assert device["steps"][0]["name"] == "push"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_drop_inside_the_drivers_configure_and_command_is_session_lost(
        drop_fleet: Fleet, driver: str) -> None:
    inventory = load_inventory(drop_fleet.inventory)
    host = drop_fleet.with_fault("drop")[DRIVERS.index(driver)]
    params = inventory.connect_params(host, driver)
    timeouts = Timeouts(connect=20, command=20)

    async def lost(lines: list[str] | None) -> DeviceError:
        session = await open_session(driver, params, timeouts, None)
        try:
            if lines is None:
                await session.command("show running-config", 20)
            else:
                # one short line applied, then a line whose long answer is dropped
                await session.configure(lines, 20)
        except DeviceError as exc:
            return exc
        finally:
            await session.close()
        raise AssertionError("the session was not dropped")

    for lines in (None, ["ntp server 192.0.2.60", "do show running-config"]):
        error = asyncio.run(lost(lines))
        assert type(error) is SessionLost, (lines, error)
        assert error.status == "failed"
        # the library's own error is chained, for tracebacks
        assert error.__cause__ is not None and not isinstance(error.__cause__, DeviceError)
        assert params.password and params.password not in str(error)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_connection_is_unreachable_and_retried(drop_fleet: Fleet, tmp_path: Path,
                                                         driver: str) -> None:
    """The control for the `attempts == 1` above: the same retry policy does retry a
    connection that fails before login."""
    inventory = tmp_path / "inventory"
    shutil.copytree(drop_fleet.inventory, inventory)
    hosts_file = inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text(encoding="utf-8"))
    # an address of the range no simulated device listens on
    hosts["gone"] = {"hostname": "127.106.0.200", "port": free_port(), "groups": ["sim"]}
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False), encoding="utf-8")
    job = write_job(tmp_path, "show", driver=driver, timeouts=TIMEOUTS, retries=RETRIES,
                    steps=[{"command": "show clock"}])
    result = run_job(tmp_path, job, inventory, "--limit", "gone", expect=1)
    device = result["devices"][0]
    assert (device["status"], device["error_class"]) == ("unreachable", "ConnectFailed"), \
        device
    assert device["attempts"] == 3, device
