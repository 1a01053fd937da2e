"""Per-device and per-run result records: plain data that crosses processes as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from runner.vocab import DeviceStatus, Engine, StepKind

# The thread that stores a run's records as they come (it holds no lock a forked engine
# process could inherit: runner.execution.processes may fork beside it).
RECORDS_THREAD = "runner-records"
# A device a blackout window held out of a run that went on elsewhere (runner.errors'
# BlackedOut): skipped by policy, so it does not make the run fail.
HELD_BY_POLICY = "BlackedOut"
REHEARSAL_FAILED_EXIT = 4  # `runner run --rehearse`: the twin said no; production untouched


class Failure(Protocol):
    """What a record keeps of a device's failure (runner.errors.DeviceError is one)."""

    @property
    def status(self) -> DeviceStatus: ...

    @property
    def error_class(self) -> str: ...



def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class StepResult:
    name: str
    kind: StepKind
    output: str | None = None
    parsed: Any = None
    diff: str | None = None
    changed: bool = False
    failed: bool = False
    error: str | None = None
    # config steps: a fingerprint of the running config the step started from (an
    # approved change is only pushed onto the config it was previewed on)
    digest: str | None = None
    # why the step was not run, e.g. a post-check in a dry run: "not evaluated (dry run)"
    not_run: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepResult:
        return cls(**{**data, "kind": StepKind(data["kind"])})


@dataclass
class RestorePlan:
    """How to put a changed device back later (a rollout that stops rolls back earlier
    batches): the commands, and fingerprints of the config before and after the change."""

    lines: list[str]
    kept_digest: str  # the config to get back to
    after_digest: str  # the config this run left: a device that moved since is left alone
    save: bool = False  # the change was saved: so is its rollback
    blocked: str | None = None  # why it cannot be used (e.g. it would need secrets)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RestorePlan:
        return cls(**data)


@dataclass
class ApprovedChange:
    """What an operator approved for one device: the config it was previewed on (its
    fingerprint) and each config step's lines as previewed (secrets masked)."""

    digest: str
    lines: dict[str, str]  # config step index -> the preview's text of its lines

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApprovedChange:
        return cls(**data)


@dataclass
class DeviceResult:
    host: str
    status: DeviceStatus
    changed: bool = False
    duration_s: float = 0.0
    error: str | None = None
    error_class: str | None = None
    attempts: int = 0
    driver: str | None = None
    worker: str | None = None  # which `runner worker` ran it (None: this machine)
    started: str | None = None
    finished: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    # Backup text handed to the backup store; never printed or stored with the record.
    backup: str | None = field(default=None, repr=False)
    # How to roll the change back later; travels between processes, never stored.
    restore: RestorePlan | None = field(default=None, repr=False)
    # The full record is in the results store and this one was slimmed (see slim()): its
    # command steps' output and parsed data are read back from the store when wanted.
    stored: bool = field(default=False, repr=False)

    @classmethod
    def of_error(cls, host: str, error: Failure, *, worker: str | None = None,
                 status: DeviceStatus | None = None) -> DeviceResult:
        """The record of a device that ended with `error` before any step ran."""
        return cls(host=host, status=status or error.status, error=str(error),
                   error_class=error.error_class, worker=worker, finished=now_iso())

    def fail(self, error: Failure) -> None:
        self.status, self.error_class, self.error = error.status, error.error_class, str(error)

    @property
    def compliance(self) -> dict[str, Any] | None:
        """Per compliance feature: {compliant, missing, extra, remediation}, as the device's
        last compliance check observed it (a dry run's check of a previewed remediation is
        not an observation); None when the job has no compliance step."""
        for step in reversed(self.steps):
            if step.kind is StepKind.COMPLIANCE and isinstance(step.parsed, dict) \
                    and step.parsed.get("source") != "preview":
                features = step.parsed.get("features")
                return dict(features) if isinstance(features, dict) else None
        return None

    def slim(self) -> None:
        """Called once the full record is durably stored: keep only what the end of a run
        reads from memory (status, error, timings, the steps that notifications, diffs,
        backups, compliance and a rollback read) and drop the command steps, whose output
        and parsed data are the bulk of a show job's record. A record with a restore plan
        (a stopped rollout may amend it) or a backup text not yet handed to the run's
        backups (runner.job.backups.BackupSink) is kept whole; a backup step is kept (the
        run's commit sets whether it changed, in memory and in the store)."""
        if self.stored or self.restore is not None or self.backup is not None:
            return
        kept = [s for s in self.steps if s.kind is not StepKind.COMMAND]
        if len(kept) == len(self.steps):
            return
        self.steps, self.stored = kept, True

    def to_json(self, *, transport: bool = False) -> dict[str, Any]:
        """The record as JSON; `transport` (between runner's own processes) keeps the
        backup text and the restore plan, which are never printed or stored. A slimmed
        record says `"stored": true` (its full version is in the results store)."""
        # Field by field rather than dataclasses.asdict, which deep-copies every value
        # (a record's outputs and parsed data): a measurable share of a run's CPU at
        # 10,000 devices. The JSON shares the record's values; it is serialised, not edited.
        data = {name: getattr(self, name) for name in _DEVICE_FIELDS}
        data["steps"] = self.steps_json()
        if self.restore is not None:
            data["restore"] = {**{name: getattr(self.restore, name)
                                  for name in _RESTORE_FIELDS},
                               "lines": list(self.restore.lines)}
        if not transport:
            data.pop("backup")
            data.pop("restore")
        if not data["stored"]:
            data.pop("stored")
        compliance = self.compliance
        if compliance is not None:
            data["compliance"] = compliance
        return data

    def steps_json(self) -> list[dict[str, Any]]:
        """The record's steps as to_json gives them (sharing their values)."""
        return [{name: getattr(s, name) for name in _STEP_FIELDS} for s in self.steps]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceResult:
        steps = [StepResult.from_json(s) for s in data.get("steps") or []]
        plan = data.get("restore")
        fields = {k: v for k, v in data.items() if k != "compliance"}  # derived from steps
        return cls(**{**fields, "status": DeviceStatus(data["status"]), "steps": steps,
                      "restore": RestorePlan.from_json(plan) if plan else None})


