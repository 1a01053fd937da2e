"""`runner serve` in real time against the practice lab: runs with device records, a SIGKILL
and restart (misfire and coalesce applied, no occurrence twice), two servers on one store,
hot reload, and SIGTERM interrupting a long run."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from tests.support.jobs import write_job
from tests.support.lab import RunningLab
from tests.support.serve import Serve


def lab_serve(project: Path, lab: RunningLab, name: str, *args: str) -> Serve:
    """`runner serve` on the practice lab's inventory, with the project's own store."""
    return Serve(project, f"sqlite:///{project / 'runner.db'}", lab.lab_dir / "inventory", name,
                 *args, engine=None, env=os.environ)


TICK = """name: tick
targets: {hosts: [r1, r2]}
driver: scrapli
timeouts: {connect: 10, command: 10, device: 30}
schedule: {interval: 1s, misfire_grace: 30, coalesce: true, overlap: skip}
steps:
  - command: show version
"""


def runs_of(project: Path, job: str) -> list[dict[str, Any]]:
    return ResultsStore(f"sqlite:///{project / 'runner.db'}").list_runs(10_000, job)


def assert_each_occurrence_ran_once(project: Path, job: str) -> list[dict[str, Any]]:
    runs = runs_of(project, job)
    counts = Counter(r["occurrence"] for r in runs)
    assert all(r["occurrence"] and r["occurrence"].startswith(f"{job}@") for r in runs)
    assert [o for o, n in counts.items() if n > 1] == []
    assert {r["status"] for r in runs} <= {"ok", "failed", "interrupted"}  # none left running
    return runs


def test_serve_survives_sigkill_applies_policy_and_runs_nothing_twice(
        practice_lab: RunningLab, tmp_path: Path) -> None:
    write_job(tmp_path / "jobs", "tick", text=TICK)
    first = lab_serve(tmp_path, practice_lab, "first")
    try:
        wait_for(lambda: sum(r["status"] == "ok" for r in runs_of(tmp_path, "tick")) >= 3, 60,
                 "three scheduled runs")
    finally:
        first.stop(sig=signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: time.time() > killed + 3.5, 10, "a few occurrences of downtime")

    second = lab_serve(tmp_path, practice_lab, "second")
    try:
        restarted = time.time()
        wait_for(lambda: len([r for r in runs_of(tmp_path, "tick")
                              if r["started"] > _iso(restarted)]) >= 2, 60,
                 "runs after the restart")
        # hot reload: a new job file, then an invalid edit that must not unschedule tick
        write_job(tmp_path / "jobs", "tock", text=TICK.replace("name: tick", "name: tock")
                  .replace("interval: 1s", "interval: 2s"))
        wait_for(lambda: len(runs_of(tmp_path, "tock")) >= 1, 60, "the added job to run")
        write_job(tmp_path / "jobs", "tick",
                  text=TICK.replace("interval: 1s", "interval: 1 second"))
        wait_for(lambda: "keeping the previous version of tick" in second.text(), 30,
                 "the invalid edit to be reported")
        before = len(runs_of(tmp_path, "tick"))
        wait_for(lambda: len(runs_of(tmp_path, "tick")) >= before + 2, 60,
                 "tick to keep running after the invalid edit")
        os.kill(second.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reloading job files (SIGHUP)" in second.text(), 30, "SIGHUP reload")
    finally:
        assert second.stop() == 0
    log = second.text()
    assert "took over from" in log  # the killed server's lease was taken at once
    runs = assert_each_occurrence_ran_once(tmp_path, "tick")
    assert_each_occurrence_ran_once(tmp_path, "tock")
    store = ScheduleStore(f"sqlite:///{tmp_path / 'runner.db'}")
    occurrences = store.occurrences("tick")
    coalesced = [o for o in occurrences if (o["reason"] or "").startswith("coalesced into")]
    assert coalesced, "the downtime's occurrences were coalesced into one run"
    target = coalesced[-1]["reason"].removeprefix("coalesced into ")
    assert [r for r in runs if r["occurrence"] == f"tick@{target}"]  # ...that did run, once
    results = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    for row in runs:
        if row["status"] == "ok":
            _, run = results.get_run(row["run_id"])
            assert sorted((d.host, d.status) for d in run.devices) == [("r1", "ok"),
                                                                       ("r2", "ok")]


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def test_two_servers_on_one_store_run_each_occurrence_once(practice_lab: RunningLab,
                                                           tmp_path: Path) -> None:
    write_job(tmp_path / "jobs", "tick", text=TICK)
    a = lab_serve(tmp_path, practice_lab, "a")
    wait_for(lambda: "active scheduler" in a.text(), 30, "the first server to lead")
    b = lab_serve(tmp_path, practice_lab, "b")
    try:
        wait_for(lambda: "standing by" in b.text(), 30, "the second server to stand by")
        wait_for(lambda: len(runs_of(tmp_path, "tick")) >= 4, 60, "runs")
        assert a.stop() == 0  # releases the lease: b takes over
        wait_for(lambda: "active scheduler" in b.text(), 30, "the second server to lead")
        count = len(runs_of(tmp_path, "tick"))
        wait_for(lambda: len(runs_of(tmp_path, "tick")) >= count + 3, 60, "runs by b")
    finally:
        a.stop()
        assert b.stop() == 0
    assert_each_occurrence_ran_once(tmp_path, "tick")


def test_sigterm_waits_then_interrupts_and_exits_0(practice_lab: RunningLab,
                                                  tmp_path: Path) -> None:
    write_job(tmp_path / "jobs", "slow", text="""name: slow
targets: {groups: [routers]}
driver: netmiko
concurrency: 1
schedule: {interval: 2s}
steps:
  - command: show running-config
  - command: show ip route
""")
    serve = lab_serve(tmp_path, practice_lab, "slow", "--stop-grace", "0.3")
    wait_for(lambda: "slow: fired occurrence" in serve.text(), 60, "a run to start")
    assert serve.stop() == 0
    log = serve.text()
    assert "still running: interrupting it" in log and "stopped" in log
    runs = runs_of(tmp_path, "slow")
    assert [r["status"] for r in runs] == ["interrupted"]
    _, run = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}").get_run(runs[0]["run_id"])
    devices = {d.host: d for d in run.devices}
    assert sorted(devices) == ["r1", "r2", "r3", "r4"]  # every device has its one record
    assert any(d.error_class == "Interrupted" for d in devices.values())
    assert all(d.status in ("ok", "failed", "skipped") for d in devices.values())
