"""netmiko sessions: blocking calls run in the engine's thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import paramiko
from netmiko import BaseConnection, ConnectHandler
from netmiko.channel import SSHChannel
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
    WriteException,
)

from runner.drivers.base import ConnectParams, ErrorTable, Rule, Timeouts, first_line
from runner.errors import (
    AuthFailed,
    ConnectFailed,
    DeviceError,
    DeviceTimeout,
    HostKeyMismatch,
    SessionLost,
)

T = TypeVar("T")
# extras a netmiko inventory may carry; anything else is a typo we should not pass on
_EXTRAS = frozenset({
    "secret", "use_keys", "key_file", "passphrase", "allow_agent", "ssh_strict",
    "system_host_keys", "alt_host_keys", "alt_key_file", "ssh_config_file", "global_delay_factor",
    "fast_cli", "session_log", "keepalive", "disabled_algorithms", "allow_auto_change",
    "encoding", "sock", "verbose",
})


def _reason(exc: BaseException) -> str:
    """netmiko wraps paramiko's errors in a paragraph of advice: the wrapped one says why."""
    inner = exc.__context__
    if isinstance(exc, NetmikoTimeoutException) and isinstance(inner, paramiko.SSHException):
        return first_line(inner)
    return first_line(exc)


_LOST = (ReadException, WriteException, EOFError, OSError, paramiko.SSHException)

# Opening: TCP is runner's own socket; then paramiko's handshake and login and netmiko's
# session preparation (first prompt, paging off), all inside ConnectHandler.
_OPEN = ErrorTable(
    # paramiko gave up waiting for the login to finish: slow, not refused
    Rule(paramiko.AuthenticationException, ConnectFailed, "timed out logging in",
         pattern=r"authentication timeout"),
    Rule((NetmikoAuthenticationException, paramiko.AuthenticationException), AuthFailed,
         "authentication failed"),
    Rule(paramiko.BadHostKeyException, HostKeyMismatch,
         "host key does not match the known host key"),
    # netmiko re-raises paramiko's mismatch as a NetmikoTimeoutException with its text;
    # RejectPolicy's unknown key is a plain SSHException
    Rule(paramiko.SSHException, HostKeyMismatch, "host key not trusted: {reason}",
         pattern=r"host key for server .* does not match|not found in known_hosts"),
    Rule(paramiko.SSHException, AuthFailed, "authentication failed",
         pattern=r"authentication fail|auth fail|permission denied"),
    # logged in, then the CLI did not answer in time (a hung device)
    Rule(ReadTimeout, DeviceTimeout, "logged in, but the CLI did not answer: {reason}"),
    Rule(TimeoutError, ConnectFailed, "timed out opening the session"),
    Rule((NetmikoTimeoutException, *_LOST), ConnectFailed, "{reason}"),
    Rule(Exception, DeviceError, "{type}: {reason}"),
    reason=_reason)

# An open session: enable, commands, config. netmiko raises ValueError for some device
# answers (e.g. config mode not entered): those fail the device as they are.
_OPERATION = ErrorTable(
    Rule((ReadTimeout, TimeoutError), DeviceTimeout, "command timed out: {reason}"),
    Rule(_LOST, SessionLost, "session lost: {reason}"),
    Rule(Exception, DeviceError, "{type}: {reason}"),
    reason=_reason)


class _LiveSSHChannel(SSHChannel):
    """netmiko's SSH channel, except that reading a channel the device closed raises once
    what came before is read: netmiko's own read polls paramiko's `recv_ready()`, which
    stays False on a dead channel, so a session dropped mid-command would look like a
    command timeout (after waiting for all of it)."""

    def read_channel(self) -> str:
        chan = self.remote_conn
        # closed or EOF first: whatever came before either is already buffered
        ended = chan is not None and (chan.closed or chan.eof_received)
        output = super().read_channel()
        if ended and not output:
            raise ReadException("the device closed the session")
        return output


class NetmikoSession:
    """A netmiko connection on a socket runner owns: when the device's budget ends, the
    socket is shut down, so a thread blocked inside paramiko returns at once instead of
    holding the run until its own timeout."""

    driver = "netmiko"

    def __init__(self, conn: BaseConnection, sock: socket.socket,
                 executor: ThreadPoolExecutor | None, secrets: tuple[str, ...]) -> None:
        self._conn = conn
        self._sock = sock
        self._executor = executor
        self._secrets = secrets

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with _OPERATION.boundary(self._secrets):
            return await _in_thread(self._executor, [self._sock],
                                    lambda: fn(*args, **kwargs))

    @classmethod
    async def open(cls, params: ConnectParams, timeouts: Timeouts,
                   executor: ThreadPoolExecutor | None) -> NetmikoSession:
        extras = {k: v for k, v in params.extras.items() if k in _EXTRAS}
        if params.host_key_checking:  # netmiko's default trusts any key: never that
            extras["ssh_strict"] = True
            if not extras.get("alt_key_file"):
                extras["system_host_keys"] = True  # ~/.ssh/known_hosts, if any
        else:
            extras["ssh_strict"] = False
        holder: list[socket.socket] = []

        def connect() -> BaseConnection:
            try:
                sock = socket.create_connection((params.hostname, params.port),
                                                timeout=timeouts.connect)
            except OSError as exc:  # refused, no route, or nothing answered in time
                raise ConnectFailed(f"TCP connection to {params.hostname}:{params.port} "
                                    f"failed: {exc.strerror or exc}") from exc
            holder.append(sock)
            conn = ConnectHandler(
                device_type=params.driver_platform, host=params.hostname, port=params.port,
                username=params.username or "", password=params.password or "",
                conn_timeout=timeouts.connect, auth_timeout=timeouts.connect,
                banner_timeout=timeouts.connect, read_timeout_override=timeouts.command,
                sock=sock, **extras,
            )
            if type(conn.channel) is SSHChannel:
                conn.channel = _LiveSSHChannel(conn.remote_conn, conn.encoding)
            return conn

        try:
            with _OPEN.boundary(params.secrets):
                conn = await _in_thread(executor, holder, connect)
        except BaseException:
            for sock in holder:
                _shutdown(sock)
            raise
        session = cls(conn, holder[0], executor, params.secrets)
        if extras.get("secret"):
            try:
                await session._call(session._enable)
            except BaseException:
                _shutdown(session._sock)
                raise
        return session

    def _enable(self) -> None:
        """Privileged exec, if the login landed in user exec: the secret is in the extras."""
        if not self._conn.check_enable_mode():
            try:
                self._conn.enable()
            except ValueError as exc:  # netmiko's word for "still not in enable mode"
                raise AuthFailed("enable refused: the secret was not accepted") from exc

    async def command(self, command: str, timeout: float) -> str:
        return str(await self._call(self._conn.send_command, command, read_timeout=timeout))

    async def configure(self, lines: list[str], timeout: float) -> str:
        return str(await self._call(self._conn.send_config_set, lines, read_timeout=timeout))

    async def close(self) -> None:
        with contextlib.suppress(DeviceError):  # the session is gone either way
            await self._call(self._conn.disconnect)
        _shutdown(self._sock)


async def _in_thread(executor: ThreadPoolExecutor | None, socks: list[socket.socket],
                     fn: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, fn)
    except asyncio.CancelledError:
        for sock in socks:
            _shutdown(sock)  # unblocks the thread still inside paramiko
        raise


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
