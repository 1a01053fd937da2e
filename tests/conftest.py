"""Shared test helpers: paths of the repository and its shipped files, a free port, a real
Redis server for the tiers that need one, a real PostgreSQL server and `db_url`: each
store test runs on SQLite and on PostgreSQL, a fresh database each time."""

from __future__ import annotations

import getpass
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.pg import PgServer
    from tests.receivers import JsonReceiver, SmtpReceiver
    from tests.workers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / "lab"
# Who the command line records as having done something (runner.job.approval.who).
ME = f"{getpass.getuser()}@{socket.gethostname()}"

# Tests read only what the repository carries: a file beside the clone (../shared on a
# developer's machine) is missing from a user's clone. Every open of such a file by a test
# process is recorded and fails the test that did it.
_BESIDE = str(ROOT.parent) + os.sep
_INSIDE = (str(ROOT) + os.sep, os.path.realpath(tempfile.gettempdir()) + os.sep,
           str(Path.home()) + os.sep)
OUTSIDE_READS: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if os.sep != _BESIDE and path.startswith(_BESIDE) and not path.startswith(_INSIDE):
        OUTSIDE_READS.append(path)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _reads_only_the_repository() -> Iterator[None]:
    OUTSIDE_READS.clear()
    yield
    assert not OUTSIDE_READS, f"the test read files outside the repository: {OUTSIDE_READS}"


def write_inventory(tmp_path: Path, hosts: str, groups: str = "", defaults: str = "") -> Path:
    """A Nornir SimpleInventory directory (tmp_path/inv) with these three files' texts."""
    inv = tmp_path / "inv"
    inv.mkdir(exist_ok=True)
    for name, text in (("hosts.yaml", hosts), ("groups.yaml", groups),
                       ("defaults.yaml", defaults)):
        (inv / name).write_text(text, encoding="utf-8")
    return inv


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the session (Debian's `postgresql`, which
    ./dev setup installs), always stopped and removed."""
    from tests.pg import PgServer, bindir

    binaries = bindir()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package postgresql: "
                    "./dev setup installs it)")
    server = PgServer(binaries)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a database of its own on the session's
    PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runner.db'}"
    server: PgServer = request.getfixturevalue("postgres")
    return server.new_database()
