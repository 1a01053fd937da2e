"""What each step kind does on one device's open session; failures raise DeviceErrors after
the step's partial result is recorded."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import diffing
from runner.drivers.base import Session
from runner.errors import CommandRejected
from runner.job.spec import BackupStep, CommandStep, ConfigStep, JobSpec
from runner.parsing import parse
from runner.platforms import Platform
from runner.records import DeviceResult, StepResult
from runner.vocab import StepKind

# Config lines of a step, given the results so far ({step name: {output, parsed}}).
Renderer = Callable[[dict[str, dict[str, Any]]], list[str]]


@dataclass
class StepContext:
    session: Session
    platform: Platform
    result: DeviceResult
    dry_run: bool
    command_timeout: float
    templates_dir: Path
    # Awaited right before config is first sent (the run ledger's no-second-push guard).
    before_config: Callable[[], Awaitable[None]] | None = None


def _checked(ctx: StepContext, step: StepResult, output: str) -> str:
    """Record output; a failure indicator in it fails the step and the device."""
    step.output = output
    rejected = ctx.platform.rejected(output)
    if rejected:
        step.failed, step.error = True, f"device rejected input: {rejected}"
        raise CommandRejected(step.error)
    return output


async def run_command(ctx: StepContext, step: CommandStep, name: str) -> None:
    for command in step.commands:
        record = StepResult(name=name if len(step.commands) == 1 else command,
                            kind=StepKind.COMMAND)
        ctx.result.steps.append(record)
        output = await ctx.session.command(command, ctx.command_timeout)
        _checked(ctx, record, output)
        if step.parse is not None:
            try:
                record.parsed = parse(output, step.parse, platform=ctx.platform.ntc_templates,
                                      command=command, templates_dir=ctx.templates_dir)
            except Exception as exc:
                record.failed, record.error = True, str(exc)
                raise


async def _running(ctx: StepContext, extra_volatile: tuple[re.Pattern[str], ...] = ()) -> str:
    text = await ctx.session.command(ctx.platform.running_config, ctx.command_timeout)
    return diffing.normalize(text, (*ctx.platform.volatile, *extra_volatile))


async def run_config(ctx: StepContext, step: ConfigStep, name: str, lines: list[str]) -> None:
    record = StepResult(name=name, kind=StepKind.CONFIG)
    ctx.result.steps.append(record)
    before = await _running(ctx)
    if ctx.dry_run:
        record.diff = diffing.preview(before, lines)
        record.changed = bool(record.diff)
        record.output = "\n".join(lines) + "\n"  # what would be sent
        return
    if ctx.before_config is not None:
        await ctx.before_config()
    transcript = await ctx.session.configure(lines, ctx.command_timeout)
    try:
        _checked(ctx, record, transcript)
    finally:
        after = await _running(ctx)  # even a rejected change may have applied some lines
        record.diff = diffing.unified(before, after)
        record.changed = bool(record.diff)
    if step.config.save and record.changed:
        saved = await ctx.session.command(ctx.platform.save_config, ctx.command_timeout)
        _checked(ctx, record, transcript + "\n" + saved)


async def run_backup(ctx: StepContext, step: BackupStep, name: str) -> None:
    record = StepResult(name=name, kind=StepKind.BACKUP)
    ctx.result.steps.append(record)
    extra = tuple(re.compile(p) for p in step.backup.volatile)
    ctx.result.backup = await _running(ctx, extra)
    # `changed` (the file differs from the last backup) is set when the run commits.


async def run_steps(ctx: StepContext, spec: JobSpec, rendered: dict[int, Renderer]) -> None:
    for index, step in enumerate(spec.steps):
        name = spec.step_name(index)
        if isinstance(step, CommandStep):
            await run_command(ctx, step, name)
        elif isinstance(step, ConfigStep):
            done = {s.name: {"output": s.output, "parsed": s.parsed} for s in ctx.result.steps}
            await run_config(ctx, step, name, rendered[index](done))
        else:
            await run_backup(ctx, step, name)
