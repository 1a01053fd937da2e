"""`runner serve --syslog HOST:PORT`: syslog over UDP and TCP (RFC 5424 and RFC 3164
messages; TCP framed by octet counting, RFC 6587, or by newlines), parsed into what a
job's rule needs: the text to match, the header's host name, the sender's address.
Bounded: messages past MAX_MESSAGE bytes are cut, TCP connections are limited in number
and idle time."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import InputError

log = logging.getLogger("runner.serve")
MAX_MESSAGE = 16 * 1024  # bytes of one message kept (RFC 5424 asks for 2048 at least)
MAX_CONNECTIONS = 64  # TCP senders at once
IDLE_S = 300.0  # a TCP sender silent this long is disconnected
_5424 = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ?(.*)$", re.S)
_3164 = re.compile(r"^<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) (.*)$", re.S)
_PRI = re.compile(r"^<(\d{1,3})>(.*)$", re.S)
_HOSTLIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


@dataclass(frozen=True)
class Message:
    """One syslog message."""

    text: str  # the message without its priority (header and body): what rules match
    hostname: str | None  # the header's HOSTNAME, when the format has one
    priority: int | None
    source: str  # the sender's address

    @property
    def severity(self) -> int | None:
        return None if self.priority is None else self.priority % 8


def parse(data: bytes, source: str) -> Message:
    """A message as received (either RFC, or a device's own flavour of 3164 such as IOS's
    `<189>123: *Mar  1 00:00:00: %SYS-5-CONFIG_I: ...` without a host name)."""
    raw = data[:MAX_MESSAGE].decode("utf-8", errors="replace").lstrip("\ufeff")
    raw = raw.rstrip("\r\n\0")
    found = _5424.match(raw)
    if found is not None:
        host = found.group(3)
        body = found.group(7)
        return Message(_clean(raw[raw.index(">") + 1:]), None if host == "-" else host,
                       int(found.group(1)), source) if body is not None else \
            Message(_clean(raw), None, None, source)
    found = _3164.match(raw)
    if found is not None:
        host = found.group(3)
        hostname = host if _HOSTLIKE.match(host) and not host.endswith(":") else None
        return Message(_clean(raw[raw.index(">") + 1:]), hostname, int(found.group(1)),
                       source)
    found = _PRI.match(raw)
    if found is not None:
        return Message(_clean(found.group(2)), None, int(found.group(1)), source)
    return Message(_clean(raw), None, None, source)


def _clean(text: str) -> str:
    """Control characters as spaces: a message goes into logs and the web."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text).replace("\ufeff", "")


def frames(buffer: bytearray) -> list[bytes]:
    """Complete TCP frames taken off the front of `buffer`: `LEN SP MSG` (octet counting)
    or a message ended by LF (or NUL). What is left is an incomplete frame."""
    out: list[bytes] = []
    while buffer:
        if buffer[:1].isdigit():
            space = buffer.find(b" ", 0, 8)
            if space > 0 and buffer[:space].isdigit():
                length = int(buffer[:space])
                if len(buffer) < space + 1 + length:
                    break
                out.append(bytes(buffer[space + 1:space + 1 + length]))
                del buffer[:space + 1 + length]
                continue
        end = min((i for i in (buffer.find(b"\n"), buffer.find(b"\0")) if i >= 0),
                  default=-1)
        if end < 0:
            break
        if end:
            out.append(bytes(buffer[:end]))
        del buffer[:end + 1]
    return out


def address(text: str, option: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT) for --syslog and --listen."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"expected HOST:PORT such as 127.0.0.1:5514 (got {text!r})",
                         field=option)
    return host, int(port)


class SyslogListener:
    """UDP and TCP on one address; `handle(message)` for every message (on the listener's
    threads: it must be quick)."""

    def __init__(self, host: str, port: int, handle: Callable[[Message], None]) -> None:
        self.handle = handle
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.udp.bind((host, port))
            self.tcp.bind((host, port))
            self.tcp.listen(16)
        except OSError as exc:
            self.close_sockets()
            raise InputError(f"cannot listen for syslog on {host}:{port}: "
                             f"{exc.strerror or exc}", field="--syslog") from None
        self.udp.settimeout(0.5)
        self.tcp.settimeout(0.5)
        self.stopping = threading.Event()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.threads = [threading.Thread(target=self._udp, name="syslog-udp", daemon=True),
                        threading.Thread(target=self._accept, name="syslog-tcp", daemon=True)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _deliver(self, data: bytes, source: str) -> None:
        if not data.strip():
            return
        try:
            self.handle(parse(data, source))
        except Exception:  # one bad message never stops the listener
            log.exception("syslog message from %s not handled", source)

    def _udp(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._deliver(data, str(peer[0]))

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.slots.acquire(blocking=False):
                log.warning("syslog: %d TCP senders already: refusing %s", MAX_CONNECTIONS,
                            peer[0])
                conn.close()
                continue
            threading.Thread(target=self._stream, args=(conn, str(peer[0])),
                             name="syslog-conn", daemon=True).start()

    def _stream(self, conn: socket.socket, source: str) -> None:
        buffer = bytearray()
        conn.settimeout(1.0)
        idle = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    idle += 1.0
                    if idle >= IDLE_S:
                        return
                    continue
                if not chunk:
                    if buffer:
                        self._deliver(bytes(buffer), source)  # the last, unterminated
                    return
                idle = 0.0
                buffer += chunk
                for frame in frames(buffer):
                    self._deliver(frame, source)
                if len(buffer) > MAX_MESSAGE + 16:  # no frame end in sight: cut it
                    self._deliver(bytes(buffer[:MAX_MESSAGE]), source)
                    buffer.clear()
        except OSError:
            return
        finally:
            conn.close()
            self.slots.release()

    def close_sockets(self) -> None:
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.close_sockets()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=5)
