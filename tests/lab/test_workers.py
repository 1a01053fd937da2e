"""Runs spread over real `runner worker` processes through a real Redis: same records as the
local engine, queue routing by site, a worker SIGKILLed mid-shard, a redelivered shard, the
device lease between two jobs, Redis restarted mid-run, no credential in the broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.execution.control.keys import device_key, lease_key
from runner.inventory.loading import load_inventory
from runner.lab.netns import wait_for
from runner.settings import Settings
from runner.store.results import ResultsStore
from tests.support.base import ROOT
from tests.support.jobs import write_job
from tests.support.lab import RunningLab
from tests.support.workers import RedisServer, Workers, run_celery

VISIBILITY = "8"


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    return {**os.environ, "RUNNER_BROKER_URL": redis_server.url,
            "RUNNER_VISIBILITY_TIMEOUT": VISIBILITY}


@pytest.fixture(scope="module")
def workers(practice_lab: RunningLab, env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    pool = Workers(tmp_path_factory.mktemp("workers"), env)
    try:
        for name in ("w1", "w2"):
            pool.start(name, practice_lab.lab_dir / "inventory")
        yield pool
    finally:
        pool.stop_all()


def ensure_default_workers(workers: Workers, lab: RunningLab) -> None:
    for name in ("w1", "w2"):
        if not workers.alive(name):
            workers.start(name, lab.lab_dir / "inventory")


def comparable(device: dict[str, Any]) -> dict[str, Any]:
    keep = ("version", "interfaces")
    return {"host": device["host"], "status": device["status"], "changed": device["changed"],
            "error": device["error"], "steps": [
                (s["name"], s["kind"], s["failed"], s["parsed"] if s["name"] in keep else None)
                for s in device["steps"]]}


def test_same_records_through_celery_as_local(practice_lab: RunningLab, workers: Workers,
                                              env: dict[str, str], tmp_path: Path) -> None:
    job = ROOT / "jobs" / "facts.yml"
    inventory = practice_lab.lab_dir / "inventory"
    code, remote, err = run_celery(tmp_path, env, job, inventory, "--shard-size", "1")
    assert code == 0, err
    local = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'local.db'}", "run",
         str(job), "-i", str(inventory), "--templates", str(ROOT / "templates"), "--json"],
        capture_output=True, text=True, check=True, env={
            k: v for k, v in env.items() if k != "RUNNER_BROKER_URL"})
    local_run = yaml.safe_load(local.stdout)
    assert remote["engine"] == "celery" and local_run["engine"] == "local"
    assert [comparable(d) for d in remote["devices"]] == \
        [comparable(d) for d in local_run["devices"]]
    assert {d["worker"] for d in remote["devices"]} <= {"w1", "w2"}
    assert len({d["worker"] for d in remote["devices"]}) == 2  # four shards, two workers
    stored = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}").get_run(remote["run_id"])[1]
    assert sorted((d.host, d.status) for d in stored.devices) == [
        (f"r{i}", "ok") for i in range(1, 5)]


def test_queue_routing_by_site_and_credentials_stay_on_workers(
        practice_lab: RunningLab, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path) -> None:
    src = practice_lab.lab_dir / "inventory"
    worker_inv = tmp_path / "worker-inv"
    dispatch_inv = tmp_path / "dispatch-inv"
    fake = f"not-the-password-{uuid.uuid4().hex[:6]}"
    hosts = yaml.safe_load((src / "hosts.yaml").read_text())
    for i, name in enumerate(sorted(hosts)):
        hosts[name]["data"]["site"] = "site-a" if i < 2 else "site-b"
    for inv, password in ((worker_inv, None), (dispatch_inv, fake)):
        inv.mkdir()
        (inv / "groups.yaml").write_text((src / "groups.yaml").read_text())
        defaults = yaml.safe_load((src / "defaults.yaml").read_text())
        if password:  # the dispatcher does not hold the devices' credentials
            defaults["password"] = password
        (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
        (inv / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    workers.start("wa", worker_inv, ("site-a",))
    workers.start("wb", worker_inv, ("site-b",))
    try:
        job = write_job(tmp_path, "routed", targets={"groups": ["routers"]},
                        driver="scrapli", steps=[{"command": "show version"}])
        code, result, err = run_celery(tmp_path, env, job, dispatch_inv, "--shard-size", "1")
        assert code == 0, err
        ran_on = {d["host"]: d["worker"] for d in result["devices"]}
        assert ran_on == {"r1": "wa", "r2": "wa", "r3": "wb", "r4": "wb"}
        client = redis_server.client()
        for key in client.scan_iter("*"):
            dump = client.dump(key) or b""
            assert fake.encode() not in dump and b"admin" not in dump.replace(
                b"admin@", b""), key
    finally:
        workers.kill("wa")
        workers.kill("wb")


def test_worker_killed_mid_shard_no_device_configured_twice(
        practice_lab: RunningLab, workers: Workers, env: dict[str, str],
        redis_server: RedisServer, tmp_path: Path) -> None:
    ensure_default_workers(workers, practice_lab)
    marker = uuid.uuid4().hex[:8]
    before = {n: (workers.log(n).count("Task runner.run_shard")) for n in ("w1", "w2")}
    job = write_job(tmp_path, "push", targets={"groups": ["routers"]}, driver="netmiko",
                    concurrency=1, timeouts={"device": 60},
                    steps=[{"config": {"lines": ["interface lo", f"description kill-{marker}"]}},
                           *[{"command": "show running-config"} for _ in range(6)]])
    proc = run_celery(tmp_path, env, job, practice_lab.lab_dir / "inventory",
                      "--shard-size", "4", background=True)
    client = redis_server.client()

    def runner_of_shard() -> str | None:
        for n in ("w1", "w2"):
            if workers.log(n).count("Task runner.run_shard") > before[n]:
                return n
        return None

    wait_for(lambda: runner_of_shard() is not None, 60, "a worker to take the shard")
    victim = runner_of_shard()
    assert victim is not None
    wait_for(lambda: len(list(client.scan_iter("runner:run:*:done:*"))) >= 1, 60,
             "the first device of the shard to finish")
    workers.kill(victim)  # SIGKILL, mid-shard
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err
    result = yaml.safe_load(out)
    devices = {d["host"]: d for d in result["devices"]}
    assert sorted(devices) == ["r1", "r2", "r3", "r4"]  # exactly one record per device
    run_id = result["run_id"]
    for host, device in devices.items():
        pushes = int(client.get(f"runner:run:{run_id}:pushes:{host}") or 0)
        assert pushes <= 1, f"{host} was configured {pushes} times"
        if device["status"] in ("ok", "changed"):
            assert pushes == 1
        else:
            assert device["error_class"] == "ConfigAlreadyAttempted", device
    survivor = "w2" if victim == "w1" else "w1"
    assert any(d["worker"] == survivor for d in devices.values())  # redelivered and finished
    stored = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}").get_run(run_id)[1]
    assert sorted(d.host for d in stored.devices) == ["r1", "r2", "r3", "r4"]
    ensure_default_workers(workers, practice_lab)


def test_redelivered_shard_does_not_push_config_again(
        practice_lab: RunningLab, workers: Workers, redis_server: RedisServer,
        env: dict[str, str]) -> None:
    ensure_default_workers(workers, practice_lab)
    from runner.dispatch.celery_app import make_app

    app = make_app(Settings(broker_url=redis_server.url))
    marker = uuid.uuid4().hex[:8]
    job = {"name": "redeliver", "driver": "scrapli", "steps": [
        {"config": {"lines": ["interface lo", f"description redo-{marker}"]}}]}
    run_id = f"test{uuid.uuid4().hex[:8]}"
    payload = {"job": job, "run_id": run_id, "dry_run": False, "hosts": ["r1", "r2"]}
    client = redis_server.client()

    def ledger(run: str, hosts: list[str]) -> dict[str, dict[str, Any]]:
        """The records a shard left in the run ledger (the dispatcher streams them from
        there; a shard's result carries only those the ledger lacks)."""
        found = client.mget([f"runner:run:{run}:done:{h}" for h in hosts])
        return {h: json.loads(raw) for h, raw in zip(hosts, found, strict=True) if raw}

    first = app.send_task("runner.run_shard", args=[payload], queue="runner").get(120)
    assert first["devices"] == []  # every record is in the ledger: none travels twice
    records = ledger(run_id, ["r1", "r2"])
    assert {h: d["status"] for h, d in records.items()} == {"r1": "changed", "r2": "changed"}
    again = app.send_task("runner.run_shard", args=[payload], queue="runner").get(120)
    # nothing re-run: the ledger keeps the first records, each device pushed once
    assert again["devices"] == [] and ledger(run_id, ["r1", "r2"]) == records
    assert [client.get(f"runner:run:{run_id}:pushes:{h}") for h in ("r1", "r2")] == \
        ["1", "1"]
    # a lost attempt that had begun configuring r3: the next one must not touch it
    lost = f"test{uuid.uuid4().hex[:8]}"
    client.set(f"runner:run:{lost}:config:r3", "w9:lost-task:abc")
    res = app.send_task("runner.run_shard", args=[
        {**payload, "run_id": lost, "hosts": ["r3", "r4"]}], queue="runner").get(120)
    got = {**ledger(lost, ["r3", "r4"]), **{d["host"]: d for d in res["devices"]}}
    statuses = {h: (d["status"], d["error_class"]) for h, d in got.items()}
    assert statuses == {"r3": ("failed", "ConfigAlreadyAttempted"),
                        "r4": ("changed", None)}
    assert client.get(f"runner:run:{lost}:pushes:r3") is None


def test_two_jobs_on_one_device_the_lease_holds(
        practice_lab: RunningLab, workers: Workers, env: dict[str, str],
        redis_server: RedisServer, tmp_path: Path) -> None:
    ensure_default_workers(workers, practice_lab)
    inventory = practice_lab.lab_dir / "inventory"
    long_job = write_job(tmp_path, "long", targets={"hosts": ["r1"]}, driver="netmiko",
                         steps=[{"command": "show running-config"} for _ in range(40)])
    busy0 = write_job(tmp_path, "impatient", targets={"hosts": ["r1"]}, busy_wait=0,
                      driver="scrapli", steps=[{"command": "show version"}])
    patient = write_job(tmp_path, "patient", targets={"hosts": ["r1"]}, busy_wait=120,
                        driver="scrapli", steps=[{"command": "show version"}])
    client = redis_server.client()
    # the lease is the device's, by its address (whatever an inventory calls it)
    lab = load_inventory(inventory)
    key = lease_key(device_key(*lab.address("r1", lab.driver_for("r1", "netmiko"))))
    first = run_celery(tmp_path, env, long_job, inventory, background=True)
    wait_for(lambda: client.exists(key) == 1, 60, "the long job's lease")
    code, impatient, _ = run_celery(tmp_path, env, busy0, inventory)
    waiter = run_celery(tmp_path, env, patient, inventory, background=True)
    out, err1 = first.communicate(timeout=300)
    out2, err2 = waiter.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert code == 1
    device = impatient["devices"][0]
    assert (device["status"], device["error_class"]) == ("skipped", "DeviceBusy")
    assert "device busy: its lease is held by" in device["error"]
    long_rec = yaml.safe_load(out)["devices"][0]
    patient_rec = yaml.safe_load(out2)["devices"][0]
    assert waiter.returncode == 0, err2
    assert patient_rec["status"] == "ok"
    assert patient_rec["started"] >= long_rec["finished"]  # it waited for the lease


def test_redis_restarted_mid_run_ends_clearly_and_records_once(
        practice_lab: RunningLab, workers: Workers, env: dict[str, str],
        redis_server: RedisServer, tmp_path: Path) -> None:
    ensure_default_workers(workers, practice_lab)
    job = write_job(tmp_path, "slow", targets={"groups": ["routers"]}, driver="netmiko",
                    concurrency=1, steps=[{"command": "show running-config"}
                                          for _ in range(25)])
    proc = run_celery(tmp_path, env, job, practice_lab.lab_dir / "inventory",
                      "--shard-size", "2", background=True)
    client = redis_server.client()
    wait_for(lambda: len(list(client.scan_iter("runner:lease:*"))) >= 1, 60,
             "devices to be in progress")
    redis_server.kill()
    redis_server.start()  # empty: queued shards, results and markers are gone
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    result = yaml.safe_load(out)
    devices = result["devices"]
    assert sorted(d["host"] for d in devices) == ["r1", "r2", "r3", "r4"]
    lost = [d for d in devices if d["error_class"] == "BrokerLost"]
    assert lost and all("Redis restarted" in d["error"] for d in lost)
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    row, stored = store.get_run(result["run_id"])
    assert row["status"] == "failed"
    assert sorted(d.host for d in stored.devices) == ["r1", "r2", "r3", "r4"]
    # the workers reconnect and serve the next run
    ok = write_job(tmp_path, "after", targets={"hosts": ["r2"]}, driver="scrapli",
                   steps=[{"command": "show version"}])
    code, after, err = run_celery(tmp_path, env, ok, practice_lab.lab_dir / "inventory")
    assert code == 0, err
    assert after["devices"][0]["status"] == "ok"
