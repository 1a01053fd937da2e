"""`runner worker`: a Celery worker that runs shards of jobs on the devices it can reach."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click

from runner.cli_common import echo, settings_of
from runner.errors import InputError
from runner.inventory.loading import load_inventory
from runner.settings import DEFAULT_QUEUE, safe_url


@click.command()
@click.option("-Q", "--queue", "queues", multiple=True,
              help="Queue to consume (repeatable): a site name, or 'runner' (the default, "
                   "for hosts without a site).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Shards this worker runs at once, one process each (each runs its devices "
                   "concurrently).")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=Path("inventory"),
              show_default=True, help="This worker's inventory: where credentials come from.")
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True)
@click.option("-n", "--name", help="Worker name (default: host:pid).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--child", is_flag=True, hidden=True, help="Run the Celery worker itself.")
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...], concurrency: int, inventory: Path,
           templates: Path, name: str | None, loglevel: str, child: bool) -> None:
    """Start a worker (broker and results: RUNNER_BROKER_URL, RUNNER_RESULT_URL; silent
    for RUNNER_WORKER_LOST_AFTER seconds, its shards go to other workers)."""
    if child:
        from runner.dispatch.celery_app import worker_inventory

        # Loaded before the pool forks, so every shard process starts with it: else the
        # first shard each process ran paid for it (seconds at 10,000 hosts) inside a run.
        worker_inventory(inventory.resolve())
    else:
        load_inventory(inventory)  # bad input fails here, before joining the cluster
    if not templates.is_dir():
        raise InputError("templates directory not found", path=templates)
    worker_name = name or f"{socket.gethostname()}:{os.getpid()}"
    if not child:
        if settings_of(ctx).signs_broker_messages:  # a bad key fails here, once
            from runner.dispatch.celery_app import make_app

            make_app(settings_of(ctx))
        sys.exit(supervise([*sys.argv[1:], "--child", "--name", worker_name]))
    from celery.signals import task_received, worker_ready, worker_shutdown

    from runner.dispatch.celery_app import WorkerConfig, make_app
    from runner.execution.control.heartbeat import WorkerPresence
    from runner.execution.control.keys import incarnation as incarnation_of

    settings = settings_of(ctx)
    queue_list = list(queues or [DEFAULT_QUEUE])
    incarnation = incarnation_of(worker_name, os.getpid())
    app = make_app(settings, WorkerConfig(settings, inventory.resolve(), templates.resolve(),
                                          worker_name, incarnation))
    heartbeat = WorkerPresence(settings.broker, incarnation, queue_list,
                               settings.worker_lost_after)
    # Present once it consumes (dispatchers send only to live workers), gone when it stops.
    worker_ready.connect(lambda **_: heartbeat.start(), weak=False)
    worker_shutdown.connect(lambda **_: heartbeat.stop(), weak=False)
    task_received.connect(lambda request=None, **_: heartbeat.hold(request.id), weak=False)
    echo(f"runner worker {worker_name}: broker {safe_url(settings.broker)}, queues "
         f"{', '.join(queue_list)}", err=True)
    try:
        # prefork: one process per concurrent shard. scrapli v2 runs many sessions on one
        # event loop, but event loops in two threads of one process race in its native core.
        app.worker_main([
            "worker", "--pool", "prefork", "--concurrency", str(concurrency),
            "--queues", ",".join(queue_list),
            "--hostname", f"runner-{os.getpid()}@{socket.gethostname()}",
            "--loglevel", loglevel, "--without-gossip", "--without-mingle",
        ])
    finally:
        heartbeat.stop()


def supervise(argv: list[str]) -> int:
    """Run the Celery worker as a child and start it again when it exits by itself.

    Celery 5.7's worker exits ("Unrecoverable error") when Redis drops its connection, e.g.
    on a Redis restart; a worker machine must come back on its own, so it is restarted
    (with backoff) until SIGTERM or SIGINT asks it to stop.
    """
    stopping = threading.Event()
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    delay = 1.0
    while True:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "runner", *argv])
        code = proc.wait()
        if stopping.is_set():
            return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
        echo(f"runner worker: the Celery worker exited ({code}); starting it again "
             f"in {delay:g}s", err=True)
        if stopping.wait(delay):
            return 0
