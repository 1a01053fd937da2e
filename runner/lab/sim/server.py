"""The simulator's SSH side: one asyncssh listener per device, all in one event loop, with
the injected faults (slow, refused logins, sessions dropped mid-command, hung sessions)."""

from __future__ import annotations

import asyncio
import gc
import hmac
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.drivers.sshlib import asyncssh
from runner.errors import LabError
from runner.lab.sim.cli import Device
from runner.lab.sim.limits import listen_error
from runner.lab.sim.shell import Shell

FAULTS = ("slow", "refuse", "drop", "hang")
_DROP_AFTER = 200  # a dropped session dies this many characters into a long answer


@dataclass
class SimDevice:
    name: str
    address: str
    port: int
    index: int  # the device's number: its serial and addresses follow it
    fault: str | None = None
    sessions: int = 0  # logins served, for tests and `status`
    config: str | None = None  # seeded (--configs): its running config's text
    _device: Device | None = None

    @property
    def device(self) -> Device:
        """Its CLI state, made at its first login: an idle device costs its listener only
        (100,000 configurations take ~1.5 GiB and ~20 s to build)."""
        if self._device is None:
            self._device = (Device.default(self.name, self.index) if self.config is None
                            else Device.from_config(self.name, self.index, self.config))
        return self._device


@dataclass
class FleetConfig:
    username: str
    password: str
    slow_delay: float = 2.0
    enable_secret: str | None = None  # set: logins land in user exec (>), `enable` asks
    devices: list[SimDevice] = field(default_factory=list)
    connections: int = 0  # SSH connections open now (each holds a descriptor)


class _Server(asyncssh.SSHServer):
    def __init__(self, sim: SimDevice, fleet: FleetConfig) -> None:
        self._sim = sim
        self._fleet = fleet
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._fleet.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._fleet.connections -= 1

    def begin_auth(self, username: str) -> bool:
        return True  # every login needs a password

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if self._sim.fault == "refuse":
            return False
        fleet = self._fleet
        return hmac.compare_digest(username, fleet.username) and \
            hmac.compare_digest(password.encode(), fleet.password.encode())

    def session_requested(self) -> asyncssh.SSHServerSession[str]:
        assert self._conn is not None
        self._sim.sessions += 1
        return _Session(self._sim, self._conn, self._fleet)


