"""Session drivers: netmiko (threads), scrapli v2 and runner's own asyncssh driver (asyncio),
behind one async interface."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from runner.drivers.base import Session, Timeouts
from runner.inventory import ConnectParams


async def open_session(driver: str, params: ConnectParams, timeouts: Timeouts,
                       executor: ThreadPoolExecutor) -> Session:
    """Open a session with the named driver; failures raise DeviceError subclasses."""
    if driver == "asyncssh":
        from runner.drivers.asyncssh import AsyncsshSession

        return await AsyncsshSession.open(params, timeouts)
    if driver == "scrapli":
        from runner.drivers.scrapli import ScrapliSession

        return await ScrapliSession.open(params, timeouts)
    from runner.drivers.netmiko import NetmikoSession

    return await NetmikoSession.open(params, timeouts, executor)


__all__ = ["Session", "Timeouts", "open_session"]
