"""Opening a session with a named driver, and closing one whose outcome is settled."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from runner.drivers.base import ConnectParams, Session, Timeouts
from runner.drivers.registry import builtin_drivers
from runner.errors import DeviceError

CLOSE_TIMEOUT_S = 10.0


async def open_session(driver: str, params: ConnectParams, timeouts: Timeouts,
                       executor: ThreadPoolExecutor | None) -> Session:
    """Open a session with the named driver; failures raise DeviceError subclasses (an
    unknown driver name: InputError). `executor` runs blocking drivers' calls (netmiko);
    None: the event loop's default executor."""
    return await builtin_drivers().get(driver).load().open(params, timeouts, executor)


async def close_quietly(session: Session) -> None:
    """Close a session whose outcome is settled: a close that fails or hangs changes
    nothing (given CLOSE_TIMEOUT_S)."""
    with contextlib.suppress(TimeoutError, DeviceError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):  # no task of its own, as wait_for makes
            await session.close()
