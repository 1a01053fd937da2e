"""The results database lost mid-run, for real: `runner run` against slow simulated devices
while the PostgreSQL server is stopped (pg_ctl stop -m fast). Back within RUNNER_DB_RETRY:
the run goes on and every record reaches the database. Not back in time: exit 1, an error
naming how many records were not stored and the file that keeps them, and nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from runner.lab.netns import wait_for
from tests.support.base import ROOT, user_env
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.pg import PASSWORD, PgServer

DEVICES = 6


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Six devices of their own (127.111.0.101-106), every one slow: each answer waits."""
    with start_fleet(tmp_path_factory.mktemp("sim-dbloss"),
                     FleetSpec(DEVICES, "127.111.0.101", faults=(f"slow={DEVICES}",),
                               slow_delay=0.4)) as fleet:
        yield fleet


def hosts_of(sim: Fleet) -> list[str]:
    return sorted(sim.hosts)


def stored(url: str) -> list[str]:
    """Hosts with a record in the database (read straight from it)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(text("SELECT host FROM devices")))
    except Exception:
        return []
    finally:
        engine.dispose()


def start_run(tmp_path: Path, sim: Fleet, url: str, retry: str) -> subprocess.Popen[str]:
    """One device at a time, a few seconds each: the run outlasts a server restart."""
    job = tmp_path / "audit.yml"
    job.write_text(yaml.safe_dump({
        "name": "audit", "driver": "asyncssh", "concurrency": 1,
        "timeouts": {"command": 30, "device": 120},
        "steps": [{"command": ["show clock"] * 4}]}), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "--db", url, "run", str(job), "-i",
         str(sim.inventory), "--templates", str(ROOT / "templates"), "--engine", "local",
         "--json"], stdout=subprocess.PIPE, stderr=(tmp_path / "stderr").open("w"),
        text=True, cwd=tmp_path, env={**user_env(), "RUNNER_DB_RETRY": retry})


def finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, json.loads(out)


def test_the_run_goes_on_and_stores_every_record_when_the_database_is_back(
        postgres: PgServer, sim: Fleet, tmp_path: Path) -> None:
    url = postgres.new_database()
    proc = start_run(tmp_path, sim, url, "600")
    err = tmp_path / "stderr"
    try:
        wait_for(lambda: len(stored(url)) >= 1, 120, "a first record in the database")
        postgres.stop("fast")
        wait_for(lambda: "unreachable while storing records" in err.read_text(), 120,
                 "a device to finish while the database is down")
    finally:
        if not postgres.running():
            postgres.start()
    code, result = finish(proc)
    log = err.read_text()
    assert code == 0, log
    assert "reachable again" in log and PASSWORD not in log
    assert sorted(d["host"] for d in result["devices"]) == hosts_of(sim)
    assert stored(url) == hosts_of(sim)  # every record, those finished in the outage too
    engine = create_engine(url)
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM runs")).scalars().all()
    engine.dispose()
    assert status == ["ok"]


def test_a_database_gone_past_the_bound_fails_loudly_and_keeps_every_record(
        postgres: PgServer, sim: Fleet, tmp_path: Path) -> None:
    url = postgres.new_database()
    proc = start_run(tmp_path, sim, url, "2")
    err = tmp_path / "stderr"
    try:
        wait_for(lambda: len(stored(url)) >= 1, 120, "a first record in the database")
        postgres.stop("fast")
        code, result = finish(proc)  # the server stays down until the run has ended
    finally:
        if not postgres.running():
            postgres.start()
    log = err.read_text()
    assert code == 1, log
    assert PASSWORD not in log and "Traceback" not in log
    # its outcome still printed, then one loud error naming what was not stored, and where
    assert sorted(d["host"] for d in result["devices"]) == hosts_of(sim)
    line = next(x for x in log.splitlines() if x.startswith("error: "))
    before = stored(url)  # what the database took before it went
    assert 1 <= len(before) < DEVICES
    unsaved = DEVICES - len(before)
    assert f"error: {unsaved} device record(s) of run {result['run_id']} could not be " \
           "written to the database" in line, line
    assert "unreachable while storing records" in line and "RUNNER_DB_RETRY" in line
    kept = Path(line.split("kept in ")[1].split(" ")[0])
    assert kept.is_file() and kept.stat().st_mode & 0o077 == 0
    assert kept == (tmp_path / ".runner" / "unsaved" / f"run-{result['run_id']}.json")
    document = json.loads(kept.read_text(encoding="utf-8"))
    assert sorted(d["host"] for d in document["run"]["devices"]) == hosts_of(sim)
    imported = subprocess.run([sys.executable, "-m", "runner", "--db", url, "db", "import",
                               str(kept)], capture_output=True, text=True, cwd=tmp_path,
                              env=user_env(), timeout=120, check=False)
    assert imported.returncode == 0, imported.stderr
    # that start first finished the run it found left running (placeholders for the
    # records it lacked); the import put the real records and status in their place
    assert "left running by a runner process that is gone" in imported.stderr
    assert stored(url) == hosts_of(sim)
    again = subprocess.run([sys.executable, "-m", "runner", "--db", url, "db", "import",
                            str(kept)], capture_output=True, text=True, cwd=tmp_path,
                           env=user_env(), timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    history = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", url, "history", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=user_env(), timeout=120,
        check=True).stdout)
    assert [(r["run_id"], r["status"]) for r in history] == [(result["run_id"], "ok")]
    shown = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", url, "show", result["run_id"], "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=user_env(), timeout=120,
        check=True).stdout)
    assert {d["status"] for d in shown["devices"]} == {"ok"}
    assert shown["summary"]["ok"] == DEVICES
