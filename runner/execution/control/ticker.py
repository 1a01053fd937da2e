"""One loop for every periodic sign of life and every watch of run control: a daemon thread
that calls a function every few seconds until it is stopped (or the function says done)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Ticker:
    """Calls `tick` every `every` seconds from a thread named `name` until stop(), or
    until `tick` returns False. `tick` handles its own errors: a sign of life that fails
    once is tried again at the next tick."""

    def __init__(self, name: str, every: float, tick: Callable[[], bool | None]) -> None:
        self.every = every
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:  # a thread starts once
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if self._tick() is False:
                return

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, wait: float = 5.0) -> None:
        """No further tick; waits up to `wait` seconds for one under way."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(wait)
