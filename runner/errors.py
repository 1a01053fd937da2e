"""Every exception runner raises on purpose, in one tree; each also subclasses the builtin
it resembles, so callers may catch either.

    RunnerError
    ├── InputError (ValueError)        bad input: names file, line, field; exit code 2
    │   ├── JobError                   a job file (or its inventory, template, flags)
    │   ├── InventoryError             an inventory file
    │   ├── TopologyError              a containerlab topology file
    │   ├── ExerciseError              a practice exercise file (lab/exercises/)
    │   ├── NotFound (LookupError)     no such run, device, job, token, lab or backup
    │   ├── ApprovalRequired           a real run of a change that needs an approved preview
    │   ├── ApprovalTaken              the preview was decided (or expired) just now
    │   └── BlackoutActive             a run refused inside a blackout window (exit 2)
    ├── StoreError                     the results or schedule database failed
    │   ├── SchemaError                the schema cannot be brought to this runner's head
    │   └── RecordsNotStored           a run's records could not be written: kept in a file
    ├── Conflict                       the request does not fit the current state
    ├── AccessDenied (PermissionError) runner web: no valid token (401)
    │   └── RoleTooLow                 a valid token whose role may not do this (403)
    ├── BrokerError (ConnectionError)  the Redis broker is unreachable or lost its data
    ├── BackupError                    the backup git repository failed
    ├── LabError                       a lab operation failed on this machine
    │   ├── BackendUnavailable         no Docker, not root, missing packages
    │   ├── LabNotFound (LookupError)
    │   └── CommandFailed              a system command the lab relies on exited non-zero
    └── DeviceError                    one device failed: its record's status + error class
        ├── ConnectFailed (ConnectionError)      unreachable; retried; nothing was sent
        ├── SessionLost (ConnectionError)        died after login; config may be partial
        ├── AuthFailed (PermissionError)
        ├── HostKeyMismatch
        ├── DeviceTimeout (TimeoutError)
        ├── CommandRejected                      a platform failure indicator in the answer
        ├── CheckFailed                          an `expect:` condition was false
        │   └── NotCompliant                     still not compliant after remediation
        ├── NoBackup                             compliance against a backup it lacks
        ├── ConfigUnreadable                     hier_config could not read a config
        ├── RollbackFailed                       the kept config could not be put back
        ├── ConfigDrift                          the config moved since the approved preview
        ├── RenderFailed                         a template failed for this device
        ├── OutputTooLarge                       an answer past the job's limits.output
        ├── ParseFailed
        ├── DeviceBusy                           another run holds the device's lease
        ├── ConfigAlreadyAttempted               a lost attempt of this run began a push
        ├── CoordinationFailed                   the run ledger is unreachable
        ├── NotInInventory                       the worker's inventory lacks the host
        ├── SecretUnavailable                    a secret reference could not be resolved
        ├── InternalError                        a bug, confined to one device
        └── NotRun                               the device got no result of its own:
            ├── RolloutStopped                   an earlier batch failed too much
            ├── Interrupted                      the run was cancelled
            ├── WorkerLost                       the process or machine running it died
            ├── WorkerError                      its shard failed on the worker
            ├── BrokerLost                       Redis lost the run's queued work
            ├── NotApproved                      a worker refused an unapproved change
            └── BlackedOut                       its site or group is in a blackout window

A DeviceError's class name is the `error_class` of the device's record, and its `status`
the record's status: the vocabulary of device outcomes is this tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runner.vocab import DeviceStatus

if TYPE_CHECKING:
    from runner.records import RunResult


class RunnerError(Exception):
    """Root of every error runner raises on purpose."""

    exit_code = 1


class InputError(RunnerError, ValueError):
    """Bad input from the user (a file, a flag): names where and what is expected."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class JobError(InputError):
    """A job file (or its inventory, template or flags) that cannot run as written."""


class InventoryError(InputError):
    """An inventory file that cannot be used as written."""


class TopologyError(InputError):
    """A containerlab topology file that cannot be deployed as written."""


class ExerciseError(InputError):
    """A practice exercise file that cannot be used as written."""


class NotFound(InputError, LookupError):
    """What the input names does not exist: a run, a device of a run, a job, a token."""


class ApprovalRequired(InputError):
    """A real run of a job whose schedule says `approval: required`, without an approved
    preview or a recorded override: refused (callers start a preview instead)."""


class ApprovalTaken(InputError):
    """The preview being approved was decided by someone else, or expired, just now."""


class BlackoutActive(InputError):
    """A run that would start inside a blackout window (or whose every device is in one),
    without a recorded `--override-blackout`: refused before any device is touched."""

    def __init__(self, message: str, *, windows: tuple[str, ...] = (),
                 path: Path | str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, path=path, line=line, field=field)
        self.windows = windows  # the windows' names, for the occurrence's record


class StoreError(RunnerError):
    """The results or schedule database could not be used."""


class Conflict(RunnerError):
    """The request does not fit the current state (cancel a run that is not running here)."""


class AccessDenied(RunnerError, PermissionError):
    """A `runner web` request without a valid token or session."""


class RoleTooLow(AccessDenied):
    """A valid token whose role does not allow the action (a viewer starting a run)."""


