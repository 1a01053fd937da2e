"""The session drivers runner knows, by name: the class that opens a session (imported only
when a session is opened, so `runner run` with asyncssh never loads netmiko) and the
platforms.yaml attribute that names the device's platform in the driver's own terms."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Protocol, cast

from runner.drivers.base import ConnectParams, Session, Timeouts
from runner.errors import InputError
from runner.vocab import Driver


class SessionOpener(Protocol):
    """A driver class: opens one session; failures raise DeviceError subclasses."""

    @classmethod
    async def open(cls, params: ConnectParams, timeouts: Timeouts,
                   executor: ThreadPoolExecutor | None) -> Session: ...


@dataclass(frozen=True)
class DriverEntry:
    name: Driver
    module: str
    class_name: str
    # The Platform field (platforms.yaml) holding this driver's name for the platform:
    # netmiko's device_type, scrapli's definition; runner's own driver uses runner's name.
    platform_attr: str

    def load(self) -> SessionOpener:
        return cast(SessionOpener, getattr(importlib.import_module(self.module),
                                           self.class_name))


class DriverRegistry:
    """Drivers by name; registering a name twice is refused, an unknown name is an error
    naming the known ones (never a silent fallback to another driver)."""

    def __init__(self) -> None:
        self._entries: dict[str, DriverEntry] = {}

    def register(self, entry: DriverEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"driver {str(entry.name)!r} is already registered")
        self._entries[entry.name] = entry

    def get(self, name: str) -> DriverEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise InputError(f"unknown driver {name!r} (expected one of "
                             f"{', '.join(self.names())})")
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[DriverEntry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)


@cache
def builtin_drivers() -> DriverRegistry:
    registry = DriverRegistry()
    registry.register(DriverEntry(Driver.NETMIKO, "runner.drivers.netmiko", "NetmikoSession",
                                  "netmiko"))
    registry.register(DriverEntry(Driver.SCRAPLI, "runner.drivers.scrapli", "ScrapliSession",
                                  "scrapli"))
    registry.register(DriverEntry(Driver.ASYNCSSH, "runner.drivers.asyncssh",
                                  "AsyncsshSession", "asyncssh"))
    return registry


DRIVERS = tuple(Driver)  # every name the registry above holds (job schema, inventory data)
