"""The Celery executor: shards a batch's hosts by queue, sends them to `runner worker`s and
gathers each device's record; a worker that goes silent has its unfinished devices sent to
a live worker (the run ledger keeps a config push from happening twice) or recorded as
WorkerLost, within `worker_lost_after` seconds, not Redis' visibility timeout."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

import redis
from celery.result import AsyncResult

from runner.dispatch.celery_app import TASK, make_app
from runner.errors import BrokerLost, WorkerError, WorkerLost
from runner.execution.control import payload
from runner.execution.control.cancel import CANCEL_GRACE_S
from runner.execution.control.heartbeat import DispatcherAlive, live_workers
from runner.execution.control.keys import (
    LEDGER_TTL_S,
    RunKeys,
    ShardKeys,
    device_key,
    worker_of,
)
from runner.execution.executor import CancelFlag, RecordSink, Work
from runner.execution.leases import free_shard_leases
from runner.inventory.fleet import FleetInventory
from runner.records import DeviceResult
from runner.settings import DEFAULT_QUEUE, safe_url
from runner.vocab import Engine

log = logging.getLogger(__name__)
SLACK_S = 30.0
MAX_REDELIVERIES = 2  # a device is sent to at most this many more workers after a loss
WATCH_S = 0.5  # how often worker liveness is checked
POLL_S = 0.05  # how often results are looked for (a few cheap Redis reads)
BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def shards(hosts: list[str], inventory: FleetInventory, size: int,
           route_key: str) -> list[tuple[str, list[str]]]:
    """(queue, hosts) pairs: hosts grouped by their route key's value, cut to `size`."""
    by_queue: dict[str, list[str]] = {}
    for host in hosts:
        value = inventory.nornir.hosts[host].get(route_key)
        queue = str(value) if value not in (None, "") else DEFAULT_QUEUE
        by_queue.setdefault(queue, []).append(host)
    return [(queue, members[i:i + size]) for queue, members in by_queue.items()
            for i in range(0, len(members), size)]


@dataclass
class Shard:
    queue: str
    hosts: list[str]
    attempt: int = 0  # 0: first delivery; n: sent again after n lost workers
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    holder: str | None = None  # the worker incarnation that received it
    held_since: float = 0.0
    unserved_since: float | None = None  # since when no live worker consumes its queue


