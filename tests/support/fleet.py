"""Simulated fleets (`runner lab sim` as a child process): the one Fleet view of a running
simulator, a spec of what to start, starting one for a module or once per session, and one
command on a device over SSH as any client would run it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.lab.sim.process import SimProcess
from tests.support.base import free_port


@dataclass(frozen=True)
class FleetSpec:
    """What a simulator serves: device count, first loopback address, injected faults
    (`slow=1%`, `refuse=1`...), how long a slow device waits, extra `lab sim` options."""

    devices: int
    address: str
    faults: tuple[str, ...] = ()
    slow_delay: float = 2.0
    password: str | None = None
    extra: tuple[str, ...] = ()


class Fleet:
    """A running simulator: its inventory, hosts in inventory order and their faults."""

    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim
        self.inventory = sim.inventory
        self.faults: dict[str, str] = dict(sim.state["faults"])
        hosts = yaml.safe_load((self.inventory / "hosts.yaml").read_text(encoding="utf-8"))
        self.hosts: list[str] = list(hosts)

    def healthy(self, n: int | None = None) -> list[str]:
        """The first n devices without an injected fault (all of them without n)."""
        return [h for h in self.hosts if h not in self.faults][:n]

    def with_fault(self, fault: str) -> list[str]:
        return [h for h, f in self.faults.items() if f == fault]

    @property
    def refusing(self) -> list[str]:
        return self.with_fault("refuse")

    @property
    def slow(self) -> list[str]:
        return self.with_fault("slow")


@contextmanager
def start_fleet(workdir: Path, spec: FleetSpec) -> Iterator[Fleet]:
    """A simulator serving `spec` from workdir/sim on a free port; always stopped."""
    with SimProcess(workdir / "sim", spec.devices, address=spec.address, port=free_port(),
                    faults=spec.faults, slow_delay=spec.slow_delay, password=spec.password,
                    extra=spec.extra) as sim:
        yield Fleet(sim)


class FleetPool:
    """Simulators started on first use, one per spec, all stopped by close()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._fleets: dict[FleetSpec, Fleet] = {}
        self._running = ExitStack()

    def get(self, spec: FleetSpec) -> Fleet:
        if spec not in self._fleets:
            workdir = self.workdir / f"fleet{len(self._fleets)}"
            self._fleets[spec] = self._running.enter_context(start_fleet(workdir, spec))
        return self._fleets[spec]

    def close(self) -> None:
        self._running.close()


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
