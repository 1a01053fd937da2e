"""The Celery application and its one task: run a shard of a job's hosts on this worker.

Only JSON crosses the broker: the job spec and host names go out, device records come
back. Credentials never travel: each worker resolves hosts in its own inventory, and reads
secret references (its inventory's, the job's secret_vars) from its own environment and files.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from runner.dispatch.heartbeat import ShardKeys, ShardWatch, sync_client
from runner.errors import InputError, NotApproved, NotInInventory
from runner.execution.executor import Work
from runner.execution.leases import LEDGER_TTL_S, RunKeys
from runner.execution.local import LocalExecutor
from runner.inventory import platforms
from runner.inventory.fleet import FleetInventory, load_inventory
from runner.job.spec import JobSpec
from runner.records import ApprovedChange, DeviceResult, RestorePlan
from runner.settings import DEFAULT_QUEUE, SIGNING, Settings

TASK = "runner.run_shard"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker's shards need, set on its app before the pool's processes fork."""

    settings: Settings
    inventory: Path
    templates: Path
    name: str
    incarnation: str  # this worker process's identity in heartbeats: name#pid.random


def make_app(settings: Settings, worker: WorkerConfig | None = None) -> Celery:
    app = Celery("runner")
    vt = settings.visibility_timeout
    app.conf.update(
        broker_url=settings.broker,
        result_backend=settings.results_backend,
        task_serializer="json", result_serializer="json",
        accept_content=["json"], result_accept_content=["json"],
        # A shard is acknowledged when it finished: a worker that dies mid-shard has it
        # redelivered; the run ledger keeps that from configuring any device twice.
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": vt},
        result_backend_transport_options={"visibility_timeout": vt},
        task_default_queue=DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 86400,
        worker_hijack_root_logger=False,
    )
    if settings.signs_broker_messages:
        _sign(app, settings)
    app.runner_worker = worker
    app.task(name=TASK, bind=True)(run_shard)
    return app


def _sign(app: Celery, settings: Settings) -> None:
    """Tasks and results signed with this process's key (Celery's `auth` serializer, JSON
    inside), and only those signed by a trusted certificate accepted: a message written
    into Redis by anyone else is refused. (Replays of a message once sent are not: see
    the README's "Redis as a trust boundary".)"""
    assert settings.broker_trusted is not None
    app.conf.update(task_serializer="auth", accept_content=["auth"],
                    result_serializer="auth", result_accept_content=["auth"],
                    event_serializer="json",
                    security_key=str(settings.broker_key),
                    security_certificate=str(settings.broker_cert),
                    security_cert_store=str(settings.broker_trusted / "*.pem"),
                    security_digest="sha256")
    try:
        app.setup_security(allowed_serializers=["json"], serializer="json")
    except Exception as exc:  # a missing or unreadable key, a certificate that is not one
        raise InputError(f"broker message signing ({', '.join(SIGNING)}): "
                         f"{type(exc).__name__}: {exc}") from None


@cache
def _inventory(path: str, mtime_ns: int) -> FleetInventory:
    return load_inventory(Path(path))


def worker_inventory(path: Path) -> FleetInventory:
    """The worker's inventory, loaded again only when its hosts file changed."""
    stamp = (path / "hosts.yaml" if path.is_dir() else path).stat().st_mtime_ns
    return _inventory(str(path), stamp)


class _Collect:
    """A shard's RecordSink: its records go back as the task's result."""

    def __init__(self) -> None:
        self.records: list[DeviceResult] = []

    def started(self, host: str) -> None:
        pass  # the run ledger marks it in Redis (Coordination.begin)

    def finished(self, record: DeviceResult) -> None:
        self.records.append(record)

    def lost(self, hosts: Any, error: Any, *, progress_known: bool = True) -> None:
        raise AssertionError("a local engine never loses a device")


