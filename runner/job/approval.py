"""Approval of changes: a job whose schedule says `approval: required` reaches devices only
through a preview (a dry run) an operator approved, or a recorded override. Approving
carries out exactly the previewed change, once, on the devices whose config has not moved;
rejecting or letting the window pass ends it. Every decision names who made it."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.job.load import JobFile
from runner.job.prepare import prepare_job
from runner.job.run import RunOptions, execute
from runner.job.spec import JobSpec
from runner.records import ApprovedChange, RunResult, now_iso
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, RunStatus, StepKind


def who() -> str:
    """The operator at this command line, as `user@host` (recorded with what they do)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def override(by: str, reason: str | None) -> dict[str, Any]:
    """The record of running a change that needs approval without one."""
    return {"by": by, "at": now_iso(), "reason": reason}


def gate(spec: JobSpec, options: RunOptions) -> bool:
    """A real run of a job that needs approval becomes a preview awaiting approval (unless
    it carries out an approved preview or an override was given): True when it did."""
    if options.dry_run or options.preview_window is not None or not spec.needs_approval \
            or options.approves is not None or options.override is not None:
        return False
    assert spec.schedule is not None
    options.preview_window = spec.schedule.approval_seconds
    return True


def _waiting(store: ResultsStore, run_id: str) -> tuple[dict[str, Any], RunResult]:
    row, preview = store.get_run(run_id)
    status = row["status"]
    if status != RunStatus.AWAITING_APPROVAL:
        decided = row.get("decision") or {}
        by = f" by {decided['by']} at {decided['at']}" if decided.get("by") else ""
        raise InputError(f"run {preview.run_id} is not awaiting approval: it is "
                         f"{status}{by}")
    if row["approval_deadline"] <= now_iso():
        store.decide(preview.run_id, RunStatus.EXPIRED, {"by": "runner", "at": now_iso(),
                                                         "reason": "approval window passed"},
                     now_iso())
        raise InputError(f"run {preview.run_id}: its approval window ended at "
                         f"{row['approval_deadline']}; it has expired")
    return row, preview


def reject(store: ResultsStore, run_id: str, reason: str | None,
           by: str | None = None) -> str:
    """Say no to a preview; its full run id. `by`: who decides (default: user@host)."""
    _, preview = _waiting(store, run_id)
    if not store.decide(preview.run_id, RunStatus.REJECTED,
                        {"by": by or who(), "at": now_iso(), "reason": reason}, now_iso()):
        raise InputError(f"run {preview.run_id} was decided by someone else just now")
    return preview.run_id


def approved_changes(spec: JobSpec, preview: RunResult) -> dict[str, ApprovedChange]:
    """Per device the preview would change: its config's fingerprint and each config
    step's previewed lines."""
    indexes = spec.change_steps  # config steps and remediating compliance steps
    out: dict[str, ApprovedChange] = {}
    for device in preview.devices:
        if device.status is not DeviceStatus.CHANGED:
            continue  # failed in the preview, or nothing to change: not part of it
        config = [s for s in device.steps if s.kind is StepKind.CONFIG]
        if len(config) != len(indexes) or config[0].digest is None:
            continue
        out[device.host] = ApprovedChange(
            config[0].digest, {str(i): s.output or "" for i, s in zip(indexes, config,
                                                                     strict=True)})
    return out


def approve(store: ResultsStore, run_id: str, options: RunOptions,
            inventory: Path | None = None, templates: Path | None = None,
            by: str | None = None) -> RunResult:
    """Carry out the approved preview: the job as it was previewed, on the devices it
    would have changed, each checked against its preview (ConfigDrift otherwise). `by`:
    who decides (default: user@host). Nothing is recorded unless the run starts: the
    decision and the run that carries it out are stored in one transaction, and a preview
    with nothing to change is refused and stays as it was."""
    row, preview = _waiting(store, run_id)
    spec = JobSpec.model_validate(row["job_spec"])
    inputs = row.get("inputs") or {}
    changes = approved_changes(spec, preview)
    if not changes:
        raise InputError(f"run {preview.run_id} previewed no change to carry out: there is "
                         "nothing to approve (it stays awaiting approval; `runner reject` "
                         "closes it)")
    job = JobFile(spec, Path(inputs.get("job_file", "job.yml")), row["job_spec"])
    prep = prepare_job(job, inventory or Path(inputs["inventory"]),
                       templates or Path(inputs["templates"]), only=list(changes))
    decider = by or who()
    options.approves = preview.run_id
    options.remediates = inputs.get("remediates")  # a remediation's, carried out
    options.approved = changes
    options.decision = {"by": decider, "at": now_iso()}
    options.started_by = decider
    options.rehearsal = preview.rehearsal  # the evidence it was approved on, kept with it
    return execute(prep, store, options)
