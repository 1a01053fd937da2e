"""The engine: runs a job's steps on many devices at once and returns one record per device.

One asyncio loop drives every device. scrapli v2 sessions are native asyncio; netmiko's
blocking calls run in a thread pool sized to the job's concurrency. A device's failure is
data (status + error class) and never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner import platforms
from runner.drivers import Session, Timeouts, open_session
from runner.errors import ConnectFailed, DeviceError, DeviceTimeout
from runner.inventory import FleetInventory
from runner.job.spec import ConfigStep, JobSpec
from runner.records import SUCCESS, DeviceResult
from runner.redact import Redactor
from runner.render import Templates
from runner.steps import Renderer, StepContext, run_steps

if TYPE_CHECKING:
    from runner.dispatch.coordination import Coordination

log = logging.getLogger(__name__)
DeviceCallback = Callable[[DeviceResult], None]


class CancelFlag(Protocol):
    """threading.Event, or multiprocessing's Event across engine processes."""

    def is_set(self) -> bool: ...


@dataclass
class EngineOptions:
    templates_dir: Path
    dry_run: bool = False
    on_device_done: DeviceCallback | None = None
    # Set from another thread to stop the run: devices in flight end as failed
    # (Interrupted), devices not started as skipped.
    cancel: CancelFlag | None = None
    # Redis coordination (device leases, run ledger) when runs share devices with others.
    coordination: CoordinationSpec | None = None
    worker: str | None = None
    # Engine processes: None/0 = one per usable core for large runs, 1 = this process only.
    processes: int | None = None


@dataclass(frozen=True)
class CoordinationSpec:
    url: str
    run_id: str
    owner: str  # unique per attempt: a redelivered shard is a different owner


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def render_all(spec: JobSpec, inventory: FleetInventory, host: str,
               templates: Templates) -> dict[int, Renderer]:
    """Config lines of every config step for one host, rendered before any session opens
    (a missing variable fails the device with nothing sent). A template that uses `steps`
    (earlier steps' results) is rendered just before its own step instead."""
    rendered: dict[int, Renderer] = {}
    platform = inventory.hosts[host].platform or ""
    base = {**spec.vars, "host": inventory.template_vars(host)}
    for index, step in enumerate(spec.steps):
        if not isinstance(step, ConfigStep):
            continue
        name = step.config.template
        if name is None:
            rendered[index] = _fixed(list(step.config.lines or []))
        elif templates.uses(name, platform, "steps"):
            rendered[index] = _deferred(templates, name, platform, base)
        else:
            rendered[index] = _fixed(templates.render(name, platform, base))
    return rendered


def _fixed(lines: list[str]) -> Renderer:
    def render(_steps: dict[str, dict[str, Any]]) -> list[str]:
        return lines
    return render


def _deferred(templates: Templates, name: str, platform: str,
              base: dict[str, Any]) -> Renderer:
    def render(steps: dict[str, dict[str, Any]]) -> list[str]:
        return templates.render(name, platform, {**base, "steps": steps})
    return render


