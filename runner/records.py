"""Per-device and per-run result records: plain data that crosses processes as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "changed", "failed", "unreachable", "auth_failed", "timed_out", "skipped")
SUCCESS = frozenset({"ok", "changed"})


@dataclass
class StepResult:
    name: str
    kind: str  # command | config | backup
    output: str | None = None
    parsed: Any = None
    diff: str | None = None
    changed: bool = False
    failed: bool = False
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepResult:
        return cls(**data)


@dataclass
class DeviceResult:
    host: str
    status: str
    changed: bool = False
    duration_s: float = 0.0
    error: str | None = None
    error_class: str | None = None
    attempts: int = 0
    driver: str | None = None
    worker: str | None = None  # which `runner worker` ran it (None: the local engine)
    started: str | None = None
    finished: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    # Backup text handed to the backup store; never printed or stored with the record.
    backup: str | None = field(default=None, repr=False)

    def to_json(self, *, with_backup: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_backup:
            data.pop("backup")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceResult:
        steps = [StepResult.from_json(s) for s in data.get("steps", [])]
        return cls(**{**data, "steps": steps})


@dataclass
class RunResult:
    run_id: str
    job: str
    started: str
    finished: str | None
    devices: list[DeviceResult]
    dry_run: bool = False
    job_file: str | None = None
    engine: str = "local"
    occurrence: str | None = None
    backup_commit: str | None = None

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for device in self.devices:
            counts[device.status] = counts.get(device.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return all(d.status in SUCCESS for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job": self.job, "job_file": self.job_file,
            "started": self.started, "finished": self.finished, "dry_run": self.dry_run,
            "engine": self.engine, "occurrence": self.occurrence,
            "backup_commit": self.backup_commit, "summary": self.summary,
            "devices": [d.to_json() for d in self.devices],
        }
