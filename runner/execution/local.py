"""The local executor: one asyncio loop in this process works a batch's devices, up to the
job's concurrency at once. scrapli v2 and asyncssh sessions are native asyncio; netmiko's
blocking calls run in a thread pool sized to the concurrency."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from runner.execution.control.cancel import FLAG_POLL_S
from runner.execution.device import DeviceRunner
from runner.execution.executor import CancelFlag, Progress, Work
from runner.execution.leases import Coordination
from runner.vocab import Engine


class LocalExecutor:
    """Also the engine inside each engine process and each Celery shard (`worker`, `owner`
    and `coordinate` say which). With a broker in the settings, devices take the same
    leases as workers do."""

    engine = Engine.LOCAL

    def __init__(self, work: Work, *, worker: str | None = None, owner: str | None = None,
                 coordinate: bool | None = None) -> None:
        self.work = work
        self.devices = DeviceRunner(work, worker)
        self.owner = owner or f"local:{os.getpid()}:{work.run_id}"
        use = work.settings.broker_url is not None if coordinate is None else coordinate
        self.broker = work.settings.broker if use else None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def run(self, hosts: list[str], sink: Progress, cancel: CancelFlag) -> None:
        if hosts:
            asyncio.run(self.run_async(hosts, sink, cancel))

    async def run_async(self, hosts: list[str], sink: Progress, cancel: CancelFlag) -> None:
        """Devices not finished when `cancel` is set are cancelled (their sessions closed)
        and left unreported: the rollout records them as interrupted."""
        coordination = Coordination(self.broker, self.work.ledger_id, self.owner) \
            if self.broker else None
        concurrency = max(1, min(self.work.spec.concurrency, len(hosts)))
        try:
            with ThreadPoolExecutor(max_workers=concurrency,
                                    thread_name_prefix="netmiko") as pool:
                main = asyncio.ensure_future(
                    self._all(hosts, sink, pool, coordination, concurrency))
                watcher = asyncio.ensure_future(_watch(cancel, main))
                try:
                    await main
                except asyncio.CancelledError:
                    if not cancel.is_set():
                        raise
                finally:
                    watcher.cancel()
        finally:
            if coordination is not None:
                await coordination.close()

    async def _all(self, hosts: list[str], sink: Progress, pool: ThreadPoolExecutor,
                   coordination: Coordination | None, concurrency: int) -> None:
        """`concurrency` workers take the hosts in order, one device at a time each: a
        device has a task only while it is worked, so memory does not grow with the
        batch (a task per host, waiting its turn, is ~2 KiB each at 100,000 devices)."""
        todo = iter(hosts)

        async def worker() -> None:
            for host in todo:
                sink.started(host)
                record = await self.devices.run(host, pool, coordination)
                sink.finished(record)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _watch(cancel: CancelFlag, main: asyncio.Future[None]) -> None:
    while not cancel.is_set():
        await asyncio.sleep(FLAG_POLL_S)
    main.cancel()