def run_shard(task: Any, payload: dict[str, Any]) -> dict[str, Any]:
    config: WorkerConfig = task.app.runner_worker
    plans = payload.get("restore")
    restore = None if plans is None else {h: RestorePlan.from_json(p) for h, p in plans.items()}
    work_id = f"{payload['run_id']}:restore" if restore is not None else payload["run_id"]
    keys, shard = RunKeys(work_id), ShardKeys(task.request.id)
    client = sync_client(config.settings.broker)
    client.set(shard.holder, config.incarnation, ex=LEDGER_TTL_S)
    why_not = _refused(client, keys, shard, watch=bool(payload.get("dispatcher_alive")))
    if why_not:  # e.g. a shard Redis delivered again after the dispatcher moved on
        return {"devices": [], "not_run": why_not}
    spec = JobSpec.model_validate(payload["job"])
    unapproved = _unapproved(spec, payload)
    if unapproved:  # whoever sent it: a change that needs approval comes approved
        return {"devices": [DeviceResult.of_error(h, NotApproved(unapproved),
                                                  worker=config.name).to_json()
                            for h in payload["hosts"]]}
    # Secret references in the worker's inventory and the job's secret_vars are read by
    # this worker, from its own environment and files, when each session opens.
    inventory = worker_inventory(config.inventory).with_platform(spec.platform)
    problems = {h: _not_runnable(inventory, h, config.name) for h in payload["hosts"]}
    known = [h for h, why in problems.items() if why is None]
    missing = [DeviceResult.of_error(h, NotInInventory(why), worker=config.name)
               for h, why in problems.items() if why is not None]
    work = Work(spec, inventory, config.templates, payload["run_id"], config.settings,
                dry_run=bool(payload.get("dry_run")), restore=restore,
                approved=None if payload.get("approved") is None else
                {h: ApprovedChange.from_json(a) for h, a in payload["approved"].items()})
    # Each delivery is its own owner: a redelivered shard must not pass for the lost one.
    owner = f"{config.name}:{task.request.id}:{secrets.token_hex(3)}"
    sink = _Collect()
    cancel = threading.Event()
    if known:
        with ShardWatch(client, keys, shard, cancel,
                        watch_dispatcher=bool(payload.get("dispatcher_alive"))):
            LocalExecutor(work, worker=config.name, owner=owner, coordinate=True).run(
                known, sink, cancel)
    return {"devices": [d.to_json(transport=True) for d in [*sink.records, *missing]]}


def _unapproved(spec: JobSpec, payload: dict[str, Any]) -> str | None:
    """Why a worker refuses the shard's change (None: it may run): a real run of a job that
    needs approval carries an approved change, or is a recorded override, or is the
    restore pass of such a run."""
    if not spec.needs_approval or payload.get("dry_run") or payload.get("restore") \
            is not None or payload.get("approved") is not None or payload.get("override"):
        return None
    return (f"job {spec.name!r} changes config only through an approved preview, and this "
            "shard carried no approved change: the worker sent nothing")


def _not_runnable(inventory: FleetInventory, host: str, worker: str) -> str | None:
    """Why this worker's inventory cannot run the host (None: it can)."""
    if host not in inventory.hosts:
        return f"host is not in worker {worker}'s inventory"
    platform = inventory.platform_of(host)
    if platforms.get(platform or "") is None:
        return (f"host has no platform runner knows in worker {worker}'s inventory "
                f"(got {platform!r})")
    return None


def _refused(client: redis.Redis, keys: RunKeys, shard: ShardKeys,
             watch: bool = False) -> str | None:
    closed, dropped, cancelled, alive = client.mget([keys.closed, shard.dropped,
                                                     keys.cancel, keys.alive])
    if closed:
        return "the run had already finished"
    if dropped:
        return "the dispatcher had given this shard to another worker"
    if cancelled:
        return "the run was cancelled"
    if watch and not alive:
        return "the run's dispatcher is gone (its process ended without finishing the run)"
    return None


def worker_name_default() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
