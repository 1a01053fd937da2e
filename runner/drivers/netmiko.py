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
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)

from runner.drivers.base import ConnectParams, Timeouts, classify_connect_error
from runner.errors import (
    AuthFailed,
    ConnectFailed,
    DeviceError,
    DeviceTimeout,
    HostKeyMismatch,
)

T = TypeVar("T")
# extras a netmiko inventory may carry; anything else is a typo we should not pass on
_EXTRAS = frozenset({
    "secret", "use_keys", "key_file", "passphrase", "allow_agent", "ssh_strict",
    "system_host_keys", "alt_host_keys", "alt_key_file", "ssh_config_file", "global_delay_factor",
    "fast_cli", "session_log", "keepalive", "disabled_algorithms", "allow_auto_change",
    "encoding", "sock", "verbose",
})


def _map_error(exc: BaseException) -> DeviceError:
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, NetmikoAuthenticationException):
        return AuthFailed("authentication failed")
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyMismatch("host key does not match the known host key")
    if isinstance(exc, ReadTimeout | TimeoutError):
        return DeviceTimeout(f"command timed out: {_first_line(exc)}")
    if isinstance(exc, NetmikoTimeoutException | EOFError | OSError | ReadException):
        return ConnectFailed(_first_line(exc))
    if isinstance(exc, paramiko.SSHException):
        kind = classify_connect_error(str(exc))
        if kind == "hostkey":
            return HostKeyMismatch(f"host key not trusted: {_first_line(exc)}")
        if kind == "auth":
            return AuthFailed("authentication failed")
        return ConnectFailed(_first_line(exc))
    return DeviceError(f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class NetmikoSession:
    """A netmiko connection on a socket runner owns: when the device's budget ends, the
    socket is shut down, so a thread blocked inside paramiko returns at once instead of
    holding the run until its own timeout."""

    driver = "netmiko"

    def __init__(self, conn: BaseConnection, sock: socket.socket,
                 executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._sock = sock
        self._executor = executor

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await _in_thread(self._executor, self._sock, lambda: fn(*args, **kwargs))

    @classmethod
    async def open(cls, params: ConnectParams, timeouts: Timeouts,
                   executor: ThreadPoolExecutor) -> NetmikoSession:
        extras = {k: v for k, v in params.extras.items() if k in _EXTRAS}
        holder: list[socket.socket] = []

        def connect() -> BaseConnection:
            try:
                sock = socket.create_connection((params.hostname, params.port),
                                                timeout=timeouts.connect)
            except OSError as exc:  # refused, no route, or nothing answered in time
                raise ConnectFailed(f"TCP connection to {params.hostname}:{params.port} "
                                    f"failed: {exc.strerror or exc}") from None
            holder.append(sock)
            conn = ConnectHandler(
                device_type=params.driver_platform, host=params.hostname, port=params.port,
                username=params.username or "", password=params.password or "",
                conn_timeout=timeouts.connect, auth_timeout=timeouts.connect,
                banner_timeout=timeouts.connect, read_timeout_override=timeouts.command,
                sock=sock, **extras,
            )
            if extras.get("secret") and not conn.check_enable_mode():
                try:
                    conn.enable()  # landed in user exec: the enable secret is in the extras
                except ValueError:
                    raise AuthFailed("enable refused: the secret was not accepted") from None
            return conn

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, connect)
        try:
            conn = await future
        except asyncio.CancelledError:
            for sock in holder:
                _shutdown(sock)
            raise
        except Exception as exc:
            for sock in holder:
                _shutdown(sock)
            raise _map_error(exc) from None
        return cls(conn, holder[0], executor)

    async def command(self, command: str, timeout: float) -> str:
        return str(await self._call(self._conn.send_command, command, read_timeout=timeout))

    async def configure(self, lines: list[str], timeout: float) -> str:
        return str(await self._call(self._conn.send_config_set, lines, read_timeout=timeout))

    async def close(self) -> None:
        with contextlib.suppress(DeviceError):  # the session is gone either way
            await self._call(self._conn.disconnect)
        _shutdown(self._sock)


async def _in_thread(executor: ThreadPoolExecutor, sock: socket.socket,
                     fn: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, fn)
    except asyncio.CancelledError:
        _shutdown(sock)  # unblocks the thread still inside paramiko
        raise
    except Exception as exc:
        raise _map_error(exc) from None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
