"""The Celery application and its one task: run a shard of a job's hosts on this worker.

Only JSON crosses the broker: the job spec and host names go out, device records come
back. Credentials never travel: each worker resolves hosts in its own inventory, and reads
secret references (its inventory's, the job's secret_vars) from its own environment and files.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from runner.errors import InputError, NotApproved, NotInInventory
from runner.execution.control import payload
from runner.execution.control.cancel import ShardWatch, shard_stop
from runner.execution.control.keys import LEDGER_TTL_S, RunKeys, ShardKeys, shard_owner
from runner.execution.local import LocalExecutor
from runner.inventory import platforms
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.records import DeviceResult
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
def sync_client(url: str) -> redis.Redis:
    """One client per process and broker (created after a pool process forked)."""
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10,
                                decode_responses=True, health_check_interval=30)


@cache
def _inventory(path: str, mtime_ns: int) -> FleetInventory:
    return load_inventory(Path(path))


def worker_inventory(path: Path) -> FleetInventory:
    """The worker's inventory, loaded again only when its hosts file changed."""
    stamp = (path / "hosts.yaml" if path.is_dir() else path).stat().st_mtime_ns
    return _inventory(str(path), stamp)


class _Collect:
    """A shard's Progress: its records go back as the task's result (the dispatcher's
    Tally keeps the first of each device)."""

    def __init__(self) -> None:
        self.records: list[DeviceResult] = []

    def started(self, host: str) -> None:
        pass  # the run ledger marks it in Redis (Coordination.begin)

    def finished(self, record: DeviceResult) -> None:
        self.records.append(record)


def run_shard(task: Any, raw: dict[str, Any]) -> dict[str, Any]:
    config: WorkerConfig = task.app.runner_worker
    order = payload.decode(raw)
    keys, shard = RunKeys(order.ledger_id), ShardKeys(task.request.id)
    client = sync_client(config.settings.broker)
    client.set(shard.holder, config.incarnation, ex=LEDGER_TTL_S)
    why_not = shard_stop(client, keys, shard, order.watch_dispatcher)
    if why_not:  # e.g. a shard Redis delivered again after the dispatcher moved on
        return {"devices": [], "not_run": why_not}
    unapproved = _unapproved(order)
    if unapproved:  # whoever sent it: a change that needs approval comes approved
        return {"devices": [DeviceResult.of_error(h, NotApproved(unapproved),
                                                  worker=config.name).to_json()
                            for h in order.hosts]}
    # Secret references in the worker's inventory and the job's secret_vars are read by
    # this worker, from its own environment and files, when each session opens.
    inventory = worker_inventory(config.inventory).with_platform(order.spec.platform)
    problems = {h: _not_runnable(inventory, h, config.name) for h in order.hosts}
    known = [h for h, why in problems.items() if why is None]
    missing = [DeviceResult.of_error(h, NotInInventory(why), worker=config.name)
               for h, why in problems.items() if why is not None]
    work = order.work(inventory, config.templates, config.settings)
    owner = shard_owner(config.name, task.request.id)
    sink = _Collect()
    cancel = threading.Event()
    if known:
        with ShardWatch(client, keys, shard, cancel, watch_dispatcher=order.watch_dispatcher):
            LocalExecutor(work, worker=config.name, owner=owner, coordinate=True).run(
                known, sink, cancel)
    # A record the run ledger holds reached the dispatcher that way already (it streams
    # them as devices finish): only the others travel in the result, not every record of
    # the shard twice through Redis.
    return {"devices": [d.to_json(transport=True)
                        for d in [*unledgered(client, keys, sink.records), *missing]]}


def unledgered(client: redis.Redis, keys: RunKeys,
               records: list[DeviceResult]) -> list[DeviceResult]:
    """Those of `records` whose device has no record in the run ledger (its write failed,
    or a broker error came between), in one round trip; all of them if Redis cannot say."""
    if not records:
        return []
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.exists(keys.device("done", record.host))
    try:
        held = pipe.execute()
    except redis.RedisError:
        return records
    return [r for r, there in zip(records, held, strict=True) if not there]


def _unapproved(order: payload.ShardOrder) -> str | None:
    """Why a worker refuses the shard's change (None: it may run): a real run of a job that
    needs approval carries an approved change, or is a recorded override, or is the
    restore pass of such a run."""
    if not order.spec.needs_approval or order.dry_run or order.restore is not None \
            or order.approved is not None or order.override:
        return None
    return (f"job {order.spec.name!r} changes config only through an approved preview, and "
            "this shard carried no approved change: the worker sent nothing")


def _not_runnable(inventory: FleetInventory, host: str, worker: str) -> str | None:
    """Why this worker's inventory cannot run the host (None: it can)."""
    if host not in inventory.hosts:
        return f"host is not in worker {worker}'s inventory"
    platform = inventory.platform_of(host)
    if platforms.get(platform or "") is None:
        return (f"host has no platform runner knows in worker {worker}'s inventory "
                f"(got {platform!r})")
    return None

