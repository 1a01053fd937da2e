"""How a job's devices are worked on, by any engine.

    executor.py   the Executor protocol, Work (what it is given), the engine registry
    engines.py    this machine's engines (runner.job.run adds the dispatcher's)
    rollout.py    batches and the stop rule, cancel, one record per device, records of
                  devices that never ran: the same for every engine
    device.py     one device: lease, session, steps, record (secrets masked)
    retries.py    opening a session with the job's retry policy
    leases.py     device leases and the run ledger in Redis (with a broker)
    local.py      engine `local`: one asyncio loop in this process
    processes.py  engine `processes`: one local engine per core
    runner/dispatch/dispatcher.py   engine `celery`: shards on `runner worker` machines
"""

from __future__ import annotations

from dataclasses import replace

from runner.execution.engines import LOCAL_ENGINES
from runner.execution.executor import (
    CancelFlag,
    Executor,
    ExecutorRegistry,
    Work,
    choose_engine,
)
from runner.execution.rollout import RecordCallback, run_rollout
from runner.records import DeviceResult, RestorePlan
from runner.vocab import Engine


def run_devices(work: Work, hosts: list[str], engine: Engine,
                on_record: RecordCallback | None = None, cancel: CancelFlag | None = None,
                *, registry: ExecutorRegistry | None = None) -> list[DeviceResult]:
    """Run the job on `hosts` with `engine` (see choose_engine) from `registry` (default:
    this machine's engines): one record per host, in `hosts` order, each passed to
    on_record as it is known."""
    registry = registry or ExecutorRegistry(LOCAL_ENGINES)

    def restorer(plans: dict[str, RestorePlan]) -> Executor:
        return registry.create(engine, replace(work, restore=plans))

    with registry.create(engine, work) as executor:
        return run_rollout(work.spec, hosts, executor, on_record, cancel, restorer)


__all__ = ["ExecutorRegistry", "Work", "choose_engine", "run_devices"]
