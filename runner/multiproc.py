"""One run spread over worker processes, one asyncio engine each, so a large run uses every
core; records stream back to the calling process as devices finish, as from one engine."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

from runner.engine import CoordinationSpec, Engine, EngineOptions, now_iso, rollout_stop
from runner.engine import batches as rollout_batches
from runner.inventory import FleetInventory
from runner.job.spec import JobSpec
from runner.records import DeviceResult
from runner.results import RECORDS_THREAD

# Below this many devices per process, forking costs more than a second core gains.
MIN_DEVICES_PER_PROCESS = 64


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def process_count(requested: int | None, hosts: int) -> int:
    """requested: None/0 = automatic (one per usable core when the run is large enough)."""
    if requested:
        return max(1, min(requested, hosts))
    if multiprocessing.current_process().daemon:
        return 1  # e.g. inside a Celery prefork child: it may not have children
    return max(1, min(usable_cores(), hosts // MIN_DEVICES_PER_PROCESS))


def start_method() -> str:
    """fork: the engines inherit the loaded inventory at no cost. From a process where other
    threads run (`runner serve`: the scheduler, other runs), a forked child could inherit a
    lock one of them holds, so the engines start from a clean forkserver process instead
    and receive the job and inventory pickled."""
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and t.name != RECORDS_THREAD]
    return "forkserver" if others else "fork"


def _child(conn: Connection, spec: JobSpec, inventory: FleetInventory,
           options: EngineOptions) -> None:
    """A worker process: runs each list of hosts it is sent, streaming every record."""
    import asyncio

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means

    def send(result: DeviceResult) -> None:
        conn.send(("record", result.to_json(with_backup=True)))

    options = replace(options, on_device_done=send)
    while True:
        hosts = conn.recv()
        if hosts is None:
            return
        asyncio.run(Engine(spec, inventory, options).run(hosts))
        conn.send(("done", None))


class _Worker:
    def __init__(self, ctx: Any, index: int, spec: JobSpec, inventory: FleetInventory,
                 options: EngineOptions) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_conn, spec, inventory, options),
                                   name=f"runner-engine-{index}", daemon=True)
        self.process.start()
        child_conn.close()
        self.pending: set[str] = set()


def run_in_processes(spec: JobSpec, hosts: list[str], inventory: FleetInventory,
                     options: EngineOptions, processes: int) -> list[DeviceResult]:
    """Every host gets exactly one record, in `hosts` order, whatever happens to a worker."""
    ctx = multiprocessing.get_context(start_method())
    cancel = ctx.Event()
    per = replace(options, on_device_done=None, cancel=cancel)
    child_spec = spec.model_copy(update={"concurrency": math.ceil(spec.concurrency
                                                                  / processes)})
    workers = []
    for i in range(processes):
        coordination = options.coordination
        mine = replace(per, coordination=CoordinationSpec(
            coordination.url, coordination.run_id, f"{coordination.owner}:p{i}")
            if coordination else None)
        workers.append(_Worker(ctx, i, child_spec, inventory, mine))
    records: dict[str, DeviceResult] = {}

    def record(result: DeviceResult) -> None:
        if result.host in records:
            return
        records[result.host] = result
        if options.on_device_done:
            options.on_device_done(result)

    try:
        for batch in rollout_batches(hosts, spec):
            _run_batch(workers, batch, record, options, cancel)
            stop = rollout_stop(spec, records, len(hosts))
            if stop:
                for host in hosts:
                    record(DeviceResult(host=host, status="skipped", error=stop,
                                        error_class="RolloutStopped"))
                break
    except KeyboardInterrupt:
        cancel.set()  # in-flight devices end as Interrupted; wait for their records
        _collect(workers, record, None, cancel, grace=30)
        raise
    finally:
        for worker in workers:
            if worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
    return [records[h] for h in hosts]


def _run_batch(workers: list[_Worker], batch: list[str],
               record: Callable[[DeviceResult], None], options: EngineOptions,
               cancel: Any) -> None:
    # Round-robin: devices next to each other (often alike: same site, same fault) spread.
    alive = [w for w in workers if w.process.is_alive()]
    if not alive:
        for host in batch:
            record(DeviceResult(host=host, status="failed", error_class="WorkerLost",
                                finished=now_iso(), error="no engine process was left to "
                                "run this device; it was not contacted"))
        return
    for i, worker in enumerate(alive):
        share = batch[i::len(alive)]
        if share:
            worker.pending = set(share)
            worker.conn.send(share)
    _collect(alive, record, options, cancel, grace=None)


def _collect(workers: list[_Worker], record: Callable[[DeviceResult], None],
             options: EngineOptions | None, cancel: Any, grace: float | None) -> None:
    """Receive records until every worker finished its share (or died)."""
    deadline = None if grace is None else time.monotonic() + grace
    busy: dict[Any, _Worker] = {w.conn: w for w in workers if w.pending}
    while busy:
        if options is not None and options.cancel is not None and options.cancel.is_set():
            cancel.set()  # the workers share this one: their engines stop as on one
        if deadline is not None and time.monotonic() > deadline:
            break
        for conn in wait(list(busy), timeout=0.2):
            worker = busy[conn]
            try:
                kind, data = worker.conn.recv()
            except (EOFError, OSError):
                kind, data = "died", None
            if kind == "record":
                result = DeviceResult.from_json(data)
                worker.pending.discard(result.host)
                record(result)
                continue
            if kind == "died":
                worker.process.join(5)
            _lost(worker, record)  # whatever it did not report on
            del busy[conn]
    for worker in workers:
        _lost(worker, record)


def _lost(worker: _Worker, record: Callable[[DeviceResult], None]) -> None:
    code = worker.process.exitcode
    for host in sorted(worker.pending):
        record(DeviceResult(
            host=host, status="failed", error_class="WorkerLost", finished=now_iso(),
            error=f"the engine process running this device ended (exit code {code}) "
                  "before reporting it; its configuration may be partly changed"))
    worker.pending.clear()
