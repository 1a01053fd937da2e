"""Worker liveness in Redis: each worker process keeps a presence key alive (a TTL it
renews), names itself as the holder of every shard it receives, and its running shards
watch for the run's cancel. The dispatcher reads these to find a lost worker in bounded
time, without waiting for Redis' visibility timeout."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from types import TracebackType

import redis

from runner.execution.leases import LEDGER_TTL_S, RunKeys
from runner.settings import safe_url

log = logging.getLogger(__name__)
WORKERS = "runner:workers"  # set of worker incarnations that announced themselves
WATCH_S = 0.5  # how often a running shard looks for cancel or being dropped


def presence_key(incarnation: str) -> str:
    return f"runner:worker:{incarnation}"


def worker_of(incarnation: str) -> str:
    """The worker name in an incarnation (name#pid.random)."""
    return incarnation.rsplit("#", 1)[0]


@dataclass(frozen=True)
class ShardKeys:
    task_id: str

    @property
    def holder(self) -> str:
        """The incarnation of the worker that received (and runs) the shard."""
        return f"runner:shard:{self.task_id}:holder"

    @property
    def dropped(self) -> str:
        """Set by the dispatcher when it gave the shard up (its devices went elsewhere)."""
        return f"runner:shard:{self.task_id}:dropped"


@cache
def sync_client(url: str) -> redis.Redis:
    """One client per process and broker (created after a pool process forked)."""
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10,
                                decode_responses=True, health_check_interval=30)


class Heartbeat:
    """A worker's presence: renewed every ttl/4 by a thread of the worker's main process,
    so the key expires `ttl` seconds after the machine (or the process group) dies."""

    def __init__(self, url: str, incarnation: str, queues: list[str], ttl: float) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                           decode_responses=True)
        self.incarnation = incarnation
        self.value = json.dumps({"worker": worker_of(incarnation), "queues": queues})
        self.ttl_ms = max(1000, int(ttl * 1000))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runner-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        if self._thread.is_alive():
            return
        try:
            self.beat()  # present before the first shard can arrive
        except redis.RedisError as exc:  # Celery waits for the broker; so does this
            log.warning("heartbeat failed: %s", safe_url(str(exc)))
        self._thread.start()

    def beat(self) -> None:
        pipe = self.client.pipeline()
        pipe.set(presence_key(self.incarnation), self.value, px=self.ttl_ms)
        pipe.sadd(WORKERS, self.incarnation)
        pipe.execute()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 4000):
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis away: the worker reconnects by itself
                log.warning("heartbeat failed: %s", safe_url(str(exc)))

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(presence_key(self.incarnation))
            self.client.srem(WORKERS, self.incarnation)

    def hold(self, task_id: str) -> None:
        """Called as the worker receives a shard (before it runs): this worker holds it."""
        try:
            self.client.set(ShardKeys(task_id).holder, self.incarnation, ex=LEDGER_TTL_S)
        except redis.RedisError as exc:
            log.warning("could not record holding shard %s: %s", task_id,
                        safe_url(str(exc)))


def live_workers(client: redis.Redis) -> dict[str, list[str]]:
    """Incarnations whose presence key is alive -> the queues they consume. Incarnations
    whose key expired are forgotten."""
    members = sorted(str(m) for m in client.smembers(WORKERS))
    if not members:
        return {}
    values = client.mget([presence_key(m) for m in members])
    live: dict[str, list[str]] = {}
    dead: list[str] = []
    for member, value in zip(members, values, strict=True):
        if value is None:
            dead.append(member)
        else:
            live[member] = list(json.loads(value).get("queues", []))
    if dead:
        client.srem(WORKERS, *dead)
    return live


class DispatcherAlive:
    """The dispatcher's own heartbeat for one run: a key renewed every quarter of `ttl` by
    a thread of its process, so that it expires `ttl` seconds after the process dies
    (SIGKILL, the OOM killer, a power cut) and the workers stop the run's shards."""

    def __init__(self, client: redis.Redis, keys: RunKeys, ttl: float) -> None:
        self.client = client
        self.key = keys.alive
        self.ttl_ms = max(1000, int(ttl * 1000))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runner-dispatcher-alive",
                                        daemon=True)

    def start(self) -> None:
        self.client.set(self.key, "1", px=self.ttl_ms)  # before the first shard is sent
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 4000):
            try:
                self.client.set(self.key, "1", px=self.ttl_ms)
            except redis.RedisError as exc:  # the gather loop says the broker is away
                log.debug("dispatcher heartbeat not renewed: %s", safe_url(str(exc)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)


class ShardWatch:
    """While a shard runs: sets `cancel` when the run is cancelled, the dispatcher dropped
    the shard (it decided this worker was lost and gave the devices to another), or
    (`watch_dispatcher`) the dispatcher's process is gone: its heartbeat key expired."""

    def __init__(self, client: redis.Redis, keys: RunKeys, shard: ShardKeys,
                 cancel: threading.Event, watch_dispatcher: bool = False) -> None:
        self.client = client
        self.keys = keys
        self.shard = shard
        self.cancel = cancel
        self.watch_dispatcher = watch_dispatcher
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runner-shard-watch",
                                        daemon=True)

    def __enter__(self) -> ShardWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._done.wait(WATCH_S):
            try:
                cancelled, dropped, alive = self.client.mget(
                    [self.keys.cancel, self.shard.dropped, self.keys.alive])
            except redis.RedisError:
                continue  # the broker is away: keep working, look again
            if cancelled or dropped or (self.watch_dispatcher and not alive):
                if self.watch_dispatcher and not alive:
                    log.warning("run %s: its dispatcher is gone (no heartbeat): this shard "
                                "stops, no further device is contacted", self.keys.run_id)
                self.cancel.set()
                return
