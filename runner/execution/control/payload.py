"""The worker payload codec: the JSON that carries one shard of a run to a Celery worker,
encoded by the dispatcher and decoded by the worker, here and nowhere else. It holds the
job spec, the shard's host names, the run's flags and, for the shard's hosts only, what
was approved or is to be put back; never a credential (each worker reads its own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.execution.control.keys import ledger_id
from runner.execution.executor import Work
from runner.inventory.fleet import FleetInventory
from runner.job.spec import JobSpec
from runner.records import ApprovedChange, RestorePlan
from runner.settings import Settings


@dataclass(frozen=True)
class ShardOrder:
    """A shard as a worker receives it."""

    spec: JobSpec
    run_id: str
    hosts: list[str]
    dry_run: bool = False
    restore: dict[str, RestorePlan] | None = None  # the restore pass of a stopped rollout
    approved: dict[str, ApprovedChange] | None = None  # carrying out an approved preview
    override: bool = False  # a change that needs approval, run by a recorded override
    # Stop when the dispatcher's heartbeat lapses (its process died mid-run).
    watch_dispatcher: bool = False

    @property
    def ledger_id(self) -> str:
        return ledger_id(self.run_id, self.restore is not None)

    def work(self, inventory: FleetInventory, templates: Path, settings: Settings) -> Work:
        """The shard as its worker's engine runs it, with the worker's own inventory."""
        return Work(self.spec, inventory, templates, self.run_id, settings,
                    dry_run=self.dry_run, restore=self.restore, approved=self.approved,
                    override=self.override)


def encode(work: Work, hosts: list[str]) -> dict[str, Any]:
    """The payload of a shard of `work` for `hosts` (JSON types only)."""
    return {
        "job": work.spec.model_dump(mode="json"), "run_id": work.run_id, "hosts": hosts,
        "dry_run": work.dry_run,
        "restore": None if work.restore is None else
        {h: asdict(work.restore[h]) for h in hosts if h in work.restore},
        "approved": None if work.approved is None else
        {h: asdict(work.approved[h]) for h in hosts if h in work.approved},
        "override": work.override,
        # While the dispatcher's process lives, the workers may work the run's shards: a
        # dispatcher killed mid-run stops them within the bound.
        "dispatcher_alive": True,
    }


def decode(payload: Mapping[str, Any]) -> ShardOrder:
    """A shard from its payload (fields a sender left out take their defaults); an
    InputError naming the field when it is not one."""
    run_id, hosts = payload.get("run_id"), payload.get("hosts")
    if not isinstance(payload.get("job"), dict):
        raise InputError("a shard payload carries the job spec (an object)", field="job")
    if not isinstance(run_id, str) or not run_id:
        raise InputError("a shard payload names its run", field="run_id")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise InputError("a shard payload lists its hosts by name", field="hosts")
    restore, approved = payload.get("restore"), payload.get("approved")
    return ShardOrder(
        spec=JobSpec.model_validate(payload["job"]), run_id=run_id, hosts=list(hosts),
        dry_run=bool(payload.get("dry_run")),
        restore=None if restore is None else
        {h: RestorePlan.from_json(p) for h, p in restore.items()},
        approved=None if approved is None else
        {h: ApprovedChange.from_json(a) for h, a in approved.items()},
        override=bool(payload.get("override")),
        watch_dispatcher=bool(payload.get("dispatcher_alive")))
