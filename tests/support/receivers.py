"""Real notification receivers on loopback for the notification tests: a JSON webhook server,
an SMTP server (aiosmtpd), a port that accepts and never answers, one that answers a byte at
a time forever."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.base import free_port


class JsonReceiver:
    """An HTTP server recording the JSON body of every POST (Apprise's json:// sends one)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []  # where each body was posted
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.bodies.append(json.loads(data))
                    receiver.paths.append(self.path)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Once `count` bodies arrived (or the timeout passed): the bodies."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    body: str


@dataclass
class _SmtpHandler:
    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(("plain",))
        body = part.get_content() if part is not None else ""
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                               str(message["Subject"]), body))
        return "250 OK"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: every mail it accepts, decoded."""

    def __init__(self) -> None:
        self.handler = _SmtpHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails

    def url(self, to: str = "ops@example.net") -> str:
        # Plain SMTP on loopback: no TLS (mode=insecure), no login.
        return (f"mailto://127.0.0.1:{self.port}?smtp=127.0.0.1&mode=insecure"
                f"&from=runner@example.net&to={to}")

    def close(self) -> None:
        self.controller.stop()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung receiver)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        yield int(srv.getsockname()[1])
    finally:
        srv.close()


@contextmanager
def dripping_server() -> Iterator[int]:
    """A port that answers an HTTP request one byte every 0.2 s, forever: no socket read
    ever times out, so only a bound on the whole delivery ends the wait."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.2):
                    conn.sendall(b"X")
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        srv.close()
