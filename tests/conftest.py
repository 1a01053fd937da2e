"""Shared test helpers: paths of the repository and its shipped files, a free port, a real
Redis server for the tiers that need one."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.receivers import JsonReceiver, SmtpReceiver
    from tests.workers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / "lab"
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, one per test module."""
    from tests.workers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.kill()


@pytest.fixture
def webhook() -> Iterator[JsonReceiver]:
    """A JSON webhook on loopback (Apprise's json://) that records what it is sent."""
    from tests.receivers import JsonReceiver

    receiver = JsonReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message."""
    from tests.receivers import SmtpReceiver

    receiver = SmtpReceiver()
    yield receiver
    receiver.close()
