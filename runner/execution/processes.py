"""The engine-processes executor: one local engine per usable core, so a large run uses
every core; each batch is dealt round-robin over them and every device's start and record
streams back over a pipe as it happens, as from one engine."""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

from runner import logsetup
from runner.errors import WorkerLost
from runner.execution.control import liveness
from runner.execution.control.cancel import CANCEL_GRACE_S
from runner.execution.control.runwatch import RUN_WATCH_THREAD
from runner.execution.executor import CancelFlag, RecordSink, Work, usable_cores
from runner.execution.local import LocalExecutor
from runner.records import RECORDS_THREAD, DeviceResult
from runner.vocab import Engine

# Reports taken from one engine's pipe before the others are looked at again.
DRAIN = 256
# Threads of the run's own process a forked engine may inherit: they touch only the store.
RUN_THREADS = (RECORDS_THREAD, RUN_WATCH_THREAD)


def start_method() -> str:
    """fork: the engines inherit the loaded inventory at no cost. From a process where other
    threads run (`runner serve`: the scheduler, other runs), a forked child could inherit a
    lock one of them holds, so the engines start from a clean forkserver process instead
    and receive the job and inventory pickled."""
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and t.name not in RUN_THREADS]
    return "forkserver" if others else "fork"


class _PipeSink:
    """An engine process's Progress: everything goes to the parent (its Tally) as it
    happens."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def started(self, host: str) -> None:
        self.conn.send(("started", host))

    def finished(self, record: DeviceResult) -> None:
        self.conn.send(("record", record.to_json(transport=True)))


def _child(conn: Connection, work: Work, owner: str, cancel: Any, log_level: int,
           controller: liveness.Controller, pipe: Connection) -> None:
    """An engine process: works each list of hosts it is sent, reporting every device; it
    dies with the run's process (liveness.bind), never working on for a run nobody controls."""
    liveness.bind(controller, pipe)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    logsetup.inherit(log_level)
    executor = LocalExecutor(work, owner=owner)
    sink = _PipeSink(conn)
    while True:
        hosts = conn.recv()
        if hosts is None:
            return
        executor.run(hosts, sink, cancel)
        conn.send(("done", None))


class _Engine:
    def __init__(self, ctx: Any, index: int, work: Work, cancel: Any,
                 pipe: Connection) -> None:
        self.index = index
        self.conn, child_conn = ctx.Pipe()
        owner = f"local:{work.run_id}:p{index}"
        level = logging.getLogger().getEffectiveLevel()
        self.process = ctx.Process(target=_child, args=(child_conn, work, owner, cancel, level,
                                                        liveness.Controller.this_process(),
                                                        pipe),
                                   name=f"runner-engine-{index}", daemon=True)
        self.process.start()
        child_conn.close()
        self.pending: set[str] = set()
        self.busy = False

    def lost(self, sink: RecordSink) -> None:
        """Whatever this engine did not report on is lost with it."""
        if self.pending:
            sink.lost(sorted(self.pending), WorkerLost(
                f"engine process {self.index} ended (exit code {self.process.exitcode})"))
        self.pending.clear()
        self.busy = False


class ProcessExecutor:
    engine = Engine.PROCESSES

    def __init__(self, work: Work) -> None:
        self.work = work
        self.count = work.processes or usable_cores()
        self._ctx = multiprocessing.get_context(start_method())
        self._cancel = self._ctx.Event()  # shared by every engine: their loops stop as one
        self._engines: list[_Engine] = []
        self._lifeline: Connection | None = None  # the write end: never written to

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, hosts: int) -> None:
        if self._engines:
            return
        count = max(1, min(self.count, hosts))
        child = replace(self.work, spec=self.work.spec.model_copy(update={
            "concurrency": math.ceil(self.work.spec.concurrency / count)}))
        reader, self._lifeline = self._ctx.Pipe(duplex=False)
        self._engines = [_Engine(self._ctx, i, child, self._cancel, reader)
                         for i in range(count)]
        reader.close()  # the engines hold it; this process holds only the write end

    def run(self, hosts: list[str], sink: RecordSink, cancel: CancelFlag) -> None:
        self._start(len(hosts))
        alive = [e for e in self._engines if e.process.is_alive()]
        if not alive:
            sink.lost(hosts, WorkerLost("no engine process was left to run this device"))
            return
        # Round-robin: devices next to each other (often alike: same site, same fault) spread.
        for i, engine in enumerate(alive):
            share = hosts[i::len(alive)]
            if share:
                engine.pending, engine.busy = set(share), True
                engine.conn.send(share)
        try:
            self._collect(sink, cancel)
        except KeyboardInterrupt:
            self._cancel.set()  # in-flight devices end; wait for what they report
            self._collect(sink, cancel, grace=CANCEL_GRACE_S)
            raise

    def _collect(self, sink: RecordSink, cancel: CancelFlag,
                 grace: float | None = None) -> None:
        """Take reports until every engine finished its share (or died, or the grace after
        cancel is over)."""
        deadline = None if grace is None else time.monotonic() + grace
        busy = {e.conn: e for e in self._engines if e.busy}
        while busy:
            if cancel.is_set() and not self._cancel.is_set():
                self._cancel.set()
                deadline = time.monotonic() + CANCEL_GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                return
            for conn in wait(list(busy), timeout=0.2):
                engine = busy[conn]
                # every report already in the pipe, not one per wait(): wait() builds a
                # selector each call, two reports a device add up at 10,000 devices
                for _ in range(DRAIN):
                    if not self._take(engine, sink):
                        del busy[conn]
                        break
                    if not engine.conn.poll():
                        break

    def _take(self, engine: _Engine, sink: RecordSink) -> bool:
        """One report of `engine`; False when it finished or died (it is no longer busy)."""
        try:
            kind, data = engine.conn.recv()
        except (EOFError, OSError):
            kind, data = "died", None
        if kind == "started":
            sink.started(data)
        elif kind == "record":
            record = DeviceResult.from_json(data)
            engine.pending.discard(record.host)
            sink.finished(record)
        elif kind == "done":
            if self._cancel.is_set():  # the rollout records in-flight devices
                engine.pending.clear()
            engine.lost(sink)  # else: it returned without reporting these
            return False
        else:  # died
            engine.process.join(5)
            engine.lost(sink)
            return False
        return True

    def close(self) -> None:
        for engine in self._engines:
            if engine.process.is_alive():
                with contextlib.suppress(OSError):
                    engine.conn.send(None)
        for engine in self._engines:
            engine.process.join(5)
            if engine.process.is_alive():
                engine.process.kill()
                engine.process.join()
        self._engines = []
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
