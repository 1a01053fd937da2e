"""Web tier: `runner web` over its jobs, and the session's `fleet` (tests/conftest.py) is
8 simulated devices on 127.114.0.1..8: one refuses logins, one answers slowly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet, FleetSpec
from tests.support.web import Web, fleet_jobs

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
