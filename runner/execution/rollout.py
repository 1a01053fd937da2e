"""Rollout and record-keeping for every engine: batches and the stop rule, cancel, exactly
one record per device, and the records of devices that never ran (rollout stopped,
interrupted, worker lost). Executors only work devices; this module decides the rest."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace

from runner.errors import Interrupted, NotRun, RollbackFailed, RolloutStopped, WorkerLost
from runner.execution.executor import CancelFlag, Executor
from runner.job.spec import JobSpec, Rollout
from runner.records import DeviceResult, RestorePlan
from runner.vocab import DeviceStatus, OnStop

log = logging.getLogger(__name__)
RecordCallback = Callable[[DeviceResult], None]


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


class Tally:
    """The run's records: the first record of a device wins, every host gets exactly one,
    and devices without a record of their own get one saying why."""

    def __init__(self, hosts: list[str], on_record: RecordCallback | None = None) -> None:
        self.hosts = hosts
        self._wanted = set(hosts)
        self.records: dict[str, DeviceResult] = {}
        self.in_progress: set[str] = set()
        self._on_record = on_record

    # -- what executors report (the RecordSink protocol) ----------------------------------

    def started(self, host: str) -> None:
        if host in self._wanted and host not in self.records:
            self.in_progress.add(host)

    def finished(self, record: DeviceResult) -> None:
        if record.host not in self._wanted or record.host in self.records:
            return
        self.in_progress.discard(record.host)
        self.records[record.host] = record
        if self._on_record is not None:
            self._on_record(record)

    def lost(self, hosts: Iterable[str], error: NotRun, *, progress_known: bool = True) -> None:
        for host in hosts:
            if host in self.records or host not in self._wanted:
                continue
            if not progress_known:
                detail = str(error)
            elif host in self.in_progress:
                detail = f"{error}; the device was in progress: its configuration may be " \
                         "partly changed"
            else:
                detail = f"{error}; the device had not started: it was not contacted"
            self.finished(DeviceResult.of_error(host, type(error)(detail)))

    # -- what the rollout decides ---------------------------------------------------------

    def missing(self, hosts: Iterable[str]) -> list[str]:
        return [h for h in hosts if h not in self.records]

    def interrupt_rest(self) -> None:
        """Cancelled: in-flight devices failed (may be partly changed), the rest skipped."""
        for host in self.missing(self.hosts):
            if host in self.in_progress:
                self.finished(DeviceResult.of_error(host, Interrupted(
                    "run interrupted while this device was in progress; its configuration "
                    "may be partly changed")))
            else:
                self.finished(DeviceResult.of_error(host, Interrupted(
                    "run interrupted before this device started"), status=DeviceStatus.SKIPPED))

    def skip_rest(self, reason: str) -> None:
        for host in self.missing(self.hosts):
            self.finished(DeviceResult.of_error(host, RolloutStopped(reason)))

    def amend(self, rollback: DeviceResult, reason: str) -> None:
        """A changed device's record after the restore pass of a stopped rollout: its own
        steps, then the rollback's; rolled_back, or failed (RollbackFailed)."""
        original = self.records.get(rollback.host)
        if original is None or original.restore is None:
            return  # not a device this pass was asked to put back (or already amended)
        amended = replace(original, steps=[*original.steps, *rollback.steps], restore=None)
        if rollback.status is DeviceStatus.ROLLED_BACK:
            amended.changed = False
            amended.fail(RolloutStopped(f"{reason}; this device's change was rolled back"))
            amended.status = DeviceStatus.ROLLED_BACK
        else:
            amended.fail(RollbackFailed(f"{reason}; rolling this device's change back failed:"
                                        f" {rollback.error_class}: {rollback.error}"))
        self.records[rollback.host] = amended
        if self._on_record is not None:
            self._on_record(amended)

    def ordered(self) -> list[DeviceResult]:
        return [self.records[h] for h in self.hosts]


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
    sink.lost([h for h in plans if tally.records[h].restore is not None],
              WorkerLost("the restore pass returned no record for this device"))


Restorer = Callable[[dict[str, RestorePlan]], Executor]


def run_rollout(spec: JobSpec, hosts: list[str], executor: Executor,
                on_record: RecordCallback | None = None,
                cancel: CancelFlag | None = None,
                restorer: Restorer | None = None) -> list[DeviceResult]:
    """Work `hosts` batch by batch on any executor: the next batch is released only when
    the previous batch's records are in and the stop rule says go on. Every host gets
    exactly one record, in `hosts` order, whatever happens to the executor."""
    tally = Tally(hosts, on_record)
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