class Engine:
    def __init__(self, spec: JobSpec, inventory: FleetInventory, options: EngineOptions) -> None:
        self.spec = spec
        self.inventory = inventory
        self.options = options
        self.templates = Templates(options.templates_dir)
        self.coordination: Coordination | None = None
        self._redactors: dict[str, Redactor] = {}

    async def _open(self, driver: str, host: str, executor: ThreadPoolExecutor,
                    result: DeviceResult) -> Session:
        """Open a session, retrying connection failures (never auth) with backoff."""
        retries = self.spec.retries
        params = self.inventory.connect_params(host, driver)
        timeouts = Timeouts(self.spec.timeouts.connect, self.spec.timeouts.command)
        for attempt in range(retries.count + 1):
            result.attempts = attempt + 1
            try:
                return await open_session(driver, params, timeouts, executor)
            except ConnectFailed:
                if attempt == retries.count:
                    raise
            delay = min(retries.max_backoff, retries.backoff * 2 ** attempt)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

    async def _work(self, host: str, result: DeviceResult, executor: ThreadPoolExecutor,
                    rendered: dict[int, Renderer]) -> None:
        if self.coordination is None:
            await self._session_work(host, result, executor, rendered)
            return
        async with self.coordination.lease(host, self.spec.busy_wait):
            result.started = now_iso()  # when it got the device, after any wait
            await self._session_work(host, result, executor, rendered)

    async def _session_work(self, host: str, result: DeviceResult,
                            executor: ThreadPoolExecutor,
                            rendered: dict[int, Renderer]) -> None:
        platform = platforms.get(self.inventory.hosts[host].platform or "")
        assert platform is not None  # checked when targets were selected
        session = await self._open(result.driver or "netmiko", host, executor, result)
        coordination = self.coordination
        try:
            ctx = StepContext(session, platform, result, self.options.dry_run,
                              self.spec.timeouts.command, self.options.templates_dir,
                              before_config=(lambda: coordination.start_config(host))
                              if coordination else None)
            await run_steps(ctx, self.spec, rendered)
        finally:
            await asyncio.shield(_close_quietly(session))

    async def device(self, host: str, executor: ThreadPoolExecutor) -> DeviceResult:
        if self.coordination is None:
            return await self._device(host, executor)
        try:
            done = await self.coordination.done_record(host)
        except Exception as exc:  # the broker is down: this device cannot be coordinated
            return DeviceResult(host=host, status="failed", error_class="CoordinationFailed",
                                worker=self.options.worker, finished=now_iso(),
                                error=f"the run ledger is unreachable: {type(exc).__name__}: "
                                      f"{exc}"[:300])
        if done is not None:  # a redelivered shard: this device already has its record
            return DeviceResult.from_json(done)
        result = await self._device(host, executor)
        try:
            await self.coordination.mark_done(host, result.to_json(with_backup=True))
        except Exception as exc:  # the record still counts; a redelivery may redo the device
            log.warning("%s: could not mark done in the run ledger: %s", host, exc)
        return result

    async def _device(self, host: str, executor: ThreadPoolExecutor) -> DeviceResult:
        driver = self.inventory.driver_for(host, self.spec.driver)
        result = DeviceResult(host=host, status="ok", driver=driver, started=now_iso(),
                              worker=self.options.worker)
        t0 = time.monotonic()
        try:
            rendered = render_all(self.spec, self.inventory, host, self.templates)
            await asyncio.wait_for(self._work(host, result, executor, rendered),
                                   self.spec.timeouts.device)
        except DeviceError as exc:  # first: DeviceTimeout is a TimeoutError too
            self._fail(result, exc)
        except TimeoutError:
            self._fail(result, DeviceTimeout(
                f"device did not finish within {self.spec.timeouts.device:g}s"))
        except Exception as exc:  # a bug must cost one device, not the run
            log.exception("internal error on %s", host)
            result.status, result.error_class = "failed", "InternalError"
            result.error = f"{type(exc).__name__}: {exc}"
        result.changed = any(s.changed for s in result.steps if s.kind == "config")
        if result.status == "ok" and result.changed:
            result.status = "changed"
        result.duration_s = round(time.monotonic() - t0, 3)
        result.finished = now_iso()
        return self._redacted(host, result)

    @staticmethod
    def _fail(result: DeviceResult, exc: DeviceError) -> None:
        result.status, result.error_class, result.error = exc.status, exc.error_class, str(exc)

    def _redacted(self, host: str, result: DeviceResult) -> DeviceResult:
        """The one boundary where secrets are masked out of a record."""
        redactor = self._redactor(host)
        result.error = redactor.text(result.error) if result.error else None
        for step in result.steps:
            step.output = redactor.text(step.output) if step.output else step.output
            step.diff = redactor.text(step.diff) if step.diff else step.diff
            step.error = redactor.text(step.error) if step.error else step.error
            step.parsed = redactor.value(step.parsed)
        if result.backup is not None:
            result.backup = redactor.text(result.backup)
        return result

    def _redactor(self, host: str) -> Redactor:
        nornir_host = self.inventory.nornir.hosts[host]
        platform = platforms.get(nornir_host.platform or "")
        secrets = frozenset(self.inventory.secrets([host]))
        key = f"{nornir_host.platform}\0" + "\0".join(sorted(secrets))
        if key not in self._redactors:  # most fleets share a handful of credentials
            self._redactors[key] = Redactor(secrets, platform.secrets if platform else ())
        return self._redactors[key]

    def _record(self, records: dict[str, DeviceResult], result: DeviceResult) -> None:
        records[result.host] = result
        if self.options.on_device_done:
            self.options.on_device_done(result)

    async def run(self, hosts: list[str]) -> list[DeviceResult]:
        """Every host gets exactly one record, in `hosts` order."""
        records: dict[str, DeviceResult] = {}
        started: set[str] = set()
        workers = max(1, min(self.spec.concurrency, len(hosts)))
        spec = self.options.coordination
        if spec is not None:
            from runner.dispatch.coordination import Coordination  # redis: only when shared

            self.coordination = Coordination(spec.url, spec.run_id, spec.owner)
        try:
            return await self._run(hosts, records, started, workers)
        finally:
            if self.coordination is not None:
                await self.coordination.close()

    async def _run(self, hosts: list[str], records: dict[str, DeviceResult],
                   started: set[str], workers: int) -> list[DeviceResult]:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netmiko") as executor:
            main = asyncio.ensure_future(self._batches(hosts, records, started, executor))
            watcher = asyncio.ensure_future(self._watch_cancel(main))
            try:
                await main
            except asyncio.CancelledError:
                if not (self.options.cancel and self.options.cancel.is_set()):
                    raise
                for host in hosts:
                    if host in records:
                        continue
                    in_flight = host in started
                    self._record(records, DeviceResult(
                        host=host, status="failed" if in_flight else "skipped",
                        error_class="Interrupted", finished=now_iso(),
                        error="run interrupted while this device was in progress; its "
                              "configuration may be partly changed" if in_flight else
                              "run interrupted before this device started"))
            finally:
                watcher.cancel()
        return [records[h] for h in hosts]

    async def _watch_cancel(self, main: asyncio.Future[None]) -> None:
        cancel = self.options.cancel
        if cancel is None:
            return
        while not cancel.is_set():
            await asyncio.sleep(0.2)
        main.cancel()

    async def _batches(self, hosts: list[str], records: dict[str, DeviceResult],
                       started: set[str], executor: ThreadPoolExecutor) -> None:
        semaphore = asyncio.Semaphore(self.spec.concurrency)

        async def one(host: str) -> None:
            async with semaphore:
                started.add(host)
                result = await self.device(host, executor)
            self._record(records, result)

        for batch in batches(hosts, self.spec):
            await asyncio.gather(*(one(h) for h in batch))
            stop = self._rollout_stopped(records, len(hosts))
            if stop:
                for host in hosts:
                    if host not in records:
                        self._record(records, DeviceResult(
                            host=host, status="skipped", error=stop,
                            error_class="RolloutStopped"))
                return

    def _rollout_stopped(self, records: dict[str, DeviceResult], total: int) -> str | None:
        return rollout_stop(self.spec, records, total)