_DEVICE_FIELDS = tuple(f.name for f in fields(DeviceResult))
_STEP_FIELDS = tuple(f.name for f in fields(StepResult))
_RESTORE_FIELDS = tuple(f.name for f in fields(RestorePlan))


@dataclass
class RunResult:
    run_id: str
    job: str
    started: str
    finished: str | None
    devices: list[DeviceResult]
    dry_run: bool = False
    job_file: str | None = None
    engine: Engine = Engine.LOCAL
    occurrence: str | None = None
    backup_commit: str | None = None
    rerun_of: str | None = None  # the run whose failed devices this one ran again
    approves: str | None = None  # the approved preview this run carries out
    remediates: str | None = None  # the compliance run whose drift this run remediates
    started_by: str | None = None  # user@host, a web token's name, or the scheduler
    # a change that needed approval run without one: {"by", "at", "reason"}
    override: dict[str, Any] | None = None
    workflow: str | None = None  # the workflow run it is a step (or the start) of
    # run inside a blackout window: {"by", "at", "reason", "windows"}
    blackout_override: dict[str, Any] | None = None
    # rehearsed on a twin first (`--rehearse`): the twin, its run, passed or not, and per
    # device what happened there (runner.job.rehearse.Rehearsal.to_json)
    rehearsal: dict[str, Any] | None = None

    @property
    def rehearsal_failed(self) -> bool:
        return self.rehearsal is not None and not self.rehearsal.get("passed")

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys((str(s) for s in DeviceStatus), 0)
        for device in self.devices:
            counts[device.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """Every device did what the job asked (a compliance finding is not a failure; a
        device held out by a blackout window is no failure either)."""
        return all(d.status.worked or d.error_class == HELD_BY_POLICY for d in self.devices)

    @property
    def drift(self) -> bool:
        """A compliance step found a device out of compliance."""
        return any(d.status is DeviceStatus.NON_COMPLIANT for d in self.devices)

    @property
    def exit_code(self) -> int:
        """`runner run`'s: 0 every device ok/changed (or compliant), 1 any other outcome,
        3 every device did its work and some are non-compliant (drift found), 4 the
        rehearsal on a twin failed (production was not contacted)."""
        if self.rehearsal_failed:
            return REHEARSAL_FAILED_EXIT
        return 1 if not self.ok else 3 if self.drift else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job": self.job, "job_file": self.job_file,
            "started": self.started, "finished": self.finished, "dry_run": self.dry_run,
            "engine": self.engine, "occurrence": self.occurrence,
            "backup_commit": self.backup_commit, "rerun_of": self.rerun_of,
            "approves": self.approves, "remediates": self.remediates,
            "started_by": self.started_by,
            "override": self.override, "workflow": self.workflow,
            "blackout_override": self.blackout_override,
            "rehearsal": self.rehearsal,
            "summary": self.summary,
            "devices": [d.to_json() for d in self.devices],
        }
