"""Session drivers: netmiko (threads), scrapli v2 and runner's own asyncssh driver (asyncio),
behind one async interface, found by name in the driver registry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from runner.drivers.base import ConnectParams, Session, Timeouts
from runner.drivers.registry import builtin_drivers


async def open_session(driver: str, params: ConnectParams, timeouts: Timeouts,
                       executor: ThreadPoolExecutor | None) -> Session:
    """Open a session with the named driver; failures raise DeviceError subclasses (an
    unknown driver name: InputError). `executor` runs blocking drivers' calls (netmiko);
    None: the event loop's default executor."""
    return await builtin_drivers().get(driver).load().open(params, timeouts, executor)


__all__ = ["ConnectParams", "Session", "Timeouts", "open_session"]
