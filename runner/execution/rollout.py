"""Rollout for every engine: batches and the stop rule, cancel, on_stop rollback, exactly
one record per device (the run's Tally) and the records of devices that never ran
(rollout stopped, interrupted, worker lost). Executors only work devices; this module
decides the rest."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace

from runner.errors import Interrupted, NotRun, WorkerLost
from runner.execution.engines import LOCAL_ENGINES
from runner.execution.executor import CancelFlag, Executor, ExecutorRegistry, Work
from runner.execution.tally import RecordCallback, Tally
from runner.job.spec import JobSpec, Rollout
from runner.records import DeviceResult, RestorePlan
from runner.vocab import DeviceStatus, Engine, OnStop

log = logging.getLogger(__name__)


def batches(hosts: list[str], rollout: Rollout | None) -> list[list[str]]:
    """The rollout's batches, in order (one batch without a rollout)."""
    if rollout is None or not hosts:
        return [hosts]
    size = rollout.batch_size
    n = math.ceil(len(hosts) * int(size[:-1]) / 100) if isinstance(size, str) else size
    n = max(1, n)
    return [hosts[i:i + n] for i in range(0, len(hosts), n)]


def stop_reason(rollout: Rollout | None, records: Iterable[DeviceResult]) -> str | None:
    """Why the rollout stops after this batch (even the last one: on_stop: rollback then
    still puts the changed devices back), or None to go on."""
    done = list(records)
    if rollout is None or not done:
        return None
    failed = sum(1 for r in done if not r.status.worked)  # drift found is no failure
    percent = 100.0 * failed / len(done)
    if percent > rollout.max_fail_percentage:
        return (f"rollout stopped: {failed} of {len(done)} devices failed "
                f"({percent:.0f}% > max_fail_percentage {rollout.max_fail_percentage:g})")
    return None


class _Either:
    """Cancelled when the caller's flag is set or Ctrl-C arrived."""

    def __init__(self, outer: CancelFlag | None) -> None:
        self.outer = outer
        self.own = threading.Event()

    def is_set(self) -> bool:
        return self.own.is_set() or (self.outer is not None and self.outer.is_set())


class _Restores:
    """The RecordSink of a stopped rollout's restore pass: amends the tally's records."""

    def __init__(self, tally: Tally, reason: str) -> None:
        self.tally = tally
        self.reason = reason

    def started(self, host: str) -> None:
        pass

    def finished(self, record: DeviceResult) -> None:
        self.tally.amend(record, self.reason)

    def lost(self, hosts: Iterable[str], error: NotRun, *, progress_known: bool = True) -> None:
        for host in hosts:
            self.tally.amend(DeviceResult.of_error(host, error), self.reason)

    def missing(self, hosts: Iterable[str]) -> list[str]:
        """Those of `hosts` whose change still waits to be put back (not amended yet)."""
        return [h for h in hosts if (r := self.tally.records.get(h)) is not None
                and r.restore is not None]


def _roll_back_earlier(tally: Tally, restorer: Restorer, reason: str,
                       cancel: CancelFlag) -> None:
    """on_stop: rollback: put back every device the earlier batches changed."""
    plans = {h: r.restore for h, r in tally.records.items()
             if r.status is DeviceStatus.CHANGED and r.restore is not None}
    if not plans:
        return
    log.warning("rollout stopped: rolling back %d changed device(s)", len(plans))
    sink = _Restores(tally, reason)
    with restorer(plans) as executor:
        executor.run(list(plans), sink, cancel)
    sink.lost(sink.missing(plans), WorkerLost("the restore pass returned no record for this "
                                              "device"))


Restorer = Callable[[dict[str, RestorePlan]], Executor]


def run_rollout(spec: JobSpec, hosts: list[str], executor: Executor,
                on_record: RecordCallback | None = None,
                cancel: CancelFlag | None = None,
                restorer: Restorer | None = None,
                on_start: Callable[[str], None] | None = None) -> list[DeviceResult]:
    """Work `hosts` batch by batch on any executor: the next batch is released only when
    the previous batch's records are in and the stop rule says go on. Every host gets
    exactly one record, in `hosts` order, whatever happens to the executor. `on_start`
    hears each device as it starts."""
    tally = Tally(hosts, on_record, on_start)
    flag = _Either(cancel)
    try:
        for batch in batches(hosts, spec.rollout):
            if flag.is_set():
                break
            executor.run(batch, tally, flag)
            if flag.is_set():
                break
            unreported = tally.missing(batch)
            if unreported:  # an executor must report every device; say so if it did not
                log.error("the %s engine returned without a record for %d device(s)",
                          executor.engine, len(unreported))
                tally.lost(unreported, WorkerLost(f"the {executor.engine} engine returned "
                                                  "without reporting this device"))
            reason = stop_reason(spec.rollout, tally.records.values())
            if reason:
                tally.skip_rest(reason)
                if spec.rollout is not None and spec.rollout.on_stop is OnStop.ROLLBACK \
                        and restorer is not None:
                    _roll_back_earlier(tally, restorer, reason, flag)
                break
    except KeyboardInterrupt:
        flag.own.set()
        tally.interrupt_rest()
        raise
    except Exception as exc:  # a bug in an engine: every device still gets its record
        flag.own.set()
        tally.lost(tally.missing(hosts), Interrupted(
            f"runner stopped on an internal error ({type(exc).__name__}: {exc})"[:300]))
        raise
    if flag.is_set():
        tally.interrupt_rest()
    return tally.ordered()


def run_devices(work: Work, hosts: list[str], engine: Engine,
                on_record: RecordCallback | None = None, cancel: CancelFlag | None = None,
                *, registry: ExecutorRegistry | None = None,
                on_start: Callable[[str], None] | None = None) -> list[DeviceResult]:
    """Run the job on `hosts` with `engine` (see choose_engine) from `registry` (default:
    this machine's engines): one record per host, in `hosts` order, each passed to
    on_record as it is known."""
    engines = registry or ExecutorRegistry(LOCAL_ENGINES)

    def restorer(plans: dict[str, RestorePlan]) -> Executor:
        return engines.create(engine, replace(work, restore=plans))

    with engines.create(engine, work) as executor:
        return run_rollout(work.spec, hosts, executor, on_record, cancel, restorer,
                           on_start)
