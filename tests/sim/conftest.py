"""Simulator tier: the session's `fleet` (tests/conftest.py) is 1,000 devices with injected
faults."""

from __future__ import annotations

import pytest

from tests.support.fleet import FleetSpec

# A slow device waits 60 s before each answer: past the tests' command timeout.
SIM_FLEET = FleetSpec(1000, "127.101.0.1", faults=("slow=1%", "refuse=1%", "drop=1%", "hang=5"),
                      slow_delay=60.0)


@pytest.fixture(scope="session")
def fleet_spec() -> FleetSpec:
    return SIM_FLEET
