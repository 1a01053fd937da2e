"""Honest schedules on a real `runner serve` process (issue 27): a schedule paused with
`runner schedule pause` is obeyed by the running server (each occurrence recorded as
skipped, naming who paused it and why, no run started) until `runner schedule resume`;
`runner schedule status` tells whether a scheduler holds the lease and its last heartbeat;
a job file edited into something invalid is listed with file:line and what serve does
with it (keeps firing its previous version)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from tests.support.base import user_env
from tests.support.fleet import FleetSpec, start_fleet
from tests.support.serve import Serve

JOB = """name: tick
driver: asyncssh
schedule: {interval: 2s, misfire_grace: 30}
steps:
  - command: show clock
"""


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two devices of their own (127.118.0.1-2)."""
    base = tmp_path_factory.mktemp("sim-pause")
    with start_fleet(base, FleetSpec(2, "127.118.0.1")) as fleet:
        shutil.copytree(fleet.inventory, base / "inventory")
        yield base / "inventory"


def runner(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--db", url, *args], cwd=project,
                          capture_output=True, text=True, timeout=60, env=user_env(),
                          check=False)


def occurrences(url: str) -> list[dict[str, Any]]:
    return ScheduleStore(url).occurrences("tick")


def test_pause_is_obeyed_by_a_running_serve(tmp_path: Path, inventory: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runner.db'}"
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "tick.yml"
    job.write_text(JOB, encoding="utf-8")
    serve = Serve(tmp_path, url, inventory)
    try:
        wait_for(lambda: any(o["status"] == "done" for o in occurrences(url)), 90,
                 "a first occurrence of tick done")
        status = json.loads(runner(tmp_path, url, "schedule", "status", "--json").stdout)
        assert status["running"] is True and status["stale"] is False
        assert status["holder"].endswith(f":{serve.pid}")
        assert status["heartbeat"] is not None

        paused = runner(tmp_path, url, "schedule", "pause", "tick", "--reason",
                        "change freeze")
        assert paused.returncode == 0, paused.stderr
        runs_at_pause = len(ResultsStore(url).list_runs(1000, "tick"))
        listed = runner(tmp_path, url, "schedule", "list")
        assert "paused by" in listed.stdout and listed.stderr == ""  # a scheduler runs

        def paused_skips() -> list[dict[str, Any]]:
            return [o for o in occurrences(url) if "paused by" in (o["reason"] or "")]

        wait_for(lambda: len(paused_skips()) >= 2, 60, "two occurrences skipped while paused")
        skipped = paused_skips()
        assert all(o["status"] == "skipped" and "change freeze" in o["reason"]
                   and o["run_id"] is None for o in skipped)
        first_skip = min(o["occurrence"] for o in skipped)
        # nothing fired after the pause (a run already going when it came may finish)
        assert not [o for o in occurrences(url) if o["occurrence"] > first_skip
                    and o["status"] != "skipped"]
        assert len(ResultsStore(url).list_runs(1000, "tick")) <= runs_at_pause + 1

        resumed = runner(tmp_path, url, "schedule", "resume", "tick")
        assert resumed.returncode == 0, resumed.stderr
        last_skip = max(o["occurrence"] for o in paused_skips())
        wait_for(lambda: any(o["status"] == "done" and o["occurrence"] > last_skip
                             for o in occurrences(url)), 60, "an occurrence run after resume")

        # an edit that makes the file invalid: serve keeps firing the previous version
        job.write_text(JOB.replace("steps:\n", "steps: 3\nx:\n"), encoding="utf-8")
        wait_for(lambda: bool(ScheduleStore(url).invalid_files()), 30,
                 "serve recording the invalid file")
        status = json.loads(runner(tmp_path, url, "schedule", "status", "--json").stdout)
        (bad,) = status["invalid"]
        assert bad["error"].startswith(f"{job}:") or bad["error"].startswith("jobs/tick.yml:")
        assert bad["kept"] == "tick" and "keeps firing the previous version" in bad["serve"]
        listed = runner(tmp_path, url, "schedule", "list")
        assert f"warning: invalid job file: {bad['error']} (runner serve" in listed.stderr
        assert "keeps firing the previous version of tick" in listed.stderr
        job.write_text(JOB, encoding="utf-8")  # fixed
    finally:
        assert serve.stop() == 0, serve.text()
    status = json.loads(runner(tmp_path, url, "schedule", "status", "--json").stdout)
    assert status["running"] is False and status["holder"] is None
    assert "nothing fires until `runner serve` runs" in \
        runner(tmp_path, url, "schedule", "list").stderr
    unknown = runner(tmp_path, url, "schedule", "pause", "nope")
    assert unknown.returncode == 2 and "no scheduled job named 'nope'" in unknown.stderr


PREVIEWED = """name: previewed
driver: asyncssh
schedule: {interval: 2s, misfire_grace: 30, approval: required, supersede: true}
steps:
  - config: {lines: ["logging host 192.0.2.99"]}
"""


def test_a_newer_preview_supersedes_the_older(tmp_path: Path, inventory: Path) -> None:
    """With supersede: true one preview waits for a decision, not one per occurrence: each
    new preview rejects the older ones, saying which run replaced them."""
    url = f"sqlite:///{tmp_path / 'runner.db'}"
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "previewed.yml").write_text(PREVIEWED, encoding="utf-8")
    serve = Serve(tmp_path, url, inventory)
    try:
        def previews() -> list[dict[str, Any]]:
            return ResultsStore(url).list_runs(1000, "previewed")

        wait_for(lambda: sum(r["status"] == "rejected" for r in previews()) >= 2, 90,
                 "two previews superseded")
    finally:
        assert serve.stop() == 0, serve.text()
    runs = previews()
    waiting = [r for r in runs if r["status"] == "awaiting_approval"]
    assert len(waiting) == 1  # only the newest waits
    by_id = {r["run_id"]: r for r in runs}
    for run in runs:
        if run["status"] != "rejected":
            continue
        decision = run["decision"]
        assert decision["by"].startswith("runner serve (")
        newer = decision["reason"].removeprefix("superseded by the newer preview ")
        assert by_id[newer]["started"] > run["started"]
    # without approval: required, supersede is refused with its line
    bad = tmp_path / "jobs" / "bad.yml"
    bad.write_text(PREVIEWED.replace("approval: required, ", "").replace(
        "name: previewed", "name: bad"), encoding="utf-8")
    done = runner(tmp_path, url, "schedule", "status", "--json")
    (found,) = json.loads(done.stdout)["invalid"]
    assert found["error"] == "jobs/bad.yml:3: schedule.supersede: supersede: true replaces older " \
        "previews awaiting approval; it needs approval: required"
