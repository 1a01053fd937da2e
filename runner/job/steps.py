"""What each step kind does on one device's open session, and how a failed change is put
back; failures raise DeviceErrors after the step's partial result is recorded."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.drivers.base import Session
from runner.errors import (
    CheckFailed,
    CommandRejected,
    ConfigDrift,
    NoBackup,
    NotCompliant,
    OutputTooLarge,
)
from runner.inventory.platforms import Platform
from runner.job import diffing, restore
from runner.job.parsing import parse
from runner.job.spec import BackupStep, CommandStep, ComplianceStep, ConfigStep, JobSpec
from runner.records import ApprovedChange, DeviceResult, RestorePlan, StepResult
from runner.vocab import ActualSource, StepKind

if TYPE_CHECKING:  # hier_config loads with the first config or compliance step, not before
    from runner.job import compliance

# Config lines of a step, given the results so far ({step name: {output, parsed}}).
Renderer = Callable[[dict[str, dict[str, Any]]], list[str]]


@dataclass
class Change:
    """What rollback needs to know about one device's change so far."""

    kept: str | None = None  # running config before the first config step with rollback
    touched: bool = False  # config was sent: the device may differ from `kept`
    saved: bool = False  # a config step wrote memory: a rollback writes it again
    current: str | None = None  # the running config after the last config step

    @property
    def to_undo(self) -> bool:
        return self.kept is not None and self.touched


@dataclass
class StepContext:
    session: Session
    platform: Platform
    result: DeviceResult
    dry_run: bool
    command_timeout: float
    templates_dir: Path
    # What `expect:` conditions may name besides output/parsed: host and vars.
    variables: dict[str, Any] = field(default_factory=dict)
    # Awaited right before config is first sent (the run ledger's no-second-push guard).
    before_config: Callable[[], Awaitable[None]] | None = None
    change: Change = field(default_factory=Change)
    # Carrying out an approved preview: what was approved, and the record's masking (the
    # preview's lines were stored masked).
    approved: ApprovedChange | None = None
    mask: Callable[[str], str] = str
    max_output: int = 16 * 1024 * 1024  # the job's limits.output
    # Called right before each config push: ends an engine process whose run's process is
    # gone (runner.execution.control.liveness), so no device is changed by a run nobody controls.
    guard: Callable[[], None] | None = None


