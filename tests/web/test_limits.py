"""`runner web` as an input surface, on a real server: bodies past the limit answered 413
before they are read (a declared Content-Length, or a chunked stream counted as it comes),
the server's peak memory read from /proc; every query value of every API route and page
answered 4xx, never 500; session cookies marked Secure when asked."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.base import write_inventory
from tests.support.web import Web

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    workdir = tmp_path_factory.mktemp("web-limits")
    inventory = write_inventory(workdir, "r1: {hostname: 127.0.0.1, port: 9}\n",
                                defaults="platform: cisco_ios\n")
    (workdir / "jobs").mkdir()
    web = Web(workdir, workdir / "jobs", inventory)
    try:
        yield web.start()
    finally:
        web.stop()


def peak_mib(web: Web) -> float:
    """The server process's peak resident memory so far (VmHWM), MiB."""
    assert web.proc is not None
    for line in Path(f"/proc/{web.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def raw_post(web: Web, path: str, headers: str, body_chunks: Iterator[bytes],
             deadline: float = 60) -> bytes:
    """Send a POST by hand and read what the server answers (it may answer, and close,
    while the body is still being sent)."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=deadline)
    answer = b""
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        sock.setblocking(False)
        end = time.monotonic() + deadline
        for chunk in body_chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer or time.monotonic() > end:
                break
            try:
                sock.setblocking(True)
                sock.settimeout(5)
                sock.sendall(chunk)
                sock.setblocking(False)
            except OSError:  # the server closed: read its answer
                break
        sock.setblocking(True)
        sock.settimeout(10)
        while True:  # the answer says `connection: close`: read to the end
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer


def zeros(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"0" * size


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + b"0" * size + b"\r\n"


@pytest.mark.parametrize("path", ["/api/runs", "/login", "/runs/x/cancel", "/api/whoami"])
def test_a_declared_huge_body_is_413_unread_and_without_auth(server: Web, path: str) -> None:
    before = peak_mib(server)
    started = time.monotonic()
    answer = raw_post(server, path, "Content-Type: application/json\r\n"
                      "Content-Length: 300000000\r\n", zeros(300 * MIB))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"larger than the 1,048,576 bytes this server accepts" in answer
    assert time.monotonic() - started < 30  # answered long before 300 MB could be sent
    assert peak_mib(server) < before + 32


@pytest.mark.parametrize("path", ["/api/runs", "/login"])
def test_a_chunked_body_is_cut_off_at_the_limit(server: Web, path: str) -> None:
    before = peak_mib(server)
    answer = raw_post(server, path, "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Transfer-Encoding: chunked\r\n", chunked(200 * MIB))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert peak_mib(server) < before + 32


def test_a_content_length_that_is_no_number_is_400(server: Web) -> None:
    answer = raw_post(server, "/api/runs", "Content-Length: 12abc\r\n", iter([b"x"]))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_a_small_body_still_works(server: Web) -> None:
    token = server.token("operator", "limits-op")
    with server.client(token) as client:
        answer = client.post("/api/runs", json={"job": "nope"})
    assert answer.status_code == 404
    assert "no job named 'nope'" in answer.json()["error"]


# Query values people and scripts send by mistake or on purpose.
VALUES = ["", "-1", "0", "99999999999999999999999999999", "-9999999999999999999999", "1e309",
          "nan", "inf", "9999-12-31", "10000-01-01", "0000-01-01", "0001-01-01T00:00:00-14:00",
          "9999-12-31T23:59:59+14:00", "2026-13-45", "2026-01-01T25:61", "%", "_", "%_%",
          "a" * 5000, "\x00", "'", "\u202e", "../..", "x\r\nSet-Cookie: a=b", "\x1b[2J"]
PAGES = {"/runs": ["job", "status", "page", "since", "until"],
         "/runs/{run}": ["status", "page"], "/runs/{run}/devices/r1": [],
         "/backups/r1": ["repo", "at", "from", "to"], "/login": ["next"], "/jobs": [],
         "/schedules": [], "/labs": [], "/backups": ["repo", "state", "q", "page"],
         "/devices": ["q", "group", "platform", "status", "page"], "/devices/r1": [],
         "/compliance": ["feature", "status", "host", "page"]}


def test_no_query_value_of_any_route_is_a_500(server: Web) -> None:
    token = server.token("viewer", "limits-viewer")
    server.cli("token", "list")  # a run would need a device: ids below are made up
    with server.client(token) as client:
        spec = client.get("/openapi.json").json()
        routes: dict[str, list[str]] = {}
        for path, ops in spec["paths"].items():
            if "get" in ops:
                routes[path] = [p["name"] for p in ops["get"].get("parameters", [])]
        routes.update(PAGES)
        assert len(routes) > 20
        failures = []
        for template, names in routes.items():
            for value in VALUES:
                path = template
                for name in ("run_id", "run", "host", "job", "name"):
                    path = path.replace("{" + name + "}", "a1b2c3")
                path = path.replace("{host:path}", "r1")
                for name in names:
                    if "{" + name in template:
                        continue
                    answer = client.get(path, params={name: value})
                    if answer.status_code >= 500:
                        failures.append((path, name, value[:20], answer.status_code))
                if "{run_id}" in template:  # the value as the path's run id, too
                    answer = client.get(template.replace(
                        "{run_id}", quote(value[:200], safe="") or "x").replace(
                        "{host:path}", "r1"))
                    if answer.status_code >= 500:
                        failures.append((template, "path", value[:20], answer.status_code))
    assert failures == []
    assert "Traceback" not in server.log.read_text()


def test_session_cookies_are_secure_when_asked(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, "r1: {}\n")
    (tmp_path / "jobs").mkdir()
    for extra, secure in (((), False), (("--secure-cookies",), True)):
        web = Web(tmp_path, tmp_path / "jobs", inventory, extra)
        try:
            web.start()
            cookie = httpx.get(f"{web.base}/login").headers["set-cookie"]  # its CSRF token
            assert cookie.startswith("runner_session=")
            assert ("secure" in cookie.lower()) is secure, cookie
        finally:
            web.stop()
