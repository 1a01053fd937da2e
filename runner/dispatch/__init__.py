"""Spreading runs over worker machines: Celery with Redis, device leases, a run ledger."""

from __future__ import annotations

from runner.execution.executor import ExecutorEntry, ExecutorFactory
from runner.vocab import Engine


def _celery() -> ExecutorFactory:
    from runner.dispatch.dispatcher import CeleryExecutor  # Celery loads only when used

    return CeleryExecutor


# The engine `celery`: shards of a run on `runner worker` machines.
CELERY_ENGINE = ExecutorEntry(Engine.CELERY, _celery)
