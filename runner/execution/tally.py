"""A run's records, the one place that keeps them: the first record of a device wins, every
host gets exactly one, and devices without a record of their own get one saying why. The
rollout keeps one per run (every engine reports into it), the dispatcher asks it which
devices still lack a record, and a run whose process died is finished with one."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from runner.errors import Interrupted, NotRun, RollbackFailed, RolloutStopped
from runner.records import DeviceResult
from runner.vocab import DeviceStatus

RecordCallback = Callable[[DeviceResult], None]


class Tally:
    """The run's records (the RecordSink every engine reports into): the first record of a
    device wins, every host gets exactly one, and devices without a record of their own
    get one saying why. A record the results store has taken is slimmed in place to its
    summary (DeviceResult.slim): what the stop rule, a rollback's restore plans and the
    run's end read stays; the run's memory does not grow with its devices' outputs."""

    def __init__(self, hosts: list[str], on_record: RecordCallback | None = None,
                 on_start: Callable[[str], None] | None = None) -> None:
        self.hosts = hosts
        self._wanted = set(hosts)
        self.records: dict[str, DeviceResult] = {}
        self.in_progress: set[str] = set()
        self._on_record = on_record
        self._on_start = on_start  # told once when a device starts (the live run page)

    # -- what executors report and ask (the RecordSink protocol) --------------------------

    def started(self, host: str) -> None:
        if host in self._wanted and host not in self.records and host not in self.in_progress:
            self.in_progress.add(host)
            if self._on_start is not None:
                self._on_start(host)

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

    def missing(self, hosts: Iterable[str]) -> list[str]:
        """Those of `hosts` without a record yet, in their order."""
        return [h for h in hosts if h not in self.records]

    # -- what the rollout decides ---------------------------------------------------------

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
