"""The exception hierarchy: one root, specific subclasses that also subclass the builtin."""

from __future__ import annotations

from pathlib import Path


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


class TopologyError(InputError):
    """A containerlab topology file that cannot be deployed as written."""


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


class JobError(InputError):
    """A job file (or its inventory, template or flags) that cannot run as written."""


class DeviceError(RunnerError):
    """One device failed; recorded as that device's status, never stops the others."""

    status = "failed"

    @property
    def error_class(self) -> str:
        return type(self).__name__


class ConnectFailed(DeviceError, ConnectionError):
    """Nothing answered, or the connection broke: the device is unreachable."""

    status = "unreachable"


class SessionLost(DeviceError, ConnectionError):
    """The session died after login (mid-command): not retried, config may be partial."""

    status = "failed"


class AuthFailed(DeviceError, PermissionError):
    """The device refused the credentials."""

    status = "auth_failed"


class HostKeyMismatch(DeviceError):
    """The device's SSH host key is not the one known for it: refused, never trusted."""

    status = "failed"


class DeviceTimeout(DeviceError, TimeoutError):
    """A command, or the device's whole budget, ran out of time."""

    status = "timed_out"


class CommandRejected(DeviceError):
    """The device answered a command with one of its platform's failure indicators."""

    status = "failed"


class RenderFailed(DeviceError):
    """A config template could not be rendered for this device; nothing was sent."""

    status = "failed"


class ParseFailed(DeviceError):
    """Output could not be parsed with the parser the step asked for."""

    status = "failed"
