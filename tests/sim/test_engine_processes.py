"""The local engine over several processes: a lost engine process or a cancelled run still
leaves exactly one record per device, saying what happened to it."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from runner.execution import Work, run_devices
from runner.inventory.fleet import FleetInventory, load_inventory
from runner.job.spec import JobSpec
from runner.lab.netns import wait_for
from runner.records import DeviceResult
from runner.settings import Settings
from runner.vocab import Engine
from tests.conftest import ROOT
from tests.sim.conftest import Fleet

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
