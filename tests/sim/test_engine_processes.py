"""The local engine over several processes: a lost engine process or a cancelled run still
leaves exactly one record per device, saying what happened to it; a killed `runner` takes
its engine processes with it, and no device is touched after."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.execution.executor import Work
from runner.execution.rollout import run_devices
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.job.spec import JobSpec
from runner.lab.netns import wait_for
from runner.records import DeviceResult
from runner.settings import Settings
from runner.vocab import Engine
from tests.support.base import ROOT
from tests.support.fleet import Fleet, FleetSpec, start_fleet

# Hung devices answer nothing after login: they stay in flight until the run ends them.
HANGING_JOB = {"name": "hang", "driver": "asyncssh",
               "timeouts": {"connect": 30, "command": 300, "device": 600},
               "steps": [{"command": "show version"}]}


def work(spec: JobSpec, inventory: FleetInventory, processes: int) -> Work:
    return Work(spec, inventory, ROOT / "templates", "test-run", Settings(),
                processes=processes)


def test_lost_engine_process_and_cancel_each_leave_one_record(fleet: Fleet) -> None:
    inventory = load_inventory(fleet.inventory)
    healthy, hanging = fleet.healthy(20), fleet.with_fault("hang")
    hosts = healthy + hanging
    records: list[DeviceResult] = []
    cancel = threading.Event()
    final: list[list[DeviceResult]] = []
    thread = threading.Thread(target=lambda: final.append(run_devices(
        work(JobSpec.model_validate(HANGING_JOB), inventory, 2), hosts, Engine.PROCESSES,
        records.append, cancel)))
    thread.start()
    try:
        wait_for(lambda: len(records) >= len(healthy), 120, "the healthy devices' records")
        engines = {p.name: p for p in multiprocessing.active_children()
                   if p.name.startswith("runner-engine-")}
        assert sorted(engines) == ["runner-engine-0", "runner-engine-1"]
        # run from a second thread (as `runner serve` does): engines start from forkserver
        assert {p._start_method for p in engines.values()} == {"forkserver"}  # type: ignore[attr-defined]
        # shares are dealt round-robin: engine 0 holds hosts[0::2]
        lost = {h for h in hosts[0::2] if h in hanging}
        assert lost and set(hanging) - lost, "both engines hold a hung device"
        pid = engines["runner-engine-0"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sum(r.error_class == "WorkerLost" for r in records) == len(lost), 30,
                 "records of the lost engine's devices")
    finally:
        cancel.set()
        thread.join(120)
    assert not thread.is_alive()
    assert sorted(r.host for r in records) == sorted(hosts)  # each device exactly once
    assert [r.host for r in final[0]] == hosts
    by_host = {r.host: r for r in records}
    for host in healthy:
        assert by_host[host].status == "ok"
    for host in hanging:
        record = by_host[host]
        assert record.status == "failed"
        if host in lost:
            assert record.error_class == "WorkerLost", record
            assert "ended (exit code -9)" in (record.error or "")
        else:
            assert record.error_class == "Interrupted", record
            assert "may be partly changed" in (record.error or "")


def test_ctrl_c_stops_a_multi_process_run_with_every_device_recorded(fleet: Fleet,
                                                                    tmp_path: Path) -> None:
    healthy, hanging = fleet.healthy(30), fleet.with_fault("hang")
    job = tmp_path / "hang.yml"
    job.write_text(yaml.safe_dump(HANGING_JOB), encoding="utf-8")
    db = tmp_path / "results.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{db}", "run", str(job), "-i",
         str(fleet.inventory), "--processes", "2", "-l", ",".join(healthy + hanging)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)

    def finished() -> int:
        if not db.exists():
            return 0
        con = sqlite3.connect(db)
        try:
            return int(con.execute("select count(*) from devices").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    try:
        wait_for(lambda: finished() >= len(healthy), 120, "the healthy devices' records")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    history = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{db}", "history", "--json"],
        capture_output=True, text=True, check=True).stdout)
    assert history[0]["status"] == "interrupted"
    assert history[0]["summary"]["ok"] == len(healthy)
    con = sqlite3.connect(db)
    rows = con.execute("select host, status, error_class from devices").fetchall()
    con.close()
    assert sorted(r[0] for r in rows) == sorted(healthy + hanging)
    for host, status, error_class in rows:
        expected = ("failed", "Interrupted") if host in hanging else ("ok", None)
        assert (status, error_class) == expected, host


def test_rollout_over_engine_processes_stops_after_the_failing_batch(fleet: Fleet) -> None:
    refused = fleet.with_fault("refuse")[0]
    healthy = fleet.healthy(29)
    hosts = [*healthy[:5], refused, *healthy[5:]]
    spec = JobSpec.model_validate({
        "name": "rollout", "driver": "asyncssh", "rollout": {"batch_size": 10,
                                                             "max_fail_percentage": 0},
        "steps": [{"command": "show clock"}]})
    records: list[DeviceResult] = []
    final = run_devices(work(spec, load_inventory(fleet.inventory), 2), hosts,
                        Engine.PROCESSES, records.append)
    assert [r.host for r in final] == hosts and len(records) == len(hosts)
    by_host = {r.host: r for r in records}
    assert by_host[refused].status == "auth_failed"
    assert [by_host[h].status for h in hosts[:10] if h != refused] == ["ok"] * 9
    for host in hosts[10:]:  # the batches after the failing one never ran
        assert by_host[host].status == "skipped"
        assert by_host[host].error_class == "RolloutStopped"


# -- a killed run stops touching devices ------------------------------------------------------

KILL_DEVICES = 12


@pytest.fixture(scope="module")
def slow_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Every device answers each line after 0.4 s: a push of 20 lines takes 8 s."""
    with start_fleet(tmp_path_factory.mktemp("sim-kill"),
                     FleetSpec(KILL_DEVICES, "127.122.0.1", faults=(f"slow={KILL_DEVICES}",),
                               slow_delay=0.4)) as fleet:
        yield fleet


