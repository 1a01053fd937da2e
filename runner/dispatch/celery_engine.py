"""The Celery dispatcher: shards a run's hosts by queue, sends them to workers, and gathers
every device's record as shards complete; a lost shard or broker ends as clear failures."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from runner.dispatch import settings
from runner.dispatch.celery_app import run_shard
from runner.inventory import FleetInventory
from runner.job.spec import JobSpec
from runner.records import DeviceResult

log = logging.getLogger(__name__)
SLACK = 30.0


def shards(hosts: list[str], inventory: FleetInventory, size: int) -> list[tuple[str, list[str]]]:
    """(queue, hosts) pairs: hosts grouped by their route key's value, cut to `size`."""
    by_queue: dict[str, list[str]] = {}
    key = settings.route_key()
    for host in hosts:
        value = inventory.nornir.hosts[host].get(key)
        queue = str(value) if value not in (None, "") else settings.DEFAULT_QUEUE
        by_queue.setdefault(queue, []).append(host)
    return [(queue, members[i:i + size]) for queue, members in by_queue.items()
            for i in range(0, len(members), size)]


def _lost(hosts: list[str], reason: str, error_class: str) -> list[DeviceResult]:
    return [DeviceResult(host=h, status="failed", error=reason, error_class=error_class)
            for h in hosts]


def run_on_workers(spec: JobSpec, hosts: list[str], inventory: FleetInventory, run_id: str,
                   dry_run: bool, shard_size: int,
                   on_device_done: Callable[[DeviceResult], None],
                   cancel: threading.Event | None = None) -> list[DeviceResult]:
    """Every host gets exactly one record, in `hosts` order."""
    client = redis.Redis.from_url(settings.broker_url(), socket_timeout=5,
                                  socket_connect_timeout=5)
    sentinel = f"runner:run:{run_id}:dispatcher"
    client.set(sentinel, "1", ex=7 * 86400)
    payload_base: dict[str, Any] = {"job": spec.model_dump(mode="json"), "run_id": run_id,
                                    "dry_run": dry_run}
    pending: dict[str, tuple[Any, list[str], float]] = {}
    budget = spec.timeouts.device * math.ceil(shard_size / spec.concurrency) \
        * (spec.retries.count + 1) + spec.busy_wait + settings.visibility_timeout() + SLACK
    for queue, members in shards(hosts, inventory, shard_size):
        result = run_shard.apply_async(args=[{**payload_base, "hosts": members}], queue=queue)
        pending[result.id] = (result, members, time.monotonic() + budget)
        log.info("run %s: shard of %d host(s) sent to queue %s", run_id, len(members), queue)

    gather = _Gather(hosts, pending, on_device_done, budget)
    while gather.pending:
        if cancel is not None and cancel.is_set():
            for result, _, _ in gather.pending.values():
                result.revoke()
            gather.fail_all("run interrupted before its shard finished", "Interrupted")
            break
        try:
            if not client.exists(sentinel):
                gather.fail_all("the broker lost its data (Redis restarted) while this "
                                "device's shard was queued or running; result unknown",
                                "BrokerLost")
                break
            gather.poll()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.warning("run %s: broker unreachable (%s); still waiting", run_id,
                        settings.safe_url(str(exc)))
        time.sleep(0.05)  # a few cheap Redis reads per poll; shards end sooner
    client.close()
    return [gather.records[h] for h in hosts]


class _Gather:
    """Collects shard results: exactly one record per host, whatever arrives."""

    def __init__(self, hosts: list[str], pending: dict[str, tuple[Any, list[str], float]],
                 on_device_done: Callable[[DeviceResult], None], budget: float) -> None:
        self.hosts = set(hosts)
        self.pending = pending
        self.on_device_done = on_device_done
        self.budget = budget
        self.records: dict[str, DeviceResult] = {}

    def record(self, device: DeviceResult) -> None:
        if device.host in self.records or device.host not in self.hosts:
            return
        self.records[device.host] = device
        self.on_device_done(device)

    def fail(self, members: list[str], reason: str, error_class: str) -> None:
        for device in _lost([m for m in members if m not in self.records], reason,
                            error_class):
            self.record(device)

    def fail_all(self, reason: str, error_class: str) -> None:
        for _, members, _ in self.pending.values():
            self.fail(members, reason, error_class)
        self.pending.clear()

    def poll(self) -> None:
        for task_id, (result, members, deadline) in list(self.pending.items()):
            if result.ready():
                del self.pending[task_id]
                if result.successful():
                    for raw in result.result["devices"]:
                        self.record(DeviceResult.from_json(raw))
                    self.fail(members, "no record came back for this device", "WorkerError")
                else:
                    self.fail(members, f"the shard failed on its worker: "
                                       f"{result.result!r}"[:300], "WorkerError")
            elif time.monotonic() > deadline:
                del self.pending[task_id]
                self.fail(members, f"no worker finished this device's shard within "
                                   f"{self.budget:.0f}s (no worker on its queue, or lost)",
                          "WorkerLost")
