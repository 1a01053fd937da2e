"""A simulated fleet's layout (names, addresses, faults) and the client files it writes:
a Nornir inventory, known_hosts and a state file."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from runner.drivers.sshlib import asyncssh
from runner.errors import InputError
from runner.lab.sim.server import FAULTS, FleetConfig, SimDevice

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
STATE = "sim.json"
HOST_KEY = "ssh_host_ed25519_key"
KNOWN_HOSTS = "known_hosts"


def parse_faults(values: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`slow=2%` (share of devices) or `slow=5` (that many devices) -> {fault: percent or -n}."""
    faults: dict[str, float] = {}
    for value in values:
        m = re.fullmatch(r"(\w+)=(\d+(?:\.\d+)?)(%?)", value.strip())
        if not m or m.group(1) not in FAULTS:
            raise InputError(f"{value!r}: expected NAME=PERCENT% or NAME=COUNT with "
                             f"NAME one of {', '.join(FAULTS)}", field="--fault")
        amount = float(m.group(2))
        if m.group(3) and amount > 100:
            raise InputError(f"{value!r}: a share is at most 100%", field="--fault")
        faults[m.group(1)] = amount if m.group(3) else -amount
    return faults


@dataclass(frozen=True)
class Slot:
    """One device's place in the fleet: what the inventory says of it (and, seeded, the
    configuration it starts with)."""

    index: int  # 1-based: the device's number (its name, serial and addresses follow it)
    name: str
    address: str
    port: int
    fault: str | None
    config: str | None = None  # --configs: its running config (None: the default one)


def _addresses(address: str, count: int) -> list[str]:
    """`count` loopback addresses from `address` on, skipping .0 and .255."""
    try:
        first = ipaddress.IPv4Address(address)
    except ValueError:
        raise InputError(f"{address!r}: expected an IPv4 address",
                         field="--address") from None
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if first not in loopback:
        raise InputError(f"{address}: not a loopback address (127.x.y.z)",
                         field="--address")
    # .0 and .255 are skipped: 254 devices per /24. Checked before a single one is made.
    start = int(first)
    room = _usable_below(int(loopback.broadcast_address) + 1) - _usable_below(start)
    if count > room:
        raise InputError(f"{address}: {count} devices run past 127.255.255.254 "
                         f"(the simulator stays on loopback; {room} fit from there)",
                         field="--address")
    addresses: list[str] = []
    current = start
    while len(addresses) < count:
        if current & 0xFF not in (0, 255):
            addresses.append(str(ipaddress.IPv4Address(current)))
        current += 1
    return addresses


def layout(count: int, address: str, port: int, faults: dict[str, float],
           seed: int) -> list[Slot]:
    """Devices sim0001.. on consecutive loopback addresses; faults on seeded random picks."""
    addresses = _addresses(address, count)
    counts = {name: round(count * amount / 100) if amount >= 0 else int(-amount)
              for name, amount in faults.items()}
    if sum(counts.values()) > count:
        raise InputError(f"{sum(counts.values())} faulty devices asked for, but "
                         f"the fleet has {count}", field="--fault")
    picks = random.Random(seed).sample(range(count), sum(counts.values()))  # noqa: S311
    fault_of: dict[int, str] = {}
    for name, n in counts.items():
        for index in picks[:n]:
            fault_of[index] = name
        picks = picks[n:]
    width = max(4, len(str(count)))
    return [Slot(i + 1, f"sim{i + 1:0{width}d}", addr, port, fault_of.get(i))
            for i, addr in enumerate(addresses)]


def seeded_layout(configs: dict[str, str], address: str, port: int) -> list[Slot]:
    """One device per config, named after its key, whose running config is that text
    (a twin of backed-up devices), on consecutive loopback addresses; no faults."""
    return [Slot(i + 1, name, addr, port, None, text) for i, ((name, text), addr) in
            enumerate(zip(configs.items(), _addresses(address, len(configs)), strict=True))]


