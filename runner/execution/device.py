"""One device's work, the same on every engine: render its config, take its lease, open a
session (with retries), run the steps within the device's time budget, and return its
record with status, error class and secrets masked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runner import platforms
from runner.drivers import Session, Timeouts
from runner.errors import CoordinationFailed, DeviceError, DeviceTimeout, InternalError
from runner.execution.executor import Work
from runner.execution.leases import Coordination
from runner.execution.retries import open_with_retries
from runner.inventory import FleetInventory
from runner.job.spec import ConfigStep, JobSpec
from runner.records import DeviceResult, now_iso
from runner.redact import Redactor
from runner.render import Templates
from runner.steps import Renderer, StepContext, run_steps
from runner.vocab import DeviceStatus, StepKind

log = logging.getLogger(__name__)


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


class DeviceRunner:
    """Works single devices of one run; shared by every device an engine runs."""

    def __init__(self, work: Work, worker: str | None = None) -> None:
        self.work = work
        self.spec = work.spec
        self.inventory = work.inventory
        self.worker = worker
        self.templates = Templates(work.templates_dir)
        self._redactors: dict[str, Redactor] = {}

    async def run(self, host: str, pool: ThreadPoolExecutor,
                  coordination: Coordination | None) -> DeviceResult:
        """The device's record. With coordination (a broker), a device an earlier attempt
        of this run finished keeps that record, and the new record goes in the ledger."""
        if coordination is None:
            return await self._device(host, pool, None)
        try:
            done = await coordination.begin(host)
        except Exception as exc:  # the broker is down: this device cannot be coordinated
            return DeviceResult.of_error(host, CoordinationFailed(
                f"the run ledger is unreachable: {type(exc).__name__}: {exc}"[:300]),
                worker=self.worker)
        if done is not None:  # a redelivered shard: this device already has its record
            return DeviceResult.from_json(done)
        result = await self._device(host, pool, coordination)
        try:
            await coordination.mark_done(host, result.to_json(with_backup=True))
        except Exception as exc:  # the record still counts; a redelivery may redo the device
            log.warning("%s: could not mark done in the run ledger: %s", host, exc)
        return result

    async def _device(self, host: str, pool: ThreadPoolExecutor,
                      coordination: Coordination | None) -> DeviceResult:
        driver = self.inventory.driver_for(host, self.spec.driver)
        result = DeviceResult(host=host, status=DeviceStatus.OK, driver=driver,
                              started=now_iso(), worker=self.worker)
        t0 = time.monotonic()
        try:
            rendered = render_all(self.spec, self.inventory, host, self.templates)
            await asyncio.wait_for(self._work(host, result, pool, rendered, coordination),
                                   self.spec.timeouts.device)
        except DeviceError as exc:  # first: DeviceTimeout is a TimeoutError too
            log.debug("%s: %s: %s", host, exc.error_class, exc, exc_info=exc)  # -vv: cause
            result.fail(exc)
        except TimeoutError:
            result.fail(DeviceTimeout(
                f"device did not finish within {self.spec.timeouts.device:g}s"))
        except Exception as exc:  # a bug must cost one device, not the run
            log.exception("internal error on %s", host)
            result.fail(InternalError(f"{type(exc).__name__}: {exc}"))
        result.changed = any(s.changed for s in result.steps if s.kind is StepKind.CONFIG)
        if result.status is DeviceStatus.OK and result.changed:
            result.status = DeviceStatus.CHANGED
        result.duration_s = round(time.monotonic() - t0, 3)
        result.finished = now_iso()
        return self._redacted(host, result)

    async def _work(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                    rendered: dict[int, Renderer], coordination: Coordination | None) -> None:
        if coordination is None:
            await self._session_work(host, result, pool, rendered, None)
            return
        async with coordination.lease(host, self.spec.busy_wait):
            result.started = now_iso()  # when it got the device, after any wait
            await self._session_work(host, result, pool, rendered, coordination)

    async def _session_work(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                            rendered: dict[int, Renderer],
                            coordination: Coordination | None) -> None:
        platform = platforms.get(self.inventory.hosts[host].platform or "")
        assert platform is not None  # checked when targets were selected
        timeouts = Timeouts(self.spec.timeouts.connect, self.spec.timeouts.command)
        driver = result.driver or self.spec.driver
        session = await open_with_retries(driver, self.inventory.connect_params(host, driver),
                                          timeouts, self.spec.retries, pool, result)
        try:
            ctx = StepContext(session, platform, result, self.work.dry_run,
                              self.spec.timeouts.command, self.work.templates_dir,
                              before_config=(lambda: coordination.start_config(host))
                              if coordination else None)
            await run_steps(ctx, self.spec, rendered)
        finally:
            await asyncio.shield(_close_quietly(session))

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


async def _close_quietly(session: Session) -> None:
    with contextlib.suppress(TimeoutError, DeviceError):
        await asyncio.wait_for(session.close(), 10)
