"""Two `runner serve` started together on one fresh store, on SQLite and on a real PostgreSQL
server, against simulated devices: both start (the schema is made once), one leads and the
other stands by, the leader stops and the other takes over, and every occurrence ran once.
And one server through a PostgreSQL restart: it waits for its store, then fires again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.lab.netns import wait_for
from runner.lab.sim.process import SimProcess
from runner.store.results import ResultsStore
from tests.support.base import ROOT, free_port
from tests.support.pg import PASSWORD, PgServer


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """Two devices of their own (127.111.0.201-202)."""
    with SimProcess(tmp_path_factory.mktemp("sim-serve") / "sim", 2,
                    address="127.111.0.201", port=free_port()) as process:
        yield process


TICK = """name: tick
driver: asyncssh
timeouts: {connect: 10, command: 10, device: 30}
schedule: {interval: 1s, misfire_grace: 30, coalesce: true, overlap: skip}
steps:
  - command: show clock
"""


class Serve:
    def __init__(self, project: Path, url: str, inventory: Path, name: str) -> None:
        self.log = project / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "-v", "--db", url, "serve", "--jobs",
             str(project / "jobs"), "-i", str(inventory), "--templates",
             str(ROOT / "templates"), "--engine", "local"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), cwd=project, env=env)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def runs_of(url: str) -> list[dict[str, Any]]:
    return ResultsStore(url).list_runs(10_000, "tick")


def test_two_servers_started_together_run_each_occurrence_once(
        db_url: str, sim: SimProcess, tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "tick.yml").write_text(TICK, encoding="utf-8")
    servers = [Serve(tmp_path, db_url, sim.inventory, name) for name in ("a", "b")]
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


def test_serve_rides_out_a_postgresql_restart(postgres: PgServer, sim: SimProcess,
                                              tmp_path: Path) -> None:
    url = postgres.new_database()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "tick.yml").write_text(TICK, encoding="utf-8")
    server = Serve(tmp_path, url, sim.inventory, "a")
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
