"""Simulated fleets (`runner lab sim` as a child process): the one Fleet view of a running
simulator (its hosts, faults and each device's own account over SSH), a spec of what to
start, starting one for a module or once per session, and one command on a device over SSH
as any client would run it. Test modules start simulators only through here
(tests/unit/test_test_layout.py): each spec names a 127.x block no other spec uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """A running simulator: its inventory, hosts in inventory order (and each one's inventory
    entry), their faults, and what each device says over SSH."""

    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim
        self.inventory = sim.inventory
        self.faults: dict[str, str] = dict(sim.state["faults"])
        hosts = yaml.safe_load((self.inventory / "hosts.yaml").read_text(encoding="utf-8"))
        self.hosts: list[str] = list(hosts)
        self.entries: dict[str, dict[str, Any]] = dict(hosts)
        self.used: set[str] = set()

    @property
    def defaults(self) -> dict[str, Any]:
        """The inventory's defaults.yaml (a fresh copy: callers may change it)."""
        return dict(yaml.safe_load((self.inventory / "defaults.yaml").read_text(
            encoding="utf-8")))

    @property
    def password(self) -> str:
        return str(self.defaults["password"])

    def take(self, n: int, pool: list[str] | None = None) -> list[str]:
        """n healthy devices (or of `pool`) that no earlier take() handed out: a test that
        compares a device's config before and after has it to itself."""
        free = [h for h in (pool or self.healthy()) if h not in self.used][:n]
        assert len(free) == n, "the fleet has too few devices"
        self.used.update(free)
        return free

    def run_on(self, host: str, command: str) -> str:
        return on_device(self.inventory, host, command)

    def config(self, host: str) -> str:
        """The device's running config after its first `!` line (no timestamp header)."""
        return self.run_on(host, "show running-config").split("\n!", 1)[1]

    def archive(self, host: str) -> str:
        """The device's own log of config lines, by config session (IOS `archive log`)."""
        return self.run_on(host, "show archive log config all")

    def sessions(self, host: str) -> int:
        """Config sessions the device has seen (its archive log)."""
        log = self.archive(host).splitlines()[1:]
        return len({line.split()[1] for line in log if line.strip()})

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
