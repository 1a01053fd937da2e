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
    """A driver, by convention from its name alone (the Driver enum is the one list): its
    module runner.drivers.<name> holds class <Name>Session, and platforms.yaml's field
    <name> names the platform in the driver's own terms (netmiko's device_type, scrapli's
    definition; runner's own driver uses runner's name)."""

    name: Driver

    @property
    def module(self) -> str:
        return f"{__package__}.{self.name.value}"

    @property
    def class_name(self) -> str:
        return f"{self.name.value.capitalize()}Session"

    @property
    def platform_attr(self) -> str:
        return self.name.value

    def load(self) -> SessionOpener:
        return cast(SessionOpener, getattr(importlib.import_module(self.module),
                                           self.class_name))


class DriverRegistry(Registry[DriverEntry]):
    """Drivers by name (never a silent fallback to another driver)."""

    def __init__(self) -> None:
        super().__init__("driver", lambda entry: entry.name)


@cache
def builtin_drivers() -> DriverRegistry:
    """Every driver of the Driver vocabulary."""
    registry = DriverRegistry()
    for name in Driver:
        registry.register(DriverEntry(name))
    return registry
