"""runner's own driver: an interactive CLI over asyncssh, prompt-driven like scrapli, with
no thread and no child process per device; the fastest way to reach many devices."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import cast

from runner.drivers.base import ConnectParams, ErrorTable, Rule, Timeouts
from runner.drivers.sshlib import asyncssh
from runner.errors import (
    AuthFailed,
    ConnectFailed,
    DeviceTimeout,
    HostKeyMismatch,
    SessionLost,
)
from runner.inventory import platforms

# Only the last line of output is tested against the prompt: output lines end in a newline,
# a prompt does not, so a '#' inside output never ends a read early.
_TAIL = 256
# AES-GCM first: asyncssh's chacha20-poly1305 (its default) builds two cipher contexts per
# packet, AES-GCM one object per key, with AES-NI; every algorithm stays on offer.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr")


@cache
def _known_hosts(path: str, mtime_ns: int) -> asyncssh.SSHKnownHosts:
    """known_hosts parsed once per file version (a fleet's file has a line per device)."""
    return asyncssh.read_known_hosts(path)


def known_hosts_for(path: str | None) -> asyncssh.SSHKnownHosts | str | None:
    """The host keys to trust: the inventory's file, else ~/.ssh/known_hosts, else none
    (every key refused; `strict_host_keys: false` in the extras turns checking off)."""
    if path is None:
        default = os.path.expanduser("~/.ssh/known_hosts")
        path = default if os.path.exists(default) else None
        if path is None:
            # No file to check against is a refusal, as with OpenSSH's strict checking.
            return asyncssh.import_known_hosts("")
    try:
        return _known_hosts(path, os.stat(path).st_mtime_ns)
    except OSError as exc:
        raise HostKeyMismatch(f"known_hosts file {path}: {exc.strerror}") from exc


class _Reader(asyncssh.SSHClientSession[str]):
    """Collects what the device sends; wakes the waiting read when a prompt may be there."""

    def __init__(self) -> None:
        self.buffer: list[str] = []
        self.tail = ""
        self.event = asyncio.Event()
        self.closed: str | None = None  # why the session ended, once it has
        self.error: Exception | None = None  # the connection's own error, if it died

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self.buffer.append(data)
        self.tail = (self.tail + data)[-_TAIL:]
        self.event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = str(exc) if exc else "the device closed the session"
        self.error = exc
        self.event.set()

    def eof_received(self) -> bool:
        self.closed = "the device closed the session"
        self.event.set()
        return False

    def take(self) -> str:
        text = "".join(self.buffer)
        self.buffer.clear()
        self.tail = ""
        return text


# The reader's own low-level events: the tables below map them to runner's errors like a
# library's exceptions, so they never leave this module.
class ChannelClosed(ConnectionError):
    """The device closed the session (or the connection died) while runner read from it."""


class NoPrompt(Exception):
    """The device sent no prompt in time."""


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


# Opening: TCP, SSH, login, the shell channel, the first prompt. The prompt reads below
# raise ChannelClosed and NoPrompt, which each phase's table maps for itself.
_OPEN = ErrorTable(
    Rule(NoPrompt, DeviceTimeout, "logged in, but the CLI did not answer: {reason}"),
    Rule(TimeoutError, ConnectFailed, "timed out opening the session"),
    Rule(asyncssh.PermissionDenied, AuthFailed, "authentication failed"),
    Rule(asyncssh.HostKeyNotVerifiable, HostKeyMismatch, "host key not trusted: {reason}"),
    Rule(ChannelClosed, ConnectFailed, "the session closed before the first prompt: {reason}"),
    Rule((OSError, asyncssh.Error), ConnectFailed, "{reason}"),
    reason=_reason)
# An open session, from its first prompt on: enable, paging off, commands, config.
_OPERATION = ErrorTable(
    Rule(NoPrompt, DeviceTimeout, "{reason}"),
    Rule(TimeoutError, DeviceTimeout, "command timed out"),
    Rule((ChannelClosed, OSError, asyncssh.Error), SessionLost,
         "session lost mid-command: {reason}"),
    reason=_reason)


class AsyncsshSession:
    driver = "asyncssh"

    def __init__(self, conn: asyncssh.SSHClientConnection,
                 chan: asyncssh.SSHClientChannel[str], reader: _Reader,
                 platform: platforms.Platform, secrets: tuple[str, ...]) -> None:
        self._conn = conn
        self._chan = chan
        self._reader = reader
        self._platform = platform
        self._secrets = secrets
        self._prompt = re.compile(platform.cli_prompt)
        self._password = re.compile(platform.cli_password_prompt)

    @classmethod
    async def open(cls, params: ConnectParams, timeouts: Timeouts,
                   executor: ThreadPoolExecutor | None) -> AsyncsshSession:
        platform = platforms.get(params.platform) or platforms.get("cisco_ios")
        assert platform is not None
        extras = params.extras
        secrets = params.secrets
        key = extras.get("private_key_path") or extras.get("key_file")
        # asyncio.timeout rather than wait_for: no task of its own per call (three a device)
        with _OPEN.boundary(secrets):
            async with asyncio.timeout(timeouts.connect):
                conn = await asyncssh.connect(
                    params.hostname, params.port, username=params.username,
                    password=params.password, client_keys=[key] if key else None,
                    known_hosts=known_hosts_for(extras.get("known_hosts"))
                    if params.host_key_checking and extras.get("strict_host_keys", True)
                    else None,
                    agent_path=None, config=None, login_timeout=timeouts.connect,
                    encryption_algs=list(_CIPHERS),
                    keepalive_interval=extras.get("keepalive", 0))
        try:
            with _OPEN.boundary(secrets):
                async with asyncio.timeout(timeouts.connect):
                    chan, reader = await conn.create_session(
                        _Reader, term_type="vt100", term_size=(511, 24), encoding="utf-8",
                        errors="replace")
                session = cls(conn, chan, cast(_Reader, reader), platform, secrets)
                banner = await session._read_prompt(timeouts.connect)
            # The session is established: a loss from here on is SessionLost.
            with _OPERATION.boundary(secrets):
                if banner.rstrip().endswith(">"):  # user exec: enable first
                    await session._enable(extras.get("secret") or params.password or "",
                                          timeouts.command)
                for command in platform.cli_on_open:
                    await session._send(command, timeouts.command)
        except BaseException:
            conn.abort()
            raise
        return session

    async def _enable(self, secret: str, timeout: float) -> None:
        """Privileged exec from user exec, answering the secret prompt if one comes."""
        self._chan.write(self._platform.cli_enable + "\n")
        text = await self._read_prompt(timeout, self._password)
        if self._password.search(text[-64:]):
            self._chan.write(secret + "\n")
            text = await self._read_prompt(timeout)
        if not text.rstrip().endswith("#"):
            raise AuthFailed("enable refused: the secret was not accepted")

    async def _read_prompt(self, timeout: float,
                           other: re.Pattern[str] | None = None) -> str:
        reader = self._reader
        prompt = self._prompt
        try:
            async with asyncio.timeout(timeout):
                while True:
                    tail = reader.tail
                    last = tail[tail.rfind("\n") + 1:]
                    if last and (prompt.match(last) or (other and other.search(last))):
                        return reader.take()
                    if reader.closed is not None:
                        raise ChannelClosed(reader.closed) from reader.error
                    reader.event.clear()
                    await reader.event.wait()
        except TimeoutError as exc:
            raise NoPrompt(f"no prompt within {timeout:g}s") from exc

    async def _send(self, line: str, timeout: float) -> str:
        """Send one line; return the answer without its echo and the next prompt."""
        if self._reader.closed is not None:
            raise ChannelClosed(self._reader.closed) from self._reader.error
        self._chan.write(line + "\n")
        text = (await self._read_prompt(timeout)).replace("\r\n", "\n").replace("\r", "")
        first, _, rest = text.partition("\n")
        if first.strip() == line.strip():
            text = rest
        cut = text.rfind("\n")
        return text[:cut + 1] if cut >= 0 else ""

    async def command(self, command: str, timeout: float) -> str:
        with _OPERATION.boundary(self._secrets):
            return (await self._send(command, timeout)).rstrip("\n")

    async def configure(self, lines: list[str], timeout: float) -> str:
        """Send lines in config mode, stopping at the first the device rejects."""
        platform = self._platform
        transcript: list[str] = []
        with _OPERATION.boundary(self._secrets):
            await self._send(platform.cli_config_enter, timeout)
            try:
                for line in lines:
                    answer = await self._send(line, timeout)
                    transcript.append(f"{line}\n{answer}".rstrip())
                    if platform.rejected(answer):
                        break
            finally:
                if self._reader.closed is None:
                    await self._send(platform.cli_config_exit, timeout)
        return "\n".join(transcript)

    async def close(self) -> None:
        # Closing the SSH connection ends the device's vty session at once; an `exit`
        # first would only cost both sides another round trip.
        conn = self._conn
        conn.close()
        with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
            async with asyncio.timeout(5):
                await conn.wait_closed()
