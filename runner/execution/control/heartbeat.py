"""Signs of life, each a Ticker: a run's process beats in the results store (and looks
there for a cancel asked from elsewhere); a worker keeps its presence key alive in Redis;
a dispatcher keeps its run's key alive there. Whoever reads them (reap, the dispatcher,
the workers' ShardWatch) finds a dead process in bounded time, without waiting for Redis'
visibility timeout."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from runner.execution.control.cancel import REQUEST_POLL_S
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
HEARTBEAT_S = 30.0  # how often a running run says in the store that it is alive
RUN_WATCH_THREAD = "runner-run-watch"  # a run's own thread: heartbeat and cancel requests


# -- a run's process, in the results store ---------------------------------------------------

class RunRow(Protocol):
    """What the watch needs of the results store (runner.store.results.ResultsStore); its
    errors come described (StoreError), never with a statement's parameters."""

    def beat(self, run_id: str) -> None: ...

    def cancel_requested(self, run_id: str) -> str | None: ...


class RunWatch:
    """While a run goes, from a thread of its process: beats in the store every HEARTBEAT_S
    (reap on another machine takes a run silent for STALE_S for dead) and, given `cancel`,
    looks every REQUEST_POLL_S for a cancel asked from elsewhere (`runner cancel`, `runner
    web`): found, it sets `cancel` and the engines wind down. Neither while `paused()`
    (the store is away: the run's records writer says so)."""

    def __init__(self, store: RunRow, run_id: str, cancel: threading.Event | None = None,
                 paused: Callable[[], bool] = lambda: False) -> None:
        self._store = store
        self._run_id = run_id
        self._cancel = cancel
        self._paused = paused
        self._next_beat = time.monotonic() + HEARTBEAT_S  # start_run stored the first
        self._ticker = Ticker(RUN_WATCH_THREAD,
                              REQUEST_POLL_S if cancel is not None else HEARTBEAT_S,
                              self._tick)

    def __enter__(self) -> RunWatch:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._ticker.stop()

    def _tick(self) -> None:
        if self._paused():
            return
        if self._cancel is not None and not self._cancel.is_set():
            self._look_for_cancel(self._cancel)
        if time.monotonic() >= self._next_beat:
            self._next_beat = time.monotonic() + HEARTBEAT_S
            try:
                self._store.beat(self._run_id)
            except Exception as exc:  # the records matter more; say so and go on
                log.warning("run %s: heartbeat not stored: %s", self._run_id, exc)

    def _look_for_cancel(self, cancel: threading.Event) -> None:
        try:
            by = self._store.cancel_requested(self._run_id)
        except Exception as exc:  # the database is away: records and heartbeat say so
            log.debug("run %s: cancel requests not read: %s", self._run_id, exc)
            return
        if by is not None:
            log.warning("run %s: cancelled by %s", self._run_id, by)
            cancel.set()


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
