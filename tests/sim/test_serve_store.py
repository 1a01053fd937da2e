"""Two `runner serve` started together on one fresh store, on SQLite and on a real PostgreSQL
server, against simulated devices: both start (the schema is made once), one leads and the
other stands by, the leader stops and the other takes over, and every occurrence ran once.
And one server through a PostgreSQL restart: it waits for its store, then fires again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.pg import PASSWORD, PgServer
from tests.support.serve import Serve


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two devices of their own (127.111.0.201-202)."""
    with start_fleet(tmp_path_factory.mktemp("sim-serve"),
                     FleetSpec(2, "127.111.0.201")) as fleet:
        yield fleet


TICK = """name: tick
driver: asyncssh
timeouts: {connect: 10, command: 10, device: 30}
schedule: {interval: 1s, misfire_grace: 30, coalesce: true, overlap: skip}
steps:
  - command: show clock
"""


def runs_of(url: str) -> list[dict[str, Any]]:
    return ResultsStore(url).list_runs(10_000, "tick")


def test_two_servers_started_together_run_each_occurrence_once(
        db_url: str, sim: Fleet, tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "tick.yml").write_text(TICK, encoding="utf-8")
    servers = [Serve(tmp_path, db_url, sim.inventory, name, verbose=True) for name in ("a", "b")]
    try:
        wait_for(lambda: all("active scheduler" in s.text() or "standing by" in s.text()
                             for s in servers), 60, "both servers to start")
        leader, other = sorted(servers, key=lambda s: "active scheduler" not in s.text())
        assert "active scheduler" in leader.text() and "standing by" in other.text()
        wait_for(lambda: sum(r["status"] == "ok" for r in runs_of(db_url)) >= 3, 60,
                 "runs by the first leader")
        assert leader.stop() == 0  # releases the lease: the other takes over
        wait_for(lambda: "active scheduler" in other.text(), 30, "the other to lead")
        count = len(runs_of(db_url))
        wait_for(lambda: len(runs_of(db_url)) >= count + 3, 60, "runs by the new leader")
    finally:
        codes = [s.stop() for s in servers]
    assert codes == [0, 0], [s.text()[-2000:] for s in servers]
    runs = runs_of(db_url)
    counts = Counter(r["occurrence"] for r in runs)
    assert [o for o, n in counts.items() if n > 1] == []
    assert {r["status"] for r in runs} <= {"ok", "interrupted"}
    assert sum(r["status"] == "ok" for r in runs) >= 6
    for log in (leader.text(), other.text()):
        assert "Traceback" not in log


def test_serve_rides_out_a_postgresql_restart(postgres: PgServer, sim: Fleet,
                                              tmp_path: Path) -> None:
    url = postgres.new_database()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "tick.yml").write_text(TICK, encoding="utf-8")
    server = Serve(tmp_path, url, sim.inventory, "a", verbose=True)
    try:
        wait_for(lambda: sum(r["status"] == "ok" for r in runs_of(url)) >= 2, 60,
                 "runs before the restart")
        postgres.stop("fast")
        try:
            wait_for(lambda: "schedule store postgresql+psycopg://runner:***@127.0.0.1"
                     in server.text() and "unreachable" in server.text(), 60,
                     "the server to find its store gone")
            assert server.proc.poll() is None  # still serving
        finally:
            postgres.start()
        wait_for(lambda: "schedule store reachable again" in server.text(), 60,
                 "the store to be back")
        count = len(runs_of(url))
        wait_for(lambda: sum(r["status"] == "ok" for r in runs_of(url)) >= count + 2, 60,
                 "runs after the restart")
    finally:
        code = server.stop()
    log = server.text()
    assert code == 0, log[-3000:]
    assert PASSWORD not in log and "Traceback" not in log
    runs = runs_of(url)
    assert [o for o, n in Counter(r["occurrence"] for r in runs).items() if n > 1] == []
    assert {r["status"] for r in runs} <= {"ok", "interrupted"}, runs
