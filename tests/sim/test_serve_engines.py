"""`runner serve` as documented and otherwise untested: `--engine celery` (the occurrences
run on a real `runner worker` through a real Redis), a one-off `at` job that fires once, and
`jitter` (each occurrence waits a random share of it before starting)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from tests.support.base import user_env
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.serve import Serve
from tests.support.workers import RedisServer, Workers

JITTER = 1.5


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("sim-serve-engines"),
                     FleetSpec(2, "127.117.0.1")) as fleet:
        yield fleet


def test_serve_with_celery_fires_at_once_and_jitters_each_occurrence(
        sim: Fleet, redis_server: RedisServer, tmp_path: Path) -> None:
    env = {**user_env(), "RUNNER_BROKER_URL": redis_server.url}
    db = f"sqlite:///{tmp_path / 'r.db'}"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    at = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    for name, schedule in (("once", f"{{at: '{at.isoformat()}'}}"),
                           ("tick", f"{{interval: 3s, jitter: {JITTER}, misfire_grace: 60}}")):
        (jobs / f"{name}.yml").write_text(
            f"name: {name}\ndriver: asyncssh\nschedule: {schedule}\n"
            "steps:\n  - command: show clock\n", encoding="utf-8")
    workers = Workers(tmp_path, env)
    serve: Serve | None = None
    try:
        workers.start("w1", sim.inventory)
        serve = Serve(tmp_path, db, sim.inventory, engine="celery", verbose=True, env=env)
        store = ResultsStore(db)

        def runs(job: str) -> list[dict[str, object]]:
            return [r for r in store.list_runs(1000, job) if r["status"] == "ok"]

        wait_for(lambda: len(runs("once")) == 1, 90, "the at job to run")
        wait_for(lambda: len(runs("tick")) >= 4, 90, "four jittered occurrences")
        count = len(runs("tick"))
        wait_for(lambda: len(runs("tick")) >= count + 2, 60, "two more occurrences")
    finally:
        code = serve.stop() if serve is not None else None
        workers.stop_all()
    assert serve is not None
    text = serve.text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    # the at job: one run, at its time, and never again
    once = store.list_runs(1000, "once")
    assert [r["occurrence"] for r in once] == [f"once@{at.isoformat()}"]
    listed = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db, "schedule", "list", "--jobs", str(jobs),
         "--json"], capture_output=True, text=True, check=True, env=env).stdout)
    assert {j["job"]: j["next"] for j in listed}["once"] == []
    # every run went through the worker (celery engine, records by w1), none twice
    for row in [*once, *store.list_runs(1000, "tick")]:
        _, result = store.get_run(str(row["run_id"]))
        assert result.engine == "celery"
        assert {d.worker for d in result.devices} == {"w1"}, row
    ticks = store.list_runs(1000, "tick")
    assert [o for o, n in Counter(r["occurrence"] for r in ticks).items() if n > 1] == []
    # jitter: each occurrence waited its own random delay within [0, jitter] first
    waits = {m[1]: float(m[2]) for m in re.finditer(
        r"tick: occurrence (\S+) waits (\d+\.\d+)s \(jitter 1\.5s\)", text)}
    assert len(waits) >= len(ticks) - 1 and len(set(waits.values())) > 1, waits
    for row in ticks:
        due = str(row["occurrence"]).split("@", 1)[1]
        if due in waits:
            assert 0 <= waits[due] <= JITTER
            started = datetime.fromisoformat(str(row["started"]))
            assert started >= datetime.fromisoformat(due) + timedelta(seconds=waits[due])