class _Session(asyncssh.SSHServerSession[str]):
    """An interactive CLI (or one exec command): each line is echoed, answered, prompted."""

    def __init__(self, sim: SimDevice, conn: asyncssh.SSHServerConnection,
                 fleet: FleetConfig) -> None:
        self._sim = sim
        self._conn = conn
        self._shell = Shell(sim.device, fleet.enable_secret)
        self._delay = fleet.slow_delay if sim.fault == "slow" else 0.0
        self._chan: asyncssh.SSHServerChannel[str] | None = None
        self._buffer = ""
        self._lines: deque[tuple[str, int]] = deque()  # (line, characters already echoed)
        self._echoed = 0
        self._busy = False
        self._exec: str | None = None
        self._last_cr = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._exec = command
        return True

    def session_started(self) -> None:
        assert self._chan is not None
        if self._exec is not None:
            self._lines.append((self._exec, 0))
            self._lines.append(("exit", 0))
            self._next()
            return
        self._chan.write(f"\r\n{self._shell.prompt}")

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        for ch in data:
            if ch in "\r\n":
                if ch == "\n" and self._last_cr:
                    self._last_cr = False
                    continue
                self._last_cr = ch == "\r"
                self._lines.append((self._buffer, self._echoed))
                self._buffer, self._echoed = "", 0
            elif ch == "\x1a":  # Ctrl-Z: end
                self._last_cr = False
                self._lines.append(("end", 0))
                self._buffer, self._echoed = "", 0
            elif ch in "\x7f\x08":  # backspace, for people typing
                self._last_cr = False
                if self._buffer:
                    if self._echoed == len(self._buffer) and self._chan is not None:
                        self._chan.write("\b \b")
                        self._echoed -= 1
                    self._buffer = self._buffer[:-1]
            elif ch == "\x03":  # Ctrl-C: drop the line being typed
                self._last_cr = False
                self._buffer, self._echoed = "", 0
                if self._chan is not None and not self._busy and not self._lines:
                    self._chan.write(f"^C\r\n{self._shell.prompt}")
            else:
                self._last_cr = False
                self._buffer += ch
        if not self._busy:
            self._next()

    def eof_received(self) -> bool:
        if self._chan is not None:
            self._chan.exit(0)
        return False

    def _next(self) -> None:
        """Answer queued lines in order; a slow device answers each after its delay."""
        while self._lines and not self._busy:
            line, echoed = self._lines.popleft()
            if self._sim.fault == "hang" and self._exec is None:
                self._busy = True  # echoes nothing more, answers nothing, ever
                return
            if self._delay:
                self._busy = True
                asyncio.get_running_loop().call_later(self._delay, self._answer, line, echoed)
                return
            self._answer(line, echoed, resume=False)
        self._echo_typing()

    def _echo_typing(self) -> None:
        """Echo what is typed on a line not yet sent, as a terminal does (clients such as
        scrapli wait for the echo of their input before they send Return)."""
        chan = self._chan
        if self._exec is None and chan is not None and not chan.is_closing() \
                and len(self._buffer) > self._echoed and not self._shell.awaiting_secret:
            chan.write(self._buffer[self._echoed:])
            self._echoed = len(self._buffer)

    def _answer(self, line: str, echoed: int, resume: bool = True) -> None:
        chan = self._chan
        if chan is None or chan.is_closing():
            return
        secret = self._shell.awaiting_secret
        reply = self._shell.line(line)
        echo = "" if self._exec is not None else ("" if secret else line[echoed:]) + "\r\n"
        out = reply.output.replace("\n", "\r\n")
        if self._sim.fault == "drop" and len(out) > _DROP_AFTER:
            chan.write(echo + out[:len(out) // 2])
            self._conn.abort()  # the TCP session dies mid-answer, no goodbye
            return
        if reply.close:
            if echo:
                chan.write(echo)
            chan.exit(0)
            return
        if self._shell.asking:  # a question (password, file name): its answer comes next
            text = echo + out
        else:
            text = echo + (out + "\r\n" if out else "")
            if self._exec is None:
                text += self._shell.prompt
        chan.write(text)
        if resume:
            self._busy = False
            self._next()


def _socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(fleet: FleetConfig, host_key: asyncssh.SSHKey) -> list[asyncssh.SSHAcceptor]:
    """Start every device's listener; returns them (close each to stop)."""
    options = asyncssh.SSHServerConnectionOptions(
        server_host_keys=[host_key], encoding="utf-8", line_editor=False,
        allow_scp=False, agent_forwarding=False, x11_forwarding=False,
        keepalive_interval=0, login_timeout=60)
    acceptors: list[asyncssh.SSHAcceptor] = []
    try:
        for sim in fleet.devices:
            try:
                sock = _socket(sim.address, sim.port)
            except OSError as exc:
                raise LabError(listen_error(exc, sim.name, f"{sim.address}:{sim.port}",
                                            len(fleet.devices))) from None
            acceptors.append(await asyncssh.listen(
                sock=sock, options=options,
                server_factory=lambda s=sim: _Server(s, fleet)))
    except BaseException:
        for acceptor in acceptors:
            acceptor.close()
        raise
    _settle_collector()
    return acceptors


# The collector's thresholds once the fleet listens, as `runner run` sets its own: young
# collections every 50,000 allocations (not 700), a full one rarely.
SIM_GC_THRESHOLD = (50_000, 20, 100)


def _settle_collector() -> None:
    """The listeners (and everything made to start them) live as long as the simulator:
    kept out of every later collection; sessions then collected young and rarely in full.
    Full collections over a fleet's objects took a quarter of a simulator's CPU (5,000
    devices, each logged into once: 3.7 of its 14 s; the logins' CPU 12.1 -> 9.2 s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SIM_GC_THRESHOLD)