class CeleryExecutor:
    """Records come from a shard's result, the run ledger and its finished stream, late
    copies included: which devices still lack one is the sink's to say (the run's Tally,
    sink.missing), never an account kept here."""

    engine = Engine.CELERY

    def __init__(self, work: Work) -> None:
        self.work = work
        settings = work.settings
        self.bound = settings.worker_lost_after
        self.app = make_app(settings)
        self.client = redis.Redis.from_url(settings.broker, socket_timeout=5,
                                           socket_connect_timeout=5, decode_responses=True)
        self.keys = RunKeys(work.ledger_id)
        spec = work.spec
        self.budget = spec.timeouts.device * math.ceil(work.shard_size / spec.concurrency) \
            * (spec.retries.count + 1) + spec.busy_wait + SLACK_S
        # While this process lives, the workers may work the run's shards (the payload
        # tells them to watch): a dispatcher killed mid-run stops them within the bound.
        self.alive = DispatcherAlive(self.client, self.keys, self.bound)
        self.alive_started = False
        self.pending: dict[str, Shard] = {}
        self.cancelling = False
        self._streamed = 0  # how much of the run's finished list has been read
        self._began = 0  # how much of the run's began list has been read
        self._warned = 0.0

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # A shard Redis delivers again later must not run: the run is over.
        with contextlib.suppress(*BROKER_ERRORS):
            self.client.set(self.keys.closed, "1", ex=LEDGER_TTL_S)
        self.alive.stop()
        self.client.close()

    # -- one batch ------------------------------------------------------------------------

    def run(self, hosts: list[str], sink: RecordSink, cancel: CancelFlag) -> None:
        try:
            self.client.set(self.keys.dispatcher, "1", ex=LEDGER_TTL_S)
            if not self.alive_started:
                self.alive.start()
                self.alive_started = True
        except BROKER_ERRORS as exc:
            sink.lost(hosts, BrokerLost(f"the broker {safe_url(self.work.settings.broker)} "
                                        f"is unreachable ({safe_url(str(exc))})"))
            return
        for queue, members in shards(hosts, self.work.inventory, self.work.shard_size,
                                     self.work.settings.route_key):
            self._send(Shard(queue, members), sink)
        try:
            self._gather(sink, cancel)
        except KeyboardInterrupt:
            self._cancel(sink)
            raise

    def _send(self, shard: Shard, sink: RecordSink) -> None:
        try:
            self.app.send_task(TASK, args=[payload.encode(self.work, shard.hosts)],
                               queue=shard.queue, task_id=shard.task_id)
        except Exception as exc:  # kombu wraps the broker's errors in its own
            log.warning("run %s: could not send a shard: %s", self.work.run_id,
                        safe_url(str(exc)))
            sink.lost(shard.hosts, BrokerLost(f"its shard could not be sent to the broker: "
                                              f"{safe_url(str(exc))}"[:300]))
            return
        self.pending[shard.task_id] = shard
        log.info("run %s: shard of %d host(s) sent to queue %s%s", self.work.run_id,
                 len(shard.hosts), shard.queue,
                 f" (delivery {shard.attempt + 1})" if shard.attempt else "")

    def _gather(self, sink: RecordSink, cancel: CancelFlag) -> None:
        next_watch = 0.0
        while self.pending:
            if cancel.is_set():
                self._cancel(sink)
                return
            try:
                if not self.client.exists(self.keys.dispatcher):
                    self._broker_lost(sink)
                    return
                self._stream(sink)
                self._poll(sink)
                if time.monotonic() >= next_watch:
                    self._watch(sink)
                    next_watch = time.monotonic() + WATCH_S
            except BROKER_ERRORS as exc:
                if time.monotonic() - self._warned > 10:
                    log.warning("run %s: broker unreachable (%s); still waiting",
                                self.work.run_id, safe_url(str(exc)))
                    self._warned = time.monotonic()
                time.sleep(0.5)
            time.sleep(POLL_S)

    def _stream(self, sink: RecordSink) -> None:
        """Devices begun and records of devices finished since the last look, as workers
        begin and finish them (live progress, the devices in progress with their start
        as seen here, and the database written while shards still run)."""
        began = [str(h) for h in self.client.lrange(self.keys.began, self._began, -1)]
        if began:
            self._began += len(began)
            for host in sink.missing(began):
                sink.started(host)
        hosts = [str(h) for h in self.client.lrange(self.keys.finished, self._streamed, -1)]
        if not hosts:
            return
        self._streamed += len(hosts)
        new = sink.missing(hosts)
        if new:
            for raw in self.client.mget([self.keys.device("done", h) for h in new]):
                if raw:
                    sink.finished(DeviceResult.from_json(json.loads(raw)))

    def _poll(self, sink: RecordSink) -> None:
        for task_id, shard in list(self.pending.items()):
            result = AsyncResult(task_id, app=self.app)
            if not result.ready():
                continue
            del self.pending[task_id]
            if result.successful():
                for raw in result.result["devices"]:
                    sink.finished(DeviceResult.from_json(raw))
                rest = self._salvage(shard, sink)
                if rest and not self.cancelling:  # else: interrupted, the rollout says so
                    sink.lost(rest, WorkerError("no record came back for this device"))
            else:
                rest = self._salvage(shard, sink)
                sink.lost(rest, WorkerError(
                    f"the shard failed on its worker: {type(result.result).__name__}: "
                    f"{safe_url(str(result.result))}"[:300]))

    # -- lost workers ---------------------------------------------------------------------

    def _watch(self, sink: RecordSink) -> None:
        """Shards whose worker went silent, or whose queue no live worker consumes."""
        shards = list(self.pending.values())
        holders = [str(h) if h else None
                   for h in self.client.mget([ShardKeys(s.task_id).holder for s in shards])]
        # after the holders: a worker marks a shard held and itself present in one
        # transaction, so a holder read here is in the live set read next
        live = live_workers(self.client)
        now = time.monotonic()
        for shard, holder in zip(shards, holders, strict=True):
            if holder:
                if holder != shard.holder:
                    shard.holder, shard.held_since = holder, now
                if holder not in live:
                    self._lose(shard, sink, live, f"worker {worker_of(holder)} went silent "
                               f"(no heartbeat for {self.bound:g}s)")
                elif now - shard.held_since > self.budget:
                    self._lose(shard, sink, live, f"worker {worker_of(holder)} did not finish "
                               f"this device's shard within {self.budget:.0f}s",
                               redeliver=False)
            elif any(shard.queue in queues for queues in live.values()):
                shard.unserved_since = None
            elif shard.unserved_since is None:
                shard.unserved_since = now
            elif now - shard.unserved_since > self.bound:
                self._lose(shard, sink, live, f"no live worker consumes queue {shard.queue!r}")

    def _lose(self, shard: Shard, sink: RecordSink, live: dict[str, list[str]], reason: str,
              redeliver: bool = True) -> None:
        """Give the shard up: keep what its worker finished (the ledger has it), then send
        the rest to a live worker, or record them WorkerLost."""
        del self.pending[shard.task_id]
        self.client.set(ShardKeys(shard.task_id).dropped, "1", ex=LEDGER_TTL_S)
        rest = self._salvage(shard, sink)
        if not rest:
            return
        free_shard_leases(self.client, [self._address(h) for h in rest],
                          ShardKeys(shard.task_id))
        takers = [w for w, queues in live.items() if shard.queue in queues]
        if redeliver and takers and shard.attempt < MAX_REDELIVERIES:
            log.warning("run %s: %s; %d device(s) of its shard sent to queue %s again",
                        self.work.run_id, reason, len(rest), shard.queue)
            self._send(Shard(shard.queue, rest, attempt=shard.attempt + 1), sink)
            return
        if redeliver and not takers and "no live worker" not in reason:
            reason += f", and no live worker consumes queue {shard.queue!r}"
        log.warning("run %s: %s; %d device(s) recorded as WorkerLost", self.work.run_id,
                    reason, len(rest))
        sink.lost(rest, WorkerLost(reason))

    def _address(self, host: str) -> str:
        """The device's lease name as this inventory gives its address (a worker whose
        inventory says otherwise holds another key: that lease lapses by its TTL)."""
        inventory = self.work.inventory
        return device_key(*inventory.address(host, inventory.driver_for(
            host, self.work.spec.driver)))

    def _salvage(self, shard: Shard, sink: RecordSink) -> list[str]:
        """Records the shard's worker left in the run ledger; the devices it had started.
        Returns the hosts still without a record."""
        hosts = sink.missing(shard.hosts)
        if not hosts:
            return []
        for raw in self.client.mget([self.keys.device("done", h) for h in hosts]):
            if raw:
                sink.finished(DeviceResult.from_json(json.loads(raw)))
        rest = sink.missing(hosts)
        if rest:
            for host, started in zip(rest, self.client.smismember(self.keys.started, rest),
                                     strict=True):
                if started:
                    sink.started(host)
        return rest

    def _broker_lost(self, sink: RecordSink) -> None:
        hosts = sink.missing([h for s in self.pending.values() for h in s.hosts])
        self.pending.clear()
        sink.lost(hosts, BrokerLost(
            "the broker lost its data (Redis restarted) while this device's shard was queued "
            "or running; result unknown"), progress_known=False)

    # -- cancel ---------------------------------------------------------------------------

    def _cancel(self, sink: RecordSink) -> None:
        """Tell the workers (their running shards stop within a moment), take the records
        of what finished, and leave the rest to the rollout, which records them as
        interrupted."""
        self.cancelling = True
        try:
            self.client.set(self.keys.cancel, "1", ex=LEDGER_TTL_S)
            holders = self.client.mget([ShardKeys(t).holder for t in self.pending])
            for task_id, holder in zip(list(self.pending), holders, strict=True):
                if not holder:  # never received: it will see the cancel and do nothing
                    self._salvage(self.pending.pop(task_id), sink)
            deadline = time.monotonic() + CANCEL_GRACE_S
            while self.pending and time.monotonic() < deadline:
                self._poll(sink)
                time.sleep(0.1)
            for shard in self.pending.values():
                self._salvage(shard, sink)
        except BROKER_ERRORS as exc:
            log.warning("run %s: broker unreachable while cancelling (%s)", self.work.run_id,
                        safe_url(str(exc)))
        self.pending.clear()