def _checked(ctx: StepContext, step: StepResult, output: str) -> str:
    """Record output; a failure indicator in it fails the step and the device."""
    if len(output) > ctx.max_output:
        step.output = output[:ctx.max_output // 16] + "\n..."
        step.failed = True
        step.error = (f"the answer has {len(output):,} characters, more than the job's "
                      f"limits.output ({ctx.max_output:,}); kept its start")
        raise OutputTooLarge(step.error)
    step.output = output
    rejected = ctx.platform.rejected(output)
    if rejected:
        step.failed, step.error = True, f"device rejected input: {rejected}"
        raise CommandRejected(step.error)
    return output


RECHECK_S = 2.0  # how often expect_within runs a command again


async def run_command(ctx: StepContext, step: CommandStep, name: str) -> None:
    if step.wait:
        await asyncio.sleep(step.wait)
    for command in step.commands:
        record = StepResult(name=name if len(step.commands) == 1 else command,
                            kind=StepKind.COMMAND)
        ctx.result.steps.append(record)
        loop = asyncio.get_running_loop()
        deadline, tries = loop.time() + step.expect_within, 0
        while True:
            tries += 1
            try:
                await _command_once(ctx, step, command, record)
                break
            except CheckFailed as exc:
                left = deadline - loop.time()
                if left <= 0:
                    if tries > 1:
                        exc = CheckFailed(f"{exc} (after {tries} tries in "
                                          f"{step.expect_within:g}s)")
                    record.failed, record.error = True, str(exc)
                    raise exc from None
                await asyncio.sleep(min(RECHECK_S, left))


async def _command_once(ctx: StepContext, step: CommandStep, command: str,
                        record: StepResult) -> None:
    output = await ctx.session.command(command, ctx.command_timeout)
    _checked(ctx, record, output)
    record.parsed = None
    if step.parse is not None:
        try:  # in a thread: a slow parse counts against the device budget, not the loop
            record.parsed = await asyncio.to_thread(
                parse, output, step.parse, platform=ctx.platform.ntc_templates,
                command=command, templates_dir=ctx.templates_dir)
        except Exception as exc:
            record.failed, record.error = True, str(exc)
            raise
    for condition in step.expect:
        from runner.job.checks import check  # Jinja2 loads with the first check

        check(condition, {"output": output, "parsed": record.parsed, **ctx.variables})


async def _running(ctx: StepContext, extra_volatile: tuple[re.Pattern[str], ...] = ()) -> str:
    return await running_config(ctx.session, ctx.platform, ctx.command_timeout,
                                extra_volatile)


async def running_config(session: Session, platform: Platform, timeout: float,
                         extra_volatile: tuple[re.Pattern[str], ...] = ()) -> str:
    """The device's running config with its volatile lines dropped."""
    text = await session.command(platform.running_config, timeout)
    return diffing.normalize(text, (*platform.volatile, *extra_volatile))


def _as_approved(ctx: StepContext, index: int, lines: list[str], before: str) -> None:
    """ConfigDrift unless this is the change that was approved, on the config it was
    previewed on."""
    approved = ctx.approved
    if approved is None:
        return
    if ctx.change.current is None and restore.digest(ctx.platform, before) != approved.digest:
        raise ConfigDrift("the running config changed since the approved preview: the "
                          "change was not pushed onto a config it was not made for")
    if ctx.mask("\n".join(lines) + "\n") != approved.lines.get(str(index)):
        raise ConfigDrift("the change renders differently now than in the approved preview "
                          "(its template, variables or inventory changed): not pushed")


async def run_config(ctx: StepContext, save: bool, name: str, lines: list[str],
                     rollback: bool, index: int = 0) -> None:
    record = StepResult(name=name, kind=StepKind.CONFIG)
    ctx.result.steps.append(record)
    change = ctx.change
    before = change.current if ctx.dry_run and change.current is not None \
        else await _running(ctx)
    record.digest = restore.digest(ctx.platform, before)
    _as_approved(ctx, index, lines, before)
    if rollback and change.kept is None:
        change.kept = before
    if ctx.dry_run:
        would = diffing.preview(before, lines, ctx.platform)
        record.diff = would.diff  # the diff a real run would record
        record.changed = bool(record.diff)
        record.output = "\n".join(lines) + "\n"  # what would be sent
        # later steps preview against the config as this one would leave it
        change.current = would.after
        return
    if ctx.guard is not None:
        ctx.guard()
    if ctx.before_config is not None:
        await ctx.before_config()
    change.touched = True
    transcript = await ctx.session.configure(lines, ctx.command_timeout)
    try:
        _checked(ctx, record, transcript)
    finally:
        after = await _running(ctx)  # even a rejected change may have applied some lines
        change.current = after
        record.diff = diffing.unified(before, after)
        record.changed = bool(record.diff)
    if save and record.changed:
        change.saved = True
        saved = await ctx.session.command(ctx.platform.save_config, ctx.command_timeout)
        _checked(ctx, record, transcript + "\n" + saved)


async def _actual(ctx: StepContext, spec: ComplianceStep) -> tuple[str, str]:
    """The config a compliance step judges, and where it came from."""
    if spec.compliance.actual is ActualSource.RUNNING:
        return await _running(ctx), str(ActualSource.RUNNING)
    from runner.job.backups import BackupRepo

    repo = BackupRepo(Path(spec.compliance.backups))
    found = await asyncio.to_thread(repo.latest, ctx.result.host)
    if found is None:
        raise NoBackup(f"{ctx.result.host} has no backup in {repo.path} to compare with "
                       "(actual: backup): run a backup job first")
    commit, text = found
    return diffing.normalize(text, ctx.platform.volatile), f"backup {commit[:12]}"


def _intended(ctx: StepContext, step: ComplianceStep, lines: list[str]) -> list[str]:
    """The intended config as it is compared: against a backup, whose secret values are
    masked, with its own secrets masked the same way (a secret line is then compared
    without its value)."""
    if step.compliance.actual is ActualSource.BACKUP:
        return ctx.mask("\n".join(lines)).splitlines()
    return lines


def _judged(ctx: StepContext, name: str, results: dict[str, compliance.FeatureResult],
            source: str) -> StepResult:
    from runner.job import compliance

    record = StepResult(name=name, kind=StepKind.COMPLIANCE,
                        output=compliance.report(results),
                        parsed={"source": source,
                                "features": {f: r.to_json() for f, r in results.items()}})
    ctx.result.steps.append(record)
    return record


async def run_compliance(ctx: StepContext, step: ComplianceStep, name: str,
                         intended: list[str], rollback: bool, index: int) -> None:
    """Judge each feature of the device's config against the intended one; with
    `remediate`, push the non-compliant features' remediation as a config step would (a
    preview in a dry run), then judge again: still not compliant fails the device."""
    from runner.job import compliance

    spec = step.compliance
    actual, source = await _actual(ctx, step)
    intended = _intended(ctx, step, intended)
    results = await asyncio.to_thread(compliance.check, ctx.platform, spec, intended, actual)
    _judged(ctx, name, results, source)
    fix = compliance.remediation(results)
    if not spec.remediate or not fix:
        return
    if ctx.dry_run:  # the preview starts from the config just read
        ctx.change.current = ctx.change.current or actual
    await run_config(ctx, False, f"{name}: remediation", fix, rollback, index)
    after = ctx.change.current
    assert after is not None
    wrong = [f for f, r in results.items() if not r.compliant]
    again = await asyncio.to_thread(compliance.check, ctx.platform, spec, intended, after,
                                    wrong)
    record = _judged(ctx, f"{name}: after remediation", again,
                     "preview" if ctx.dry_run else str(ActualSource.RUNNING))
    still = [f for f, r in again.items() if not r.compliant]
    if still:
        record.failed = True
        record.error = (f"{'would still not be' if ctx.dry_run else 'still not'} compliant "
                        f"after the remediation: {', '.join(still)}")
        raise NotCompliant(record.error)


async def run_backup(ctx: StepContext, step: BackupStep, name: str) -> None:
    record = StepResult(name=name, kind=StepKind.BACKUP)
    ctx.result.steps.append(record)
    extra = tuple(re.compile(p) for p in step.backup.volatile)
    ctx.result.backup = await _running(ctx, extra)
    # `changed` (the file differs from the last backup) is set when the run commits.


NOT_EVALUATED = "not evaluated (dry run)"


def not_evaluated(ctx: StepContext, step: CommandStep, name: str) -> None:
    """A post-check in a dry run: recorded, not sent. The device was not changed, so its
    answer would say nothing about the change (and its checks would fail a change that
    verifies itself); it neither fails the device nor counts toward the rollout's stop
    rule."""
    for command in step.commands:
        ctx.result.steps.append(StepResult(
            name=name if len(step.commands) == 1 else command, kind=StepKind.COMMAND,
            not_run=NOT_EVALUATED))


async def run_steps(ctx: StepContext, spec: JobSpec, rendered: dict[int, Renderer]) -> None:
    after_change = False  # a command step after a config step is a post-check
    for index, step in enumerate(spec.steps):
        name = spec.step_name(index)
        if isinstance(step, CommandStep):
            if ctx.dry_run and after_change:
                not_evaluated(ctx, step, name)
            else:
                await run_command(ctx, step, name)
        elif isinstance(step, ConfigStep | ComplianceStep):
            done = {s.name: {"output": s.output, "parsed": s.parsed} for s in ctx.result.steps}
            lines = await asyncio.to_thread(rendered[index], done)  # within the budget
            rollback = spec.rolls_back_step(index)
            if isinstance(step, ConfigStep):
                after_change = True
                await run_config(ctx, step.config.save, name, lines, rollback, index)
            else:
                after_change = after_change or step.compliance.remediate
                await run_compliance(ctx, step, name, lines, rollback, index)
        else:
            await run_backup(ctx, step, name)
    change = ctx.change
    if ctx.dry_run and change.kept is not None and change.current is not None:
        ctx.result.steps.append(StepResult(
            name="rollback (if a step fails)", kind=StepKind.ROLLBACK,
            output="\n".join(restore.restore_lines(ctx.platform, change.current,
                                                    change.kept)) + "\n"))


@dataclass
class Restored:
    """How a rollback went: its step record, and whether the config is back."""

    step: StepResult
    back: bool


async def roll_back(session: Session, platform: Platform, timeout: float, kept: str,
                    save: bool, name: str = "rollback") -> Restored:
    """Send the inverse of the difference between the device's config and `kept`, then
    read the config again and compare (volatile lines masked)."""
    record = StepResult(name=name, kind=StepKind.ROLLBACK)
    current = await running_config(session, platform, timeout)
    lines = restore.restore_lines(platform, current, kept)
    transcript = ""
    if lines:
        transcript = await session.configure(lines, timeout)
        rejected = platform.rejected(transcript)
        if rejected:
            record.error = f"device rejected a rollback line: {rejected}"
    after = await running_config(session, platform, timeout)
    record.output = transcript or "(nothing to send: the config was as kept)"
    record.diff = diffing.unified(current, after, "running-config (rollback)")
    back = restore.same_config(platform, after, kept)
    if back and save and lines:
        transcript += "\n" + await session.command(platform.save_config, timeout)
        record.output = transcript
    if not back:
        left = diffing.unified(kept, after, "running-config (kept vs now)")
        record.failed = True
        record.error = (record.error + "; " if record.error else "") + \
            f"the config is not back as kept ({left.count(chr(10))} lines differ)"
        record.diff = (record.diff or "") + left
    record.changed = bool(lines)
    return Restored(record, back)


async def apply_plan(session: Session, platform: Platform, timeout: float,
                     plan: RestorePlan) -> Restored:
    """Roll back a change this run made earlier, from its plan: only if the device is
    still as the run left it; checked against the fingerprint of the kept config."""
    record = StepResult(name="rollback (rollout stopped)", kind=StepKind.ROLLBACK)
    if plan.blocked:
        record.failed, record.error = True, plan.blocked
        return Restored(record, False)
    current = await running_config(session, platform, timeout)
    if restore.digest(platform, current) != plan.after_digest:
        record.failed = True
        record.error = "its config changed since this run changed it: not rolled back"
        return Restored(record, False)
    transcript = await session.configure(plan.lines, timeout) if plan.lines else ""
    rejected = platform.rejected(transcript)
    after = await running_config(session, platform, timeout)
    record.output = transcript
    record.diff = diffing.unified(current, after, "running-config (rollback)")
    record.changed = bool(record.diff)
    back = restore.digest(platform, after) == plan.kept_digest
    if back and plan.save:
        record.output += "\n" + await session.command(platform.save_config, timeout)
    if not back:
        record.failed = True
        record.error = (f"device rejected a rollback line: {rejected}; " if rejected else "") \
            + "the config is not back as it was before the run"
    return Restored(record, back)
