"""Web tier: `runner web` over its jobs, and the session's `fleet` (tests/conftest.py) is
8 simulated devices on 127.114.0.1..8: one refuses logins, one answers slowly."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import Person, chromium
from tests.support.fleet import Fleet, FleetSpec
from tests.support.jobs import write_job
from tests.support.web import Web, fleet_jobs, run_over_api

WEB_FLEET = FleetSpec(8, "127.114.0.1", faults=("refuse=1", "slow=1"), slow_delay=20)


@pytest.fixture(scope="session")
def fleet_spec() -> FleetSpec:
    return WEB_FLEET


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> Iterator[Web]:
    """`runner web` over the fleet's jobs; stopped (SIGTERM) after the module."""
    workdir = tmp_path_factory.mktemp("web")
    fleet_jobs(workdir / "jobs", fleet, workdir / "backups")
    server = Web(workdir, workdir / "jobs", fleet.inventory)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless chromium for the module's browser tests."""
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def person(browser: WebDriver, web: Web,
           tmp_path_factory: pytest.TempPathFactory) -> Person:
    """Someone at that browser, not logged in; screenshots in the module's tmp dir."""
    return Person(browser, web, tmp_path_factory.mktemp("screenshots"))


# The devices and backups story (tests/web/test_devices.py, test_browser_devices.py)
@pytest.fixture(scope="module")
def op(web: Web) -> httpx.Client:
    return web.client(web.token("operator", "devices-op"))


@pytest.fixture(scope="module")
def viewer(web: Web) -> httpx.Client:
    return web.client(web.token("viewer", "devices-noc"))


@pytest.fixture(scope="module")
def story(web: Web, fleet: Fleet, op: httpx.Client) -> dict[str, str]:
    """The ntp job (config + backup, one device refuses the login), then a second backup
    job into the same repository that changes the first healthy device again (its second
    version: an NTP server of this module's own, for the simulated devices keep their
    config from module to module), then the golden config check of another device.
    `line`: that server's config line."""
    line = f"ntp server 198.51.100.{int(re.sub(r'[^0-9]', '', web.workdir.name) or 0) + 1}"
    write_job(web.jobs, "ntp-more", description="one more NTP server, backed up",
              targets={"hosts": fleet.healthy()[:1]}, driver="asyncssh", steps=[
                  {"config": {"lines": [line]}},
                  {"backup": {"dir": str(web.workdir / "backups")}}])
    return {"ntp": run_over_api(web, op, "ntp"), "more": run_over_api(web, op, "ntp-more"),
            "golden": run_over_api(web, op, "golden"), "line": line}
