"""Signs of life in Redis, each a Ticker: a worker keeps its presence key alive there; a
dispatcher keeps its run's key alive there. Whoever reads them (the dispatcher, the workers'
ShardWatch) finds a dead process in bounded time, without waiting for Redis' visibility
timeout. (A run's own beat in the results store is runwatch's.)"""

from __future__ import annotations

import contextlib
import json
import logging

import redis

from runner.execution.control.keys import (
    LEDGER_TTL_S,
    WORKERS,
    RunKeys,
    ShardKeys,
    presence_key,
    worker_of,
)
from runner.execution.control.ticker import Ticker
from runner.settings import safe_url

log = logging.getLogger(__name__)


# -- a worker, in Redis -----------------------------------------------------------------------

class WorkerPresence:
    """A worker's presence: renewed every ttl/4 by a thread of the worker's main process,
    so the key expires `ttl` seconds after the machine (or the process group) dies."""

    def __init__(self, url: str, incarnation: str, queues: list[str], ttl: float) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                           decode_responses=True)
        self.incarnation = incarnation
        self.value = json.dumps({"worker": worker_of(incarnation), "queues": queues})
        self.ttl_ms = max(1000, int(ttl * 1000))
        self._ticker = Ticker("runner-heartbeat", self.ttl_ms / 4000, self._renew)

    def start(self) -> None:
        if self._ticker.stopped:
            return
        try:
            self.beat()  # present before the first shard can arrive
        except redis.RedisError as exc:  # Celery waits for the broker; so does this
            log.warning("heartbeat failed: %s", safe_url(str(exc)))
        self._ticker.start()

    def beat(self) -> None:
        pipe = self.client.pipeline()
        pipe.set(presence_key(self.incarnation), self.value, px=self.ttl_ms)
        pipe.sadd(WORKERS, self.incarnation)
        pipe.execute()

    def _renew(self) -> None:
        try:
            self.beat()
        except redis.RedisError as exc:  # Redis away: the worker reconnects by itself
            log.warning("heartbeat failed: %s", safe_url(str(exc)))

    def stop(self) -> None:
        if self._ticker.stopped:
            return
        self._ticker.stop()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(presence_key(self.incarnation))
            self.client.srem(WORKERS, self.incarnation)

    def hold(self, task_id: str) -> None:
        """Called as the worker receives a shard (before it runs): this worker holds it, and
        is present (a beat with it: after a Redis restart the presence key is gone until
        the next tick, and a dispatcher must not take the holder of a new shard for lost)."""
        try:
            pipe = self.client.pipeline()
            pipe.set(presence_key(self.incarnation), self.value, px=self.ttl_ms)
            pipe.sadd(WORKERS, self.incarnation)
            pipe.set(ShardKeys(task_id).holder, self.incarnation, ex=LEDGER_TTL_S)
            pipe.execute()
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


# -- a dispatcher, in Redis -------------------------------------------------------------------

class DispatcherAlive:
    """The dispatcher's own heartbeat for one run: a key renewed every quarter of `ttl` by
    a thread of its process, so that it expires `ttl` seconds after the process dies
    (SIGKILL, the OOM killer, a power cut) and the workers stop the run's shards."""

    def __init__(self, client: redis.Redis, keys: RunKeys, ttl: float) -> None:
        self.client = client
        self.key = keys.alive
        self.ttl_ms = max(1000, int(ttl * 1000))
        self._ticker = Ticker("runner-dispatcher-alive", self.ttl_ms / 4000, self._renew)

    def start(self) -> None:
        self.client.set(self.key, "1", px=self.ttl_ms)  # before the first shard is sent
        self._ticker.start()

    def _renew(self) -> None:
        try:
            self.client.set(self.key, "1", px=self.ttl_ms)
        except redis.RedisError as exc:  # the gather loop says the broker is away
            log.debug("dispatcher heartbeat not renewed: %s", safe_url(str(exc)))

    def stop(self) -> None:
        self._ticker.stop()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)
