"""scrapli v2 sessions: the native core's asyncio API, one event loop for every device."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from scrapli import (
    AuthOptions,
    Cli,
    LookupKeyValue,
    SessionOptions,
    TransportBinOptions,
    TransportSsh2Options,
)
from scrapli.exceptions import FFIException, ScrapliException, TimeoutException
from scrapli.ffi_types import Cancel

from runner.drivers.base import ConnectParams, ErrorTable, Rule, Timeouts, default_known_hosts
from runner.errors import (
    AuthFailed,
    ConnectFailed,
    DeviceError,
    DeviceTimeout,
    HostKeyMismatch,
    SessionLost,
)

T = TypeVar("T")
# Native operations that did not end after being cancelled: their memory must stay alive
# (libscrapli still points at it), so they are kept here rather than freed under it.
_ABANDONED: list[tuple[Any, ...]] = []
_CANCEL_GRACE = 10.0


async def native(cli: Cli, start: Callable[[Cancel], Awaitable[T]], timeout: float) -> T:
    """Run one libscrapli operation, bounded by `timeout`, and never abandon it.

    Cancelling the awaiting coroutine (asyncio.wait_for, a device's budget) would free the
    operation's Cancel flag and Cli while native code still uses them: the process
    segfaults. Instead, on timeout or cancellation, set scrapli's own cancel flag and wait
    for the operation to end before giving up its memory.
    """
    cancel = Cancel()
    task = asyncio.ensure_future(start(cancel))
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except (TimeoutError, asyncio.CancelledError):
        cancel.cancel()
        done, _ = await asyncio.shield(asyncio.wait({task}, timeout=_CANCEL_GRACE))
        if not done:
            _ABANDONED.append((cli, cancel, task))
        elif not task.cancelled():
            task.exception()  # retrieved: the operation's own error is not the news here
        raise


async def _check_privileged(cli: Cli, timeout: float, secrets: tuple[str, ...]) -> None:
    """scrapli answers `enable` with the secret but does not check that it worked."""
    try:
        with _OPERATION.boundary(secrets):
            result = await native(cli, lambda c: cli.get_prompt_async(cancel=c), timeout)
        if not str(result.result).rstrip().endswith("#"):
            raise AuthFailed("enable refused: the secret was not accepted")
    except BaseException:
        await asyncio.shield(_dispose(cli))
        raise


async def _dispose(cli: Cli) -> None:
    """Stop and free the native driver of a session whose open failed or was cancelled.
    libscrapli allocates it (with its threads, and the ssh process of the bin transport)
    when an open starts and frees it only on close: left alone, its threads outlive the
    Python objects they use, and the process crashes (SIGSEGV/SIGBUS) under load or at exit."""
    if cli.ptr is None:
        return  # never allocated, or already freed by scrapli itself
    with contextlib.suppress(ScrapliException, TimeoutError, OSError):
        await native(cli, lambda c: cli.close_async(force=True, cancel=c), _CANCEL_GRACE)


def _reason(exc: BaseException) -> str:
    """libscrapli's text is `<error>: <what failed>`, the last line the most precise."""
    lines = [ln.strip().rstrip(":").strip() for ln in str(exc).splitlines()]
    return next((ln for ln in reversed(lines) if ln), type(exc).__name__)


# libscrapli reports every failure as `<error name>: <text>` (an OperationException):
# its rows match the text. A timeout is runner's own bound (`native`) or scrapli's.
_TIMEOUT = (TimeoutException, TimeoutError)
_CLOSED = r"\beof\b|broken ?pipe|connection ?reset|not ?open|closed"  # the session ended
_OPEN = ErrorTable(
    Rule(_TIMEOUT, ConnectFailed, "timed out opening the session"),
    Rule(ScrapliException, AuthFailed, "authentication failed",
         pattern=r"password prompt .*seen multiple times|authentication fail|auth fail"
                 r"|permission denied"),
    Rule(ScrapliException, HostKeyMismatch, "host key not trusted: {reason}",
         pattern=r"host key verification failed|known.?host"),  # OpenSSH, libssh2
    Rule(EOFError, ConnectFailed, "the session closed while opening: {reason}"),
    Rule(ScrapliException, ConnectFailed, "the session closed while opening: {reason}",
         pattern=_CLOSED),
    # libssh2 ("transport: ssh2") says nothing more than the error name for some failures
    Rule(ScrapliException, DeviceError, "the session could not be opened; the ssh2 transport "
         "gave no reason (use transport: bin for one)", pattern=r"\A[\w ]*:?\s*\Z"),
    Rule((ScrapliException, OSError), ConnectFailed, "{reason}"),
    reason=_reason)
_OPERATION = ErrorTable(
    Rule(_TIMEOUT, DeviceTimeout, "command timed out"),
    Rule(EOFError, SessionLost, "session lost: {reason}"),
    Rule(ScrapliException, SessionLost, "session lost: {reason}", pattern=_CLOSED),
    Rule((ScrapliException, OSError), DeviceError, "{type}: {reason}"),
    reason=_reason)


class ScrapliSession:
    driver = "scrapli"

    def __init__(self, cli: Cli, secrets: tuple[str, ...]) -> None:
        self._cli = cli
        self._secrets = secrets

    @classmethod
    async def open(cls, params: ConnectParams, timeouts: Timeouts,
                   executor: ThreadPoolExecutor | None) -> ScrapliSession:
        extras = params.extras
        checking = params.host_key_checking and extras.get("enable_strict_key", True)
        known_hosts = extras.get("known_hosts_path") or (default_known_hosts() if checking
                                                         else None)
        if checking and known_hosts is None:  # nothing to check against: refused
            raise HostKeyMismatch("no known_hosts file to check its host key against (name "
                                  "one in the inventory, or host_key_checking: false)")
        transport: TransportBinOptions | TransportSsh2Options
        # OpenSSH ("bin") by default: it says why a session failed (auth, host key,
        # refused); libssh2 ("ssh2") runs in-process but reports auth failures without a
        # reason, so those can only be recorded as unexplained failures.
        if extras.get("transport", "bin") == "ssh2":
            transport = TransportSsh2Options(known_hosts_path=known_hosts)
        else:
            transport = TransportBinOptions(known_hosts_path=known_hosts,
                                            enable_strict_key=bool(checking))
        cli = Cli(
            host=params.hostname, port=params.port,
            definition_file_or_name=params.driver_platform,
            auth_options=AuthOptions(
                username=params.username, password=params.password,
                private_key_path=extras.get("private_key_path"),
                # the definitions' `enable` step answers its prompt with this lookup
                lookups=[LookupKeyValue(key="enable", value=str(extras["secret"]))]
                if extras.get("secret") else []),
            session_options=SessionOptions(operation_timeout_s=max(1, int(timeouts.command))),
            transport_options=transport,
        )
        secrets = params.secrets
        # Login and the definition's on_open (enable, paging off) happen inside open_async.
        with _OPEN.boundary(secrets):
            try:
                await native(cli, lambda c: cli.open_async(cancel=c), timeouts.connect)
            except BaseException as exc:
                if not isinstance(exc, FFIException):  # scrapli freed the driver itself then
                    await asyncio.shield(_dispose(cli))
                raise
        if extras.get("secret"):
            await _check_privileged(cli, timeouts.command, secrets)
        return cls(cli, secrets)

    async def command(self, command: str, timeout: float) -> str:
        cli = self._cli
        with _OPERATION.boundary(self._secrets):
            result = await native(cli, lambda c: cli.send_input_async(
                command, requested_mode="privileged_exec", cancel=c), timeout)
        return str(result.result)

    async def configure(self, lines: list[str], timeout: float) -> str:
        cli = self._cli
        with _OPERATION.boundary(self._secrets):
            result = await native(cli, lambda c: cli.send_inputs_async(
                lines, requested_mode="configuration", stop_on_indicated_failure=True,
                cancel=c), timeout)
            await native(cli, lambda c: cli.enter_mode_async("privileged_exec", cancel=c),
                         timeout)
        # A transcript like netmiko's: each line sent, then what the device answered.
        return "\n".join(f"{sent}\n{answer}".rstrip()
                         for sent, answer in zip(result.inputs, result.results, strict=False))

    async def close(self) -> None:
        cli = self._cli
        with contextlib.suppress(ScrapliException, TimeoutError, OSError):
            await native(cli, lambda c: cli.close_async(cancel=c), 10)  # gone either way
