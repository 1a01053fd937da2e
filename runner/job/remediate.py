"""Remediation of a compliance run's drift: the compliance job turned into a change (its
compliance step remediating the chosen features, computed by hier_config against each
device's config at the time), run through the normal pipeline: preview, rollout, rollback,
approval, notifications. The run records the compliance run it remediates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError
from runner.job.load import JobFile, load_job
from runner.job.prepare import Prepared, prepare_job
from runner.job.spec import ComplianceSpec, ComplianceStep, JobSpec
from runner.records import RunResult
from runner.store.results import ResultsStore
from runner.vocab import ActualSource


@dataclass
class Plan:
    """What `runner remediate` will run: the job, on which devices, for which features."""

    prepared: Prepared | None  # None: no device to remediate
    run_id: str  # the compliance run remediated
    features: list[str]
    skipped: dict[str, str]  # host -> why it is not remediated


def drifted(run: RunResult, features: list[str]) -> dict[str, list[str]]:
    """Per device of `run`, the given features its compliance check found it out of
    compliance with (also in a run that went on to preview or fail a remediation)."""
    out: dict[str, list[str]] = {}
    for device in run.devices:
        found = device.compliance or {}
        bad = [f for f in features if f in found and not found[f].get("compliant")]
        if bad:
            out[device.host] = bad
    return out


def remediation_spec(spec: JobSpec, features: list[str]) -> JobSpec:
    """The compliance job as a change: its compliance step remediates `features` (against
    the running config, whatever the check compared with), with rollback."""
    step = spec.compliance
    assert step is not None
    chosen = [f for f in step.compliance.features if f.name in features]
    compliance = ComplianceSpec.model_validate({
        **step.compliance.model_dump(), "features": [f.model_dump() for f in chosen],
        "actual": ActualSource.RUNNING, "remediate": True})
    steps = [ComplianceStep(name=s.name, compliance=compliance)
             if isinstance(s, ComplianceStep) else s for s in spec.steps]
    return spec.model_copy(update={"steps": steps, "rollback": True})


def plan(store: ResultsStore, run_id: str, inventory: Path, templates: Path,
         features: list[str] | None = None, hosts: list[str] | None = None,
         job_file: Path | None = None) -> Plan:
    """Check what was asked against the compliance run (every name must be known: exit 2
    otherwise, nothing touched) and prepare the remediation run."""
    if not run_id.strip():
        raise InputError("an empty run id names no compliance run", field="RUN_ID")
    _row, run = store.get_run(run_id.strip())
    path = job_file or (Path(run.job_file) if run.job_file else None)
    if path is None or not path.exists():
        raise InputError(f"run {run.run_id}'s job file {run.job_file} is gone: give it "
                         "with --job", field="--job")
    job = load_job(path)
    if job.spec.name != run.job:
        raise InputError(f"{path} is job {job.spec.name!r}, run {run.run_id} was of "
                         f"{run.job!r}", field="--job")
    step = job.spec.compliance
    if step is None:
        raise InputError(f"run {run.run_id} (job {run.job!r}) has no compliance step: "
                         "nothing to remediate", field="RUN_ID")
    known = [f.name for f in step.compliance.features]
    unknown = [f for f in features or [] if f not in known]
    if unknown:
        raise InputError(f"no feature {', '.join(map(repr, unknown))} in job {run.job!r} "
                         f"(its features: {', '.join(known)})", field="--feature")
    chosen = list(dict.fromkeys(features)) if features else known
    found = drifted(run, chosen)
    devices = {d.host for d in run.devices}
    strangers = [h for h in hosts or [] if h not in devices]
    if strangers:
        raise InputError(f"run {run.run_id} has no device {', '.join(map(repr, strangers))}",
                         field="--host")
    wanted = list(dict.fromkeys(hosts)) if hosts else [d.host for d in run.devices]
    skipped = {h: "compliant" for h in wanted if h not in found}
    targets = [h for h in wanted if h in found]
    spec = remediation_spec(job.spec, chosen)
    derived = JobFile(spec, job.path, job.raw)
    prepared = prepare_job(derived, inventory, templates, only=targets) if targets else None
    return Plan(prepared, run.run_id, chosen, skipped)
