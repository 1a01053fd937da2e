"""One device's work, the same on every engine: render its config, take its lease, open a
session (with retries), run the steps within the device's time budget, and return its
record with status, error class and secrets masked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runner.drivers.base import Session, Timeouts
from runner.drivers.sessions import close_quietly
from runner.errors import (
    ConfigUnreadable,
    CoordinationFailed,
    DeviceError,
    DeviceTimeout,
    InternalError,
    RollbackFailed,
)
from runner.execution.control import liveness
from runner.execution.control.keys import device_key
from runner.execution.executor import Work
from runner.execution.leases import Coordination, LocalLeases
from runner.execution.retries import open_with_retries
from runner.inventory import platforms
from runner.inventory.fleet import FleetInventory
from runner.inventory.platforms import Platform
from runner.job import restore
from runner.job.spec import ComplianceStep, ConfigStep, JobSpec
from runner.job.steps import Change, Renderer, StepContext, apply_plan, roll_back, run_steps
from runner.records import DeviceResult, RestorePlan, StepResult, now_iso
from runner.redact import Redactor
from runner.vocab import DeviceStatus, StepKind

if TYPE_CHECKING:  # Jinja2 (runner.job.render) loads with a job's first render
    from runner.job.render import Templates

log = logging.getLogger(__name__)


def render_all(spec: JobSpec, inventory: FleetInventory, host: str,
               templates: Templates, variables: dict[str, Any],
               derived: set[str] | None = None) -> dict[int, Renderer]:
    """Config lines of every config step for one host, rendered before any session opens
    (a missing variable fails the device with nothing sent). A template that uses `steps`
    (earlier steps' results) is rendered just before its own step instead. `variables`:
    the job's vars and secret_vars; `derived` collects the rendered texts that depend on
    a secret (render.secret_dependent), which are masked like the secrets."""
    from runner.job.render import secret_dependent

    rendered: dict[int, Renderer] = {}
    platform = inventory.platform_of(host) or ""
    # A job var is NAME and vars.NAME, in templates and config lines alike.
    base = {**variables, "vars": variables, "host": inventory.template_vars(host)}
    collect = set() if derived is None else derived
    for index, step in enumerate(spec.steps):
        if isinstance(step, ComplianceStep):  # its intended config
            name: str | None = step.compliance.intended
        elif isinstance(step, ConfigStep):
            name = step.config.template
        else:
            continue
        if name is None:
            assert isinstance(step, ConfigStep)
            lines = list(step.config.lines or [])
            render = _line_renderer(templates, lines)
            later = templates.line_uses(lines, "steps")
        else:
            render = _renderer(templates, name, platform)
            later = templates.uses(name, platform, "steps")
        if later:
            rendered[index] = _deferred(render, base, spec, collect)
        else:
            out, found = secret_dependent(render, base, spec.secret_vars)
            collect |= found
            rendered[index] = _fixed(out)
    return rendered


def _renderer(templates: Templates, name: str,
              platform: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda context: templates.render(name, platform, context)


def _line_renderer(templates: Templates,
                   lines: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    return lambda context: templates.render_lines(lines, context)


def _fixed(lines: list[str]) -> Renderer:
    def render(_steps: dict[str, dict[str, Any]]) -> list[str]:
        return lines
    return render


def _deferred(renderer: Callable[[dict[str, Any]], list[str]], base: dict[str, Any],
              spec: JobSpec, derived: set[str]) -> Renderer:
    from runner.job.render import secret_dependent

    def render(steps: dict[str, dict[str, Any]]) -> list[str]:
        lines, found = secret_dependent(renderer, {**base, "steps": steps},
                                        spec.secret_vars)
        derived.update(found)
        return lines
    return render


class DeviceRunner:
    """Works single devices of one run; shared by every device an engine runs."""

    def __init__(self, work: Work, worker: str | None = None) -> None:
        self.work = work
        self.spec = work.spec
        self.inventory = work.inventory
        self.worker = worker
        self.renders = any(isinstance(s, ConfigStep | ComplianceStep)
                           for s in work.spec.steps)
        self._redactors: dict[str, Redactor] = {}
        self._shared: dict[tuple[str, tuple[object, ...]], Redactor] = {}  # see _redactor
        # Per host: rendered texts that depend on a secret (masked like secrets).
        self._derived: dict[str, set[str]] = {}
        # Secret references (the inventory's credentials, the job's secret_vars) are read
        # here, on the machine that opens the sessions, once per run.
        self.secrets = work.secret_resolver()
        self._warned_keys = False
        # Without a broker, a run that changes config locks each device on this machine.
        changes = work.restore is not None or (not work.dry_run
                                               and work.spec.changes_config)
        self.local_leases = LocalLeases(work.settings.lock_dir,
                                        f"run {work.run_id} (pid {os.getpid()})") \
            if changes else None

    @cached_property
    def templates(self) -> Templates:
        """The job's templates, made at the first render (Jinja2 loads with it)."""
        from runner.job.render import Templates

        limits = self.spec.limits
        return Templates(self.work.templates_dir, limits.rendered, limits.template_value,
                         limits.template_memory)

    async def run(self, host: str, pool: ThreadPoolExecutor,
                  coordination: Coordination | None) -> DeviceResult:
        """The device's record. With coordination (a broker), a device an earlier attempt
        of this run finished keeps that record, and the new record goes in the ledger."""
        liveness.check()  # an engine process whose run's process is gone goes no further
        if coordination is None:
            return await self._device(host, pool, None)
        # Nothing is rendered before the lease (no config step, or a restore pass): the
        # ledger and the lease in one round trip.
        at_once = not self.renders or (self.work.restore is not None
                                       and host in self.work.restore)
        held: str | None = None
        try:
            if at_once:
                address = self._address(host, self.inventory.driver_for(host,
                                                                         self.spec.driver))
                done, held = await coordination.begin_and_lease(host, address)
            else:
                done = await coordination.begin(host)
        except Exception as exc:  # the broker is down: this device cannot be coordinated
            return DeviceResult.of_error(host, CoordinationFailed(
                f"the run ledger is unreachable: {type(exc).__name__}: {exc}"[:300]),
                worker=self.worker)
        if done is not None:  # a redelivered shard: this device already has its record
            return DeviceResult.from_json(done)
        result = await self._device(host, pool, coordination, held)
        try:
            await coordination.mark_done(host, result.to_json(transport=True))
        except Exception as exc:  # the record still counts; a redelivery may redo the device
            log.warning("%s: could not mark done in the run ledger: %s", host, exc)
        return result

    def _address(self, host: str, driver: str) -> str:
        return device_key(*self.inventory.address(host, driver))

    @contextlib.asynccontextmanager
    async def _lease(self, host: str, driver: str, coordination: Coordination | None,
                     held: str | None = None) -> AsyncIterator[None]:
        """The device's lease, by its address (device_key), not by this inventory's name
        for it: the Redis lease with a broker, and, for a run that changes config, this
        machine's lock too (taken second, always in that order: a run without a broker on
        this machine waits for it as well)."""
        if coordination is None and self.local_leases is None:
            # Nothing to hold: the address is not looked up either (Nornir builds the
            # connection options anew per call, walking the groups: ~0.15 ms a device).
            yield
            return
        address = self._address(host, driver)
        async with contextlib.AsyncExitStack() as stack:
            if coordination is not None:  # `held`: begin_and_lease took it already
                await stack.enter_async_context(coordination.lease(
                    address, self.spec.busy_wait, held))
            if self.local_leases is not None:
                await stack.enter_async_context(self.local_leases.lease(address,
                                                                        self.spec.busy_wait))
            yield

    async def _device(self, host: str, pool: ThreadPoolExecutor,
                      coordination: Coordination | None,
                      held: str | None = None) -> DeviceResult:
        driver = self.inventory.driver_for(host, self.spec.driver)
        result = DeviceResult(host=host, status=DeviceStatus.OK, driver=driver,
                              started=now_iso(), worker=self.worker)
        t0 = time.monotonic()
        change = Change()
        plan = self.work.restore.get(host) if self.work.restore is not None else None
        budget = self.spec.timeouts.device
        try:
            # Rendered before the device is leased (a bad template costs no lease), in a
            # thread and within the device's budget, which the rest of its work then gets.
            rendered = await self._render(host, budget) if self.renders and not plan else {}
            async with self._lease(host, driver, coordination, held):
                result.started = now_iso()  # when it got the device, after any wait
                left = budget - (time.monotonic() - t0)
                error = await self._within_budget(host, result, pool, rendered, coordination,
                                                  change, plan, left)
                if error is not None:
                    result.fail(error)
                    if change.to_undo and not self.work.dry_run:
                        await self._roll_back(host, result, pool, change, error)
        except DeviceError as exc:  # the lease, or rendering: nothing was sent
            result.fail(exc)
        # changed: the run left the device's config changed (a rollback undid it)
        result.changed = result.status is not DeviceStatus.ROLLED_BACK and any(
            s.changed for s in result.steps if s.kind is StepKind.CONFIG)
        if result.status is DeviceStatus.OK and result.changed:
            result.status = DeviceStatus.CHANGED
        found = result.compliance if result.status is DeviceStatus.OK else None
        if found and not all(f.get("compliant") for f in found.values()):
            result.status = DeviceStatus.NON_COMPLIANT  # drift found: not a failure
        if result.status is DeviceStatus.CHANGED and change.to_undo \
                and change.current is not None and change.kept is not None:
            platform = self._platform(host)
            try:
                result.restore = RestorePlan(
                    restore.restore_lines(platform, change.current, change.kept),
                    restore.digest(platform, change.kept),
                    restore.digest(platform, change.current), change.saved)
            except ConfigUnreadable as exc:  # read once already: kept for safety's sake
                result.restore = RestorePlan([], "", "", blocked=str(exc))
        result.duration_s = round(time.monotonic() - t0, 3)
        result.finished = now_iso()
        return self._redacted(host, result)

    def _variables(self) -> dict[str, Any]:
        """The job's vars and its secret_vars' values (SecretUnavailable when one cannot be
        read on this machine: the device fails before anything is sent)."""
        return {**self.spec.vars, **self.secrets.variables(self.spec.secret_vars)}

    async def _render(self, host: str, budget: float) -> dict[int, Renderer]:
        variables = self._variables()
        derived = self._derived.setdefault(host, set())
        try:
            return await asyncio.wait_for(asyncio.to_thread(
                render_all, self.spec, self.inventory, host, self.templates, variables,
                derived), budget)
        except TimeoutError:
            raise DeviceTimeout(f"rendering its config did not finish within {budget:g}s") \
                from None

    async def _within_budget(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                             rendered: dict[int, Renderer], coordination: Coordination | None,
                             change: Change, plan: RestorePlan | None,
                             left: float) -> DeviceError | None:
        """The device's session work within what is left of its time budget; the error it
        ended with."""
        budget = self.spec.timeouts.device
        try:
            async with asyncio.timeout(max(left, 0.001)):
                if plan is not None:
                    await self._restore(host, result, pool, plan)
                else:
                    await self._session_work(host, result, pool, rendered, coordination,
                                             change)
        except DeviceError as exc:  # first: DeviceTimeout is a TimeoutError too
            if log.isEnabledFor(logging.DEBUG):  # -vv: with the library's cause, masked
                log.debug("%s: %s", host, self._redactor(host).text(
                    "".join(traceback.format_exception(exc)).rstrip()))
            return exc
        except TimeoutError:
            return DeviceTimeout(f"device did not finish within {budget:g}s")
        except Exception as exc:  # a bug must cost one device, not the run
            log.exception("internal error on %s", host)
            return InternalError(f"{type(exc).__name__}: {exc}")
        return None

    def _platform(self, host: str) -> Platform:
        platform = platforms.get(self.inventory.platform_of(host) or "")
        assert platform is not None  # checked when targets were selected
        return platform

    async def _open(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor) -> Session:
        timeouts = Timeouts(self.spec.timeouts.connect, self.spec.timeouts.command)
        driver = result.driver or self.spec.driver
        params = self.inventory.connect_params(host, driver, self.secrets)
        if not params.host_key_checking and not self._warned_keys:
            self._warned_keys = True
            log.warning("run %s: host key checking is off (inventory host_key_checking: "
                        "false): %s and others are not verified to be who they say",
                        self.work.run_id, host)
        return await open_with_retries(driver, params, timeouts, self.spec.retries, pool,
                                       result)

    async def _session_work(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                            rendered: dict[int, Renderer], coordination: Coordination | None,
                            change: Change) -> None:
        variables = self._variables()  # before the session: a missing secret sends nothing
        # a compliance check against backups alone needs no session
        session: Session = await self._open(host, result, pool) \
            if self.spec.needs_session else NoSession()
        try:
            ctx = StepContext(session, self._platform(host), result, self.work.dry_run,
                              self.spec.timeouts.command, self.work.templates_dir,
                              variables={"host": self.inventory.template_vars(host),
                                         "vars": variables},
                              before_config=(lambda: coordination.start_config(host))
                              if coordination else None, change=change,
                              approved=self.work.approved.get(host)
                              if self.work.approved is not None else None,
                              mask=lambda text: self._redactor(host).text(text),
                              max_output=self.spec.limits.output, guard=liveness.check)
            await run_steps(ctx, self.spec, rendered)
        finally:
            await asyncio.shield(close_quietly(session))

    async def _roll_back(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                         change: Change, error: DeviceError) -> None:
        """Put the device back as kept, in a session of its own (the failed one may be
        lost or mid-command) and a budget of its own; the record says how it went."""
        assert change.kept is not None
        liveness.check()
        budget = self.spec.timeouts.rollback
        reason = None
        try:
            async with asyncio.timeout(budget):
                session = await self._open(host, DeviceResult(host, DeviceStatus.OK,
                                                              driver=result.driver), pool)
                try:
                    done = await roll_back(session, self._platform(host),
                                           self.spec.timeouts.command, change.kept,
                                           change.saved)
                finally:
                    await asyncio.shield(close_quietly(session))
            result.steps.append(done.step)
            if done.back:
                result.status = DeviceStatus.ROLLED_BACK
                result.error = f"{error}; rolled back: the config is as it was before the run"
                return
            reason = done.step.error
        except DeviceError as exc:
            reason = f"{exc.error_class}: {exc}"
        except TimeoutError:
            reason = f"it did not finish within {budget:g}s"
        if reason is not None and not any(s.kind is StepKind.ROLLBACK for s in result.steps):
            result.steps.append(StepResult(name="rollback", kind=StepKind.ROLLBACK,
                                           failed=True, error=reason))
        result.fail(RollbackFailed(f"rollback failed ({reason}) after the change failed: "
                                   f"{error.error_class}: {error}"))

    async def _restore(self, host: str, result: DeviceResult, pool: ThreadPoolExecutor,
                       plan: RestorePlan) -> None:
        """The restore pass of a stopped rollout: put back a change this run made, if the
        device is still as the run left it."""
        session = await self._open(host, result, pool)
        try:
            done = await apply_plan(session, self._platform(host), self.spec.timeouts.command,
                                    plan)
        finally:
            await asyncio.shield(close_quietly(session))
        result.steps.append(done.step)
        if not done.back:
            raise RollbackFailed(done.step.error or "the config is not back")
        result.status = DeviceStatus.ROLLED_BACK

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
        if result.restore is not None:
            masked = [redactor.text(line) for line in result.restore.lines]
            if masked != result.restore.lines:  # secrets never leave: nor can it restore
                result.restore.blocked = ("the change touched lines holding secrets, which "
                                          "runner does not keep; put them back by hand")
            result.restore.lines = masked
        return result

    def _redactor(self, host: str) -> Redactor:
        name = self.inventory.platform_of(host) or ""
        derived = self._derived.get(host)
        # Hosts of one platform and one credentials_key share a redactor once what it masks
        # is settled (no reference left to read): not rebuilt, nor its key, per device.
        shared = (name, self.inventory.credentials_key(host))
        if not derived and shared in self._shared:
            return self._shared[shared]
        platform = platforms.get(name)
        values, usernames, settled = self.inventory.host_credentials(host, self.secrets)
        for spec in self.spec.secret_vars.values():
            value = self.secrets.known(spec.ref(), self.secrets.job_roots)
            if value:
                values.add(value)
            elif value is None:
                settled = False
        values |= derived or set()
        key = "\0".join([name, *sorted(values), "\1", *sorted(usernames)])
        if key not in self._redactors:  # most fleets share a handful of credentials
            self._redactors[key] = Redactor(values, platform.secret_lines if platform else (),
                                            usernames)
        if settled and not derived:
            self._shared[shared] = self._redactors[key]
        return self._redactors[key]

class NoSession:
    """The session of a device whose steps need none (compliance against its backup)."""

    driver = "none"

    async def command(self, command: str, timeout: float) -> str:
        raise InternalError(f"no session was opened, yet a step sent {command!r}")

    async def configure(self, lines: list[str], timeout: float) -> str:
        raise InternalError("no session was opened, yet a step sent config")

    async def close(self) -> None:
        return None