def _group(pgid: int) -> list[int]:
    """Live processes (not zombies) of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["run", "serve"])
def test_a_killed_run_leaves_no_engine_process_and_touches_no_device_after(
        slow_fleet: Fleet, tmp_path: Path, how: str) -> None:
    """SIGKILL of the `runner` process (only it, as the OOM killer does) mid-push: its engine
    processes die with it (fork from `runner run`, forkserver from `runner serve`), the
    devices not reached by then are never configured, and the run ends interrupted."""
    hosts = list(slow_fleet.hosts)
    marker = f"k{os.getpid()}{how}"
    lines = [f"ntp server 192.0.2.{i} key {marker}" for i in range(10, 30)]
    spec: dict[str, Any] = {"name": f"kill-{how}", "driver": "asyncssh", "concurrency": 2,
                            "targets": {"hosts": hosts},
                            "timeouts": {"command": 60, "device": 300},
                            "steps": [{"config": {"lines": lines}}]}
    db = f"sqlite:///{tmp_path / 'runner.db'}"
    env = {**os.environ, "RUNNER_LOCK_DIR": str(tmp_path / "locks")}
    if how == "run":
        job = tmp_path / "kill.yml"
        job.write_text(yaml.safe_dump(spec), encoding="utf-8")
        argv = ["run", str(job), "-i", str(slow_fleet.inventory), "--engine", "processes",
                "--processes", "2"]
    else:
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        at = datetime.now(UTC) + timedelta(seconds=3)
        spec["schedule"] = {"at": at.isoformat(timespec="seconds")}
        (jobs / "kill.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        argv = ["serve", "--jobs", str(jobs), "-i", str(slow_fleet.inventory), "--engine",
                "processes"]
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--db", db, *argv], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "runner.log").open("wb"),
                            start_new_session=True)
    try:
        # engine processes deal devices round-robin, one at a time each: the first two
        # devices are being configured; the others wait their turn
        wait_for(lambda: marker in slow_fleet.archive(hosts[0]), 120,
                 "the first device to be mid-push")
        assert len(_group(proc.pid)) >= 3, "the runner and its engine processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not _group(proc.pid), 30, "every engine process to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _group(proc.pid):  # the test fails above; nothing is left behind
            os.kill(pid, signal.SIGKILL)
    before = {h: slow_fleet.archive(h) for h in hosts}
    # the next runner on the database finishes the dead run: interrupted, every device
    history = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db, "history", "--json"], env=env,
        capture_output=True, text=True, check=True).stdout)
    assert history[0]["status"] == "interrupted"
    shown = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db, "show", history[0]["run_id"], "--json"],
        env=env, capture_output=True, text=True, check=True).stdout)
    assert sorted(d["host"] for d in shown["devices"]) == sorted(hosts)
    assert {d["error_class"] for d in shown["devices"]} == {"Interrupted"}
    # the devices' own account: only the two in progress were touched, in one session
    # each, and their pushes stopped with the kill (a push takes 8 s; the kill came at its
    # first lines); no other device was configured, and none is after (the archives are as
    # they were when the engines were found gone)
    sent = {h: [line.split()[1] for line in before[h].splitlines() if marker in line]
            for h in hosts}
    assert len(set(sent[hosts[0]])) == 1 and len(sent[hosts[0]]) < len(lines), sent
    assert len(set(sent[hosts[1]])) <= 1 and len(sent[hosts[1]]) < len(lines), sent
    assert [h for h in hosts[2:] if sent[h]] == []
    assert {h: slow_fleet.archive(h) for h in hosts} == before
