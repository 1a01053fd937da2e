"""Fixtures every tier shares (their helpers live in tests/support): no read outside the
repository, a real Redis server, webhook and SMTP receivers, a real PostgreSQL server and
`db_url` (each store test on SQLite and on PostgreSQL, a fresh database each time), and the
simulated fleet of the tier that asks for one."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.reads import OUTSIDE_READS, watch_reads

if TYPE_CHECKING:
    from tests.support.fleet import Fleet, FleetPool, FleetSpec
    from tests.support.pg import PgServer
    from tests.support.receivers import JsonReceiver, SmtpReceiver
    from tests.support.workers import RedisServer

watch_reads()
# Ctrl-C tests send SIGINT to the runner processes they start. A suite started in the
# background by a script (`./dev test &` in a non-interactive shell) has SIGINT ignored,
# and every child would inherit that and never see the Ctrl-C; children of a handled
# SIGINT start with the default action, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _reads_only_the_repository() -> Iterator[None]:
    OUTSIDE_READS.clear()
    yield
    assert not OUTSIDE_READS, f"the test read files outside the repository: {OUTSIDE_READS}"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, one per test module."""
    from tests.support.workers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.kill()


@pytest.fixture
def webhook() -> Iterator[JsonReceiver]:
    """A JSON webhook on loopback (Apprise's json://) that records what it is sent."""
    from tests.support.receivers import JsonReceiver

    receiver = JsonReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message."""
    from tests.support.receivers import SmtpReceiver

    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the session (Debian's `postgresql`, which
    ./dev setup installs), always stopped and removed."""
    from tests.support.pg import PgServer, bindir

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


@pytest.fixture(scope="session")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetPool]:
    """The session's simulators, one per FleetSpec asked for, started on first use."""
    from tests.support.fleet import FleetPool

    pool = FleetPool(tmp_path_factory.mktemp("fleets"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def fleet(fleets: FleetPool, fleet_spec: FleetSpec) -> Fleet:
    """The simulated fleet of this tier: its conftest's `fleet_spec` says what it serves;
    started once per session."""
    return fleets.get(fleet_spec)
