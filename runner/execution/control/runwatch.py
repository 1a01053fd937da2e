"""A run's signs of life in the results store, from a thread of its process: it beats there
(reap on another machine finds a dead run in bounded time) and looks there for a cancel
asked from elsewhere. No Redis: a local run without a broker never imports it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from runner.execution.control.cancel import REQUEST_POLL_S
from runner.execution.control.ticker import Ticker

log = logging.getLogger(__name__)
HEARTBEAT_S = 30.0  # how often a running run says in the store that it is alive
RUN_WATCH_THREAD = "runner-run-watch"  # a run's own thread: heartbeat and cancel requests


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