class SchemaError(StoreError):
    """The database's schema is not one this runner can bring to its head revision (a
    newer runner upgraded it, or an upgrade failed)."""


class RecordsNotStored(StoreError):
    """Records of a run could not be written to the database within RUNNER_DB_RETRY: the
    run's every record is kept in a file instead (`path`), nothing is dropped."""

    def __init__(self, message: str, *, unsaved: int, path: Path | None,
                 run: RunResult | None = None) -> None:
        super().__init__(message)
        self.unsaved = unsaved
        self.path = path
        self.run = run  # the run as it ended, for the caller's own output


class BrokerError(RunnerError, ConnectionError):
    """The Redis broker is unreachable, or lost what it held."""


class BackupError(RunnerError):
    """The backup git repository could not be written."""


class LabError(RunnerError):
    """A lab operation failed on this machine (not the topology's fault)."""


class BackendUnavailable(LabError):
    """The requested lab backend cannot run here (no Docker, not root, missing packages)."""


class LabNotFound(LabError, LookupError):
    """No lab by that name or file is deployed."""


class CommandFailed(LabError):
    """A system command the lab relies on exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()[-2000:]}")


class DeviceError(RunnerError):
    """One device failed; recorded as that device's status, never stops the others."""

    status = DeviceStatus.FAILED

    def __init__(self, message: str = "", *, status: DeviceStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def error_class(self) -> str:
        return type(self).__name__


class ConnectFailed(DeviceError, ConnectionError):
    """Nothing answered, or the connection broke before login: the device is unreachable."""

    status = DeviceStatus.UNREACHABLE


class SessionLost(DeviceError, ConnectionError):
    """The session died after login (mid-command): not retried, config may be partial."""


class AuthFailed(DeviceError, PermissionError):
    """The device refused the credentials (or the enable secret)."""

    status = DeviceStatus.AUTH_FAILED


class HostKeyMismatch(DeviceError):
    """The device's SSH host key is not the one known for it: refused, never trusted."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A command, or the device's whole budget, ran out of time."""

    status = DeviceStatus.TIMED_OUT


class CommandRejected(DeviceError):
    """The device answered a command with one of its platform's failure indicators."""


class CheckFailed(DeviceError):
    """An `expect:` condition of a command step was false, or could not be evaluated."""


class NotCompliant(CheckFailed):
    """A remediated device is still not compliant with its intended config (put back)."""


class NoBackup(DeviceError):
    """A compliance step compares with the device's backup, and it has none."""


class ConfigUnreadable(DeviceError):
    """A config (the device's, or an intended one rendered for it) that hier_config cannot
    read: a line twice in one section, a banner never closed."""


class RollbackFailed(DeviceError):
    """After a failed change, the device's kept config could not be put back."""


class ConfigDrift(DeviceError):
    """The device's running config changed since the preview that was approved: the
    previewed change is not pushed onto a config it was not made for."""

    status = DeviceStatus.SKIPPED


class OutputTooLarge(DeviceError):
    """A device answered with more than the job's limits.output allows."""


class RenderFailed(DeviceError):
    """A config template could not be rendered for this device; nothing was sent."""


class ParseFailed(DeviceError):
    """Output could not be parsed with the parser the step asked for."""


class DeviceBusy(DeviceError):
    """Another run holds this device's lease for longer than the job waits."""

    status = DeviceStatus.SKIPPED


class ConfigAlreadyAttempted(DeviceError):
    """An earlier attempt of this run began configuring the device and was lost: the
    device is not configured a second time for the same run."""


class CoordinationFailed(DeviceError):
    """The run ledger (Redis) could not be reached, so the device was not coordinated."""


class NotInInventory(DeviceError):
    """The worker that received the device has no such host in its inventory."""


class SecretUnavailable(DeviceError):
    """A secret reference ({env: NAME} or {file: PATH}) could not be resolved on the machine
    that opens the device's session: the variable is unset, the file unreadable."""


class InternalError(DeviceError):
    """A bug in runner, confined to the one device it happened on."""


class NotRun(DeviceError):
    """The device has no result of its own: runner recorded why on its behalf."""


class RolloutStopped(NotRun):
    """An earlier rollout batch failed more than max_fail_percentage allows."""

    status = DeviceStatus.SKIPPED


class Interrupted(NotRun):
    """The run was cancelled: failed if the device was in progress, else skipped."""


class WorkerLost(NotRun):
    """The engine process or worker machine running the device died or went silent."""


class WorkerError(NotRun):
    """The device's shard failed on its worker without a record for the device."""


class BrokerLost(NotRun):
    """Redis lost the run's queued or running work (restarted without its data)."""


class NotApproved(NotRun):
    """A worker refused to change the device: the job needs an approved preview and the
    shard carried neither an approved change nor a recorded override."""

    status = DeviceStatus.SKIPPED


class RehearsalFailed(NotRun):
    """The job was rehearsed on a twin first (`--rehearse`) and a device there did not end
    ok or changed: production was never contacted (the run ends rehearsal_failed)."""

    status = DeviceStatus.SKIPPED


class BlackedOut(NotRun):
    """The device's site, group or name is in a blackout window while the run goes on
    elsewhere: never contacted (the run's outcome leaves it out: see RunResult.ok)."""

    status = DeviceStatus.SKIPPED
