"""Simulator fixtures: one `runner lab sim` process serving 1,000 devices with injected
faults, shared by the session's tests and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from runner.lab.sim.process import SimProcess
from tests.conftest import free_port

DEVICES = 1000
FAULTS = ["slow=1%", "refuse=1%", "drop=1%", "hang=5"]
# A slow device waits this long before each answer: past the tests' command timeout.
SLOW_DELAY = 60.0


class Fleet:
    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim
        self.inventory = sim.inventory
        self.faults: dict[str, str] = dict(sim.state["faults"])
        hosts = yaml.safe_load((self.inventory / "hosts.yaml").read_text(encoding="utf-8"))
        self.hosts: list[str] = list(hosts)

    def healthy(self, n: int) -> list[str]:
        return [h for h in self.hosts if h not in self.faults][:n]

    def with_fault(self, fault: str) -> list[str]:
        return [h for h, f in self.faults.items() if f == fault]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir: Path = tmp_path_factory.mktemp("sim")
    sim = SimProcess(workdir / "sim", DEVICES, address="127.101.0.1", port=free_port(),
                     faults=FAULTS, slow_delay=SLOW_DELAY)
    try:
        sim.start()
        yield Fleet(sim)
    finally:
        sim.stop()


def on_device(inventory: Path, host: str, command: str) -> str:
    """One command on a simulated device over SSH, as any client would run it (host key
    checked against the simulator's known_hosts); carriage returns dropped."""
    import asyncio

    import asyncssh

    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((inventory / "defaults.yaml").read_text(encoding="utf-8"))

    async def go() -> str:
        async with asyncssh.connect(
                hosts[host]["hostname"], hosts[host]["port"], username=defaults["username"],
                password=defaults["password"],
                known_hosts=str(inventory.parent / "known_hosts")) as conn:
            return str((await conn.run(command)).stdout).replace("\r", "")
    return asyncio.run(go())
