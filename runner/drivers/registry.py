"""The session drivers runner knows, by name: the class that opens a session (imported only
when a session is opened, so `runner run` with asyncssh never loads netmiko) and the
platforms.yaml attribute that names the device's platform in the driver's own terms."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Protocol, cast

from runner.drivers.base import ConnectParams, Session, Timeouts
from runner.registry import Registry
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


class DriverRegistry(Registry[DriverEntry]):
    """Drivers by name (never a silent fallback to another driver)."""

    def __init__(self) -> None:
        super().__init__("driver", lambda entry: entry.name)


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
