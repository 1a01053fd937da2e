"""The Celery application and its one task: run a shard of a job's hosts on this worker.

Only JSON crosses the broker: the job spec and host names go out, device records come
back. Credentials never travel: each worker resolves hosts in its own inventory.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import cache
from pathlib import Path
from typing import Any

from celery import Celery

from runner.dispatch import settings
from runner.engine import CoordinationSpec, EngineOptions, run_devices
from runner.inventory import FleetInventory, load_inventory
from runner.job.spec import JobSpec
from runner.records import DeviceResult


def make_app() -> Celery:
    app = Celery("runner")
    vt = settings.visibility_timeout()
    app.conf.update(
        broker_url=settings.broker_url(),
        result_backend=settings.result_url(),
        task_serializer="json", result_serializer="json",
        accept_content=["json"], result_accept_content=["json"],
        # A shard is acknowledged when it finished: a worker that dies mid-shard has it
        # redelivered; the run ledger keeps that from configuring any device twice.
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": vt},
        result_backend_transport_options={"visibility_timeout": vt},
        task_default_queue=settings.DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 86400,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app()


@cache
def _inventory(path: str, mtime_ns: int) -> FleetInventory:
    return load_inventory(Path(path))


def worker_inventory() -> FleetInventory:
    path = Path(os.environ.get("RUNNER_INVENTORY", "inventory"))
    stamp = (path / "hosts.yaml" if path.is_dir() else path).stat().st_mtime_ns
    return _inventory(str(path), stamp)


def worker_name() -> str:
    return os.environ.get("RUNNER_WORKER_NAME", f"{socket.gethostname()}:{os.getpid()}")


@app.task(name="runner.run_shard", bind=True)  # type: ignore[untyped-decorator]
def run_shard(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    spec = JobSpec.model_validate(payload["job"])
    inventory = worker_inventory()
    known = [h for h in payload["hosts"] if h in inventory.hosts]
    missing = [DeviceResult(host=h, status="failed", error_class="NotInInventory",
                            worker=worker_name(),
                            error=f"host is not in worker {worker_name()}'s inventory")
               for h in payload["hosts"] if h not in inventory.hosts]
    # Each delivery is its own owner: a redelivered shard must not pass for the lost one.
    owner = f"{worker_name()}:{self.request.id}:{secrets.token_hex(3)}"
    options = EngineOptions(
        templates_dir=Path(os.environ.get("RUNNER_TEMPLATES", "templates")),
        dry_run=bool(payload.get("dry_run")), worker=worker_name(), processes=1,
        coordination=CoordinationSpec(settings.broker_url(), payload["run_id"], owner))
    devices = run_devices(spec, known, inventory, options) if known else []
    return {"devices": [d.to_json(with_backup=True) for d in [*devices, *missing]]}
