"""What every driver offers the steps: commands, config lines, close; errors already ours.

Each driver maps its library's exceptions to runner's (runner/errors.py) through one
`ErrorTable` per phase, at one boundary, as httpx's `map_httpcore_exceptions()` does:

- opening a session (TCP, SSH, login, the library's own session preparation): a loss is
  `ConnectFailed` (unreachable, retried: nothing was sent);
- operating on an open session (enable, commands, config): a loss is `SessionLost`
  (failed, never retried: a config push may be half done).

The runner error is raised `from` the library's exception, so a traceback (`-vv`) shows
the library's own cause; its message is the library's reason (one line, capped) with the
session's credentials masked, or a fixed text (authentication failures).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.errors import DeviceError
from runner.redact import Redactor

REASON_MAX = 300  # characters of a library's reason kept in a runner error message
# extras that hold credentials, masked in error messages like the password
SECRET_EXTRAS = ("secret", "passphrase", "private_key_passphrase",
                  "auth_private_key_passphrase")


@dataclass(frozen=True)
class Timeouts:
    connect: float
    command: float


@dataclass(frozen=True)
class ConnectParams:
    """Everything needed to open one session; the password never shows in repr or logs."""

    host: str
    hostname: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    platform: str  # runner platform (platforms.yaml)
    driver_platform: str  # netmiko device_type or scrapli definition name
    extras: dict[str, Any] = field(default_factory=dict, repr=False)
    # Refuse a host key not in the known_hosts file (the inventory's, else ~/.ssh's);
    # only `host_key_checking: false` in the inventory turns it off, with a warning.
    host_key_checking: bool = True

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values of this session: never part of an error message."""
        values = [self.password, *(self.extras.get(k) for k in SECRET_EXTRAS)]
        return tuple(v for v in values if isinstance(v, str) and v)


def default_known_hosts() -> str | None:
    """~/.ssh/known_hosts, when the inventory names no file of its own."""
    path = os.path.expanduser("~/.ssh/known_hosts")
    return path if os.path.exists(path) else None


class Session(Protocol):
    driver: str

    async def command(self, command: str, timeout: float) -> str:
        """Run one exec-mode command; return its output without echo or prompt."""

    async def configure(self, lines: list[str], timeout: float) -> str:
        """Enter config mode, send lines in order, leave config mode; return the transcript."""

    async def close(self) -> None: ...


def first_line(exc: BaseException) -> str:
    """An exception's first non-blank line, or its type's name."""
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()),
                type(exc).__name__)


@dataclass(frozen=True)
class Rule:
    """One row of an error table: a library exception of type `match` (whose text, if
    `pattern` is given, contains that regular expression, case-insensitively) becomes
    `error(message)`; the message may name the library's `{reason}` and the `{type}`."""

    match: type[BaseException] | tuple[type[BaseException], ...]
    error: type[DeviceError]
    message: str
    pattern: str | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.match) and (
            self.pattern is None or re.search(self.pattern, str(exc), re.I) is not None)


class ErrorTable:
    """One driver's mapping of library errors to runner errors for one phase: rows are
    tried in order and the first that matches makes the runner error. An exception no row
    matches is not the library's (a bug): it is left alone."""

    def __init__(self, *rules: Rule, reason: Callable[[BaseException], str] = first_line
                 ) -> None:
        self.rules = rules
        self.reason = reason

    def map(self, exc: BaseException, secrets: Iterable[str] = ()) -> DeviceError | None:
        for rule in self.rules:
            if rule.matches(exc):
                reason = Redactor(secrets).text(self.reason(exc)).strip()
                reason = (reason.splitlines() or [type(exc).__name__])[0][:REASON_MAX]
                return rule.error(rule.message.format(reason=reason, type=type(exc).__name__))
        return None

    @contextlib.contextmanager
    def boundary(self, secrets: Iterable[str] = ()) -> Iterator[None]:
        """Library errors raised inside become runner errors, raised from them; runner's
        own errors and cancellation pass unchanged."""
        try:
            yield
        except DeviceError:
            raise
        except Exception as exc:
            error = self.map(exc, secrets)
            if error is None:
                raise
            raise error from exc
