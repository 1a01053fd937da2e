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

from runner.dispatch import settings
from runner.errors import InputError
from runner.inventory import load_inventory


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
def worker(queues: tuple[str, ...], concurrency: int, inventory: Path, templates: Path,
           name: str | None, loglevel: str, child: bool) -> None:
    """Start a worker (broker and results: RUNNER_BROKER_URL, RUNNER_RESULT_URL)."""
    load_inventory(inventory)  # bad input fails here, before joining the cluster
    if not templates.is_dir():
        raise InputError("templates directory not found", path=templates)
    worker_name = name or f"{socket.gethostname()}:{os.getpid()}"
    if not child:
        sys.exit(supervise([*sys.argv[1:], "--child", "--name", worker_name]))
    os.environ.update({"RUNNER_INVENTORY": str(inventory.resolve()),
                       "RUNNER_TEMPLATES": str(templates.resolve()),
                       "RUNNER_WORKER_NAME": worker_name})
    from runner.dispatch.celery_app import app

    click.echo(f"runner worker {worker_name}: broker {settings.safe_url(settings.broker_url())}"
               f", queues {', '.join(queues or [settings.DEFAULT_QUEUE])}", err=True)
    # prefork: one process per concurrent shard. scrapli v2 runs many sessions on one
    # event loop, but event loops in two threads of one process race in its native core.
    app.worker_main([
        "worker", "--pool", "prefork", "--concurrency", str(concurrency),
        "--queues", ",".join(queues or [settings.DEFAULT_QUEUE]),
        "--hostname", f"runner-{os.getpid()}@{socket.gethostname()}",
        "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])


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
        click.echo(f"runner worker: the Celery worker exited ({code}); starting it again "
                   f"in {delay:g}s", err=True)
        if stopping.wait(delay):
            return 0
