"""Opening a device's session with the job's retry policy: connection failures (nothing
answered, nothing sent) are retried with jittered exponential backoff; auth, host-key and
mid-session failures never are."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

from runner.drivers.base import ConnectParams, Session, Timeouts
from runner.drivers.sessions import open_session
from runner.errors import ConnectFailed
from runner.job.spec import Retries
from runner.records import DeviceResult


def backoff(retries: Retries, attempt: int) -> float:
    """Seconds before retry number `attempt + 1`: doubling, capped, with jitter so a
    fleet that failed together does not retry together."""
    delay = min(retries.max_backoff, retries.backoff * float(2 ** attempt))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


async def open_with_retries(driver: str, params: ConnectParams, timeouts: Timeouts,
                            retries: Retries, executor: ThreadPoolExecutor,
                            result: DeviceResult) -> Session:
    """A session, or the last attempt's error; result.attempts counts the attempts."""
    for attempt in range(retries.count + 1):
        result.attempts = attempt + 1
        try:
            return await open_session(driver, params, timeouts, executor)
        except ConnectFailed:
            if attempt == retries.count:
                raise
        await asyncio.sleep(backoff(retries, attempt))
    raise AssertionError("unreachable")