def read_configs(directory: Path) -> dict[str, str]:
    """DIR/<name>.cfg files (named as backups name them), by device name."""
    from runner.job.backups import host_of

    configs = {host_of(p.name): p.read_text(encoding="utf-8")
               for p in sorted(directory.glob("*.cfg"))}
    if not configs:
        raise InputError(f"{directory}: no <name>.cfg files in it", field="--configs")
    return configs


def _usable_below(value: int) -> int:
    """How many addresses below `value` end in neither .0 nor .255."""
    return value // 256 * 254 + max(0, min(value % 256 - 1, 254))


def build(count: int, address: str, port: int, faults: dict[str, float], seed: int,
          username: str, password: str, slow_delay: float,
          enable_secret: str | None = None) -> FleetConfig:
    """The whole fleet served by one process."""
    return serving(layout(count, address, port, faults, seed), username, password,
                   slow_delay, enable_secret)


def serving(slots: list[Slot], username: str, password: str, slow_delay: float,
            enable_secret: str | None = None) -> FleetConfig:
    """The devices of `slots`, ready to serve (each gets its configuration, the seeded or
    the default one, at its first login)."""
    fleet = FleetConfig(username=username, password=password, slow_delay=slow_delay,
                        enable_secret=enable_secret)
    fleet.devices = [SimDevice(name=s.name, address=s.address, port=s.port, index=s.index,
                               fault=s.fault, config=s.config) for s in slots]
    return fleet


def host_key(directory: Path) -> asyncssh.SSHKey:
    """The fleet's host key: kept in the directory, so clients' known_hosts stay valid."""
    path = directory / HOST_KEY
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    return key


class Placed(Protocol):
    """A device as the inventory sees it (a Slot, or a SimDevice being served)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def fault(self) -> str | None: ...


def write_files(directory: Path, devices: Sequence[Placed], fleet: FleetConfig,
                key: asyncssh.SSHKey) -> Path:
    """inventory/{hosts,groups,defaults}.yaml and known_hosts for `devices` (with the
    credentials of `fleet`); returns the inventory dir."""
    public = key.export_public_key("openssh").decode().split()
    known = directory / KNOWN_HOSTS
    known.write_text("".join(
        f"[{d.address}]:{d.port},{d.name} {public[0]} {public[1]}\n" for d in devices),
        encoding="utf-8")
    hosts: dict[str, Any] = {}
    for d in devices:
        data: dict[str, Any] = {"sim_fault": d.fault} if d.fault else {}
        hosts[d.name] = {"hostname": d.address, "port": d.port, "groups": ["sim"],
                         **({"data": data} if data else {})}
    secret = {"secret": fleet.enable_secret} if fleet.enable_secret else {}
    defaults = {
        "username": fleet.username, "password": fleet.password, "platform": "cisco_ios",
        "connection_options": {
            "netmiko": {"extras": {"ssh_strict": True, "system_host_keys": False,
                                   "alt_host_keys": True, "alt_key_file": str(known),
                                   **secret}},
            "scrapli": {"extras": {"known_hosts_path": str(known),
                                   "enable_strict_key": True, **secret}},
            "asyncssh": {"extras": {"known_hosts": str(known), **secret}},
        },
    }
    inv = directory / "inventory"
    inv.mkdir(parents=True, exist_ok=True)
    header = "# generated by `runner lab sim`; rewritten on every start\n---\n"
    for name, data in (("hosts", hosts), ("groups", {"sim": {"data": {"lab": "sim"}}}),
                       ("defaults", defaults)):
        path = inv / f"{name}.yaml"
        # libyaml's emitter where present: 100,000 hosts take seconds, not a minute.
        text = yaml.dump(data, Dumper=_DUMPER, sort_keys=False)
        path.write_text(header + text, encoding="utf-8")
        path.chmod(0o600)  # the password is inside
    return inv


def read_state(directory: Path) -> dict[str, Any] | None:
    """The running simulator's state, or None when none runs from this directory."""
    try:
        state: dict[str, Any] = json.loads((directory / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state
