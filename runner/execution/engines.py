"""This machine's engines for the registry: `local` (one asyncio loop in this process) and
`processes` (one local engine per core), each class loaded when a run uses it. Engines of
other packages (runner.dispatch's celery) are added by whoever composes a run."""

from __future__ import annotations

from runner.execution.executor import ExecutorEntry, ExecutorFactory
from runner.vocab import Engine


def _local() -> ExecutorFactory:
    from runner.execution.local import LocalExecutor

    return LocalExecutor


def _processes() -> ExecutorFactory:
    from runner.execution.processes import ProcessExecutor

    return ProcessExecutor


LOCAL_ENGINES = (ExecutorEntry(Engine.LOCAL, _local),
                 ExecutorEntry(Engine.PROCESSES, _processes))