def rollout_stop(spec: JobSpec, records: dict[str, DeviceResult], total: int) -> str | None:
    """Why the rollout stops after this batch, or None to go on."""
    rollout = spec.rollout
    if rollout is None or len(records) >= total:
        return None
    failed = sum(1 for r in records.values() if r.status not in SUCCESS)
    percent = 100.0 * failed / len(records)
    if percent > rollout.max_fail_percentage:
        return (f"rollout stopped: {failed} of {len(records)} devices failed "
                f"({percent:.0f}% > max_fail_percentage {rollout.max_fail_percentage:g})")
    return None


def batches(hosts: list[str], spec: JobSpec) -> list[list[str]]:
    """The rollout's batches (one batch without a rollout)."""
    if spec.rollout is None or not hosts:
        return [hosts]
    size = spec.rollout.batch_size
    n = math.ceil(len(hosts) * int(size[:-1]) / 100) if isinstance(size, str) else size
    n = max(1, n)
    return [hosts[i:i + n] for i in range(0, len(hosts), n)]


async def _close_quietly(session: Session) -> None:
    with contextlib.suppress(TimeoutError, DeviceError):
        await asyncio.wait_for(session.close(), 10)


def run_devices(spec: JobSpec, hosts: list[str], inventory: FleetInventory,
                options: EngineOptions) -> list[DeviceResult]:
    """Run the job on `hosts`: in this process, or over one engine process per core for
    large runs (options.processes); the function every front end calls."""
    from runner import multiproc

    processes = multiproc.process_count(options.processes, len(hosts))
    if processes > 1:
        return multiproc.run_in_processes(spec, hosts, inventory, options, processes)
    return asyncio.run(Engine(spec, inventory, options).run(hosts))
