"""Cancel, wherever a run is controlled from: how often each side looks for it, how long
in-flight devices get to wind down, and when a Celery shard must not start or must stop
(the run cancelled or over, the shard given to another worker, the dispatcher gone)."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from runner.execution.control.keys import RunKeys, ShardKeys
from runner.execution.control.ticker import Ticker

if TYPE_CHECKING:  # Redis is imported where a shard runs, not by every run's REQUEST_POLL_S
    import redis

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 30.0  # how long in-flight devices get to wind down after cancel or Ctrl-C
REQUEST_POLL_S = 2.0  # how often a running run looks in the store for a cancel from elsewhere
FLAG_POLL_S = 0.2  # how often a local engine's event loop looks at its cancel flag
SHARD_WATCH_S = 0.5  # how often a running shard looks for cancel, drop or its dispatcher

CLOSED = "the run had already finished"
DROPPED = "the dispatcher had given this shard to another worker"
CANCELLED = "the run was cancelled"
ORPHANED = "the run's dispatcher is gone (its process ended without finishing the run)"


def shard_stop(client: redis.Redis, keys: RunKeys, shard: ShardKeys,
               watch_dispatcher: bool) -> str | None:
    """Why the shard must not run (or run on) now, or None. `watch_dispatcher`: the payload
    asked to stop when the dispatcher's heartbeat (RunKeys.alive) lapses."""
    closed, dropped, cancelled, alive = client.mget([keys.closed, shard.dropped,
                                                     keys.cancel, keys.alive])
    if closed:
        return CLOSED
    if dropped:
        return DROPPED
    if cancelled:
        return CANCELLED
    if watch_dispatcher and not alive:
        return ORPHANED
    return None


class ShardWatch:
    """While a shard runs: sets `cancel` when shard_stop() finds a reason (the run was
    cancelled or is over, the dispatcher dropped the shard because it decided this worker
    was lost, or the dispatcher's process is gone)."""

    def __init__(self, client: redis.Redis, keys: RunKeys, shard: ShardKeys,
                 cancel: threading.Event, watch_dispatcher: bool = False) -> None:
        self.client = client
        self.keys = keys
        self.shard = shard
        self.cancel = cancel
        self.watch_dispatcher = watch_dispatcher
        self._ticker = Ticker("runner-shard-watch", SHARD_WATCH_S, self._look)

    def __enter__(self) -> ShardWatch:
        self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._ticker.stop()

    def _look(self) -> bool:
        import redis

        try:
            why = shard_stop(self.client, self.keys, self.shard, self.watch_dispatcher)
        except redis.RedisError:
            return True  # the broker is away: keep working, look again
        if why is None:
            return True
        if why == ORPHANED:
            log.warning("run %s: its dispatcher is gone (no heartbeat): this shard stops, no "
                        "further device is contacted", self.keys.run_id)
        self.cancel.set()
        return False
