"""One execution core, tested with real parts: a real redis-server, real `runner worker`
process groups and a simulated fleet. A rollout batch means the same on every engine; a
worker machine killed mid-run ends in bounded time with one record per device and no
device configured twice (each device's own config archive says so); cancel reaches the
workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from runner.execution.control.keys import device_key, lease_key
from runner.inventory.loading import load_inventory
from runner.lab.netns import wait_for
from runner.store.results import ResultsStore
from runner.store.runlinks import working
from tests.support.base import ROOT
from tests.support.fleet import Fleet, FleetSpec, on_device, start_fleet
from tests.support.jobs import run_argv, run_job, sqlite_url, write_job
from tests.support.workers import RedisServer, Workers

LOST_AFTER = "4"  # seconds a worker may be silent: short, so the tests end soon
SLOW_DELAY = 0.25  # a slow device waits this long before each answer: runs last seconds
DEVICES = 24


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # 12 slow devices keep a run going while a worker is killed; one refuses logins.
    # 127.111.0.1-24: the store tests' block (tests/sim/test_db_loss.py and
    # test_serve_store.py use .101 and .201 on), as two of these tests run on PostgreSQL.
    with start_fleet(tmp_path_factory.mktemp("sim-celery"),
                     FleetSpec(DEVICES, "127.111.0.1", faults=("slow=12", "refuse=1"),
                               slow_delay=SLOW_DELAY)) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    # Redis alone would hand a lost shard to another worker after an hour: only the
    # heartbeat can end these runs in time.
    return {**os.environ, "RUNNER_BROKER_URL": redis_server.url,
            "RUNNER_VISIBILITY_TIMEOUT": "3600", "RUNNER_WORKER_LOST_AFTER": LOST_AFTER}


@pytest.fixture(scope="module")
def workers(sim: Fleet, env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    pool = Workers(tmp_path_factory.mktemp("sim-workers"), env)
    try:
        yield pool
    finally:
        pool.stop_all()


def ensure(workers: Workers, sim: Fleet, *names: str) -> None:
    for name in names:
        if not workers.alive(name):
            workers.start(name, sim.inventory)


def sessions_with(sim: Fleet, host: str, line: str) -> int:
    """How many config sessions sent `line` to the device."""
    return len({m.group(1) for m in re.finditer(
        rf"^\s*\d+\s+(\d+)\s+\S+\s+\|{re.escape(line)}$", sim.archive(host), re.M)})


def lease_keys(sim: Fleet, hosts: list[str]) -> list[str]:
    """The devices' Redis leases: by address and port, as every run names them."""
    inventory = load_inventory(sim.inventory)
    return [lease_key(device_key(*inventory.address(h, "asyncssh"))) for h in hosts]


def outcome(devices: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(d["host"], d["status"], d["error_class"]) for d in devices]


def reordered(tmp_path: Path, sim: Fleet, order: list[str]) -> Path:
    """The simulator's inventory with only these hosts, in this order (rollout order)."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    for name in ("groups.yaml", "defaults.yaml"):
        (inventory / name).write_text((sim.inventory / name).read_text(encoding="utf-8"),
                                      encoding="utf-8")
    (inventory / "hosts.yaml").write_text(yaml.safe_dump({h: sim.entries[h] for h in order},
                                                         sort_keys=False), encoding="utf-8")
    return inventory


def test_a_failing_batch_stops_the_rollout_alike_on_every_engine(
        sim: Fleet, workers: Workers, env: dict[str, str], tmp_path: Path) -> None:
    ensure(workers, sim, "w1", "w2")
    refused = sim.refusing[0]
    healthy = sim.healthy()[:9]
    # batches of 2: [0 1] [2 refused] [4 5] [6 7] [8 9]: the second fails, three never run
    order = [*healthy[:3], refused, *healthy[3:]]
    inventory = reordered(tmp_path, sim, order)
    results = {}
    for engine, args in (("local", ["--engine", "local"]),
                         ("processes", ["--engine", "processes", "--processes", "2"]),
                         ("celery", ["--engine", "celery", "--shard-size", "1"])):
        line = f"logging host 192.0.2.9 vrf r{uuid.uuid4().hex[:6]}"
        job = write_job(tmp_path, engine, driver="asyncssh",
                        rollout={"batch_size": 2, "max_fail_percentage": 0},
                        steps=[{"config": {"lines": [line]}}])
        result = run_job(tmp_path, job, inventory, *args, env=env, expect=1)
        assert result["engine"] == engine
        results[engine] = outcome(result["devices"])
        if engine == "celery":  # the shards of each batch ran on both workers
            assert {d["worker"] for d in result["devices"] if d["worker"]} == {"w1", "w2"}
        # the devices' own account: the batches after the failing one were never touched
        # (the refused device lets nobody in, this test neither)
        configured = [sessions_with(sim, h, line) for h in order if h != refused]
        assert configured == [1, 1, 1, 0, 0, 0, 0, 0, 0], engine
    assert results["local"] == results["processes"] == results["celery"]
    assert [(s, e) for _, s, e in results["local"]] == [
        *[("changed", None)] * 3, ("auth_failed", "AuthFailed"),
        *[("skipped", "RolloutStopped")] * 6]


def start(db: str, env: dict[str, str], client: Any, job: Path, inventory: Path,
          *args: str) -> tuple[subprocess.Popen[str], str]:
    """`runner run` in the background, and its run id once it dispatched (from Redis)."""
    before = set(client.scan_iter("runner:run:*:dispatcher"))
    proc = subprocess.Popen(run_argv(db, job, inventory, *args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    new: list[str] = []
    wait_for(lambda: bool(new.extend(set(client.scan_iter("runner:run:*:dispatcher")) - before)
                          or new), 60, "the run to dispatch")
    return proc, new[0].split(":")[2]


def finished_by(client: Any, run_id: str) -> list[str]:
    """Workers of the run's devices finished so far (the run ledger)."""
    return [json.loads(client.get(k) or "{}").get("worker")
            for k in client.scan_iter(f"runner:run:{run_id}:done:*")]


def slow_push(tmp_path: Path, sim: Fleet, marker: str) -> tuple[Path, list[str]]:
    slow = sim.slow
    job = write_job(tmp_path, "push", targets={"hosts": slow}, driver="asyncssh",
                    concurrency=1, timeouts={"command": 30, "device": 120},
                    steps=[{"config": {"lines": [f"ntp server 192.0.2.1 key {marker}"]}},
                           {"command": ["show clock"] * 4}])
    return job, slow


def test_a_worker_machine_killed_mid_run_gives_its_devices_to_a_live_worker_once(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path, db_url: str) -> None:
    """On SQLite and on PostgreSQL (db_url): the dispatcher stores every record."""
    ensure(workers, sim, "w1", "w2")
    marker = uuid.uuid4().hex[:8]
    job, slow = slow_push(tmp_path, sim, marker)
    client = redis_server.client()
    proc, run_id = start(db_url, env, client, job, sim.inventory, "--engine", "celery",
                         "--shard-size", "3")
    try:
        # w1 has finished a device of a shard and is in the middle of the next ones
        wait_for(lambda: "w1" in finished_by(client, run_id), 120, "w1 to finish a device")
        workers.kill("w1")  # the whole process group: supervisor, Celery, pool
        # bounded: the heartbeat, not Redis' visibility timeout (an hour here), ends it
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1), err
    assert "worker w1 went silent" in err and "sent to queue runner again" in err
    result = json.loads(out)
    devices = {d["host"]: d for d in result["devices"]}
    assert sorted(devices) == sorted(slow)  # exactly one record per device
    assert {d["worker"] for d in devices.values()} == {"w1", "w2"}
    for host, device in devices.items():
        line = f"ntp server 192.0.2.1 key {marker}"
        pushed = sessions_with(sim, host, line)  # the device's own account
        assert pushed <= 1, f"{host} was configured {pushed} times"
        if device["status"] == "changed":
            assert pushed == 1
        else:  # begun by w1 when it died: not configured a second time
            assert (device["status"], device["error_class"]) == (
                "failed", "ConfigAlreadyAttempted"), device
    # w1's unstarted devices went to w2 and were configured there, once
    resent = sum(int(n) for n in re.findall(r"; (\d+) device\(s\) of its shard sent", err))
    begun = sum(d["error_class"] == "ConfigAlreadyAttempted" for d in devices.values())
    assert resent > begun
    stored = subprocess.run([sys.executable, "-m", "runner", "--db", db_url, "show",
                             result["run_id"], "--json"], capture_output=True, text=True,
                            check=True)
    assert sorted(d["host"] for d in json.loads(stored.stdout)["devices"]) == sorted(slow)


def test_with_no_live_worker_left_the_run_ends_with_worker_lost_records(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path) -> None:
    ensure(workers, sim, "w1", "w2")
    job, slow = slow_push(tmp_path, sim, uuid.uuid4().hex[:8])
    client = redis_server.client()
    proc, run_id = start(sqlite_url(tmp_path), env, client, job, sim.inventory, "--engine",
                         "celery", "--shard-size", "3")
    try:
        wait_for(lambda: client.scard(f"runner:run:{run_id}:started") >= 2, 60,
                 "devices to be in progress")
        workers.kill("w1")
        workers.kill("w2")
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert sorted(d["host"] for d in result["devices"]) == sorted(slow)
    lost = [d for d in result["devices"] if d["error_class"] == "WorkerLost"]
    assert lost and all(d["status"] == "failed" for d in lost)
    assert all(d["status"] in ("changed", "failed") for d in result["devices"])
    assert any("may be partly changed" in d["error"] for d in lost)  # it was in progress
    assert any("not contacted" in d["error"] for d in lost)  # its shard never started
    assert all("no live worker consumes queue 'runner'" in d["error"] for d in lost)


def test_ctrl_c_on_a_celery_run_reaches_the_workers(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path, db_url: str) -> None:
    """On SQLite and on PostgreSQL (db_url): the interrupted run and its records stored."""
    ensure(workers, sim, "w1", "w2")
    marker = uuid.uuid4().hex[:8]
    job, slow = slow_push(tmp_path, sim, marker)
    client = redis_server.client()
    proc, run_id = start(db_url, env, client, job, sim.inventory, "--engine", "celery",
                         "--shard-size", "2")
    try:
        wait_for(lambda: len(finished_by(client, run_id)) >= 1, 60, "a device to finish")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    show = subprocess.run([sys.executable, "-m", "runner", "--db", db_url, "history",
                           "--json"], capture_output=True, text=True, check=True)
    row = json.loads(show.stdout)[0]
    assert row["status"] == "interrupted"
    stored = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", db_url, "show", row["run_id"], "--json"],
        capture_output=True, text=True, check=True).stdout)
    devices = {d["host"]: d for d in stored["devices"]}
    assert sorted(devices) == sorted(slow)
    statuses = {(d["status"], d["error_class"]) for d in devices.values()}
    assert statuses <= {("changed", None), ("failed", "Interrupted"),
                        ("skipped", "Interrupted")}
    assert ("skipped", "Interrupted") in statuses and ("changed", None) in statuses
    # the workers stopped: nothing that was not started is configured afterwards
    wait_for(lambda: not client.exists(*lease_keys(sim, slow)), 30,
             "the workers to let go of every device")
    for host, device in devices.items():
        if device["status"] == "skipped":
            assert sessions_with(sim, host, f"ntp server 192.0.2.1 key {marker}") == 0


def test_a_stopped_rollout_rolls_back_through_the_workers(
        sim: Fleet, workers: Workers, env: dict[str, str], tmp_path: Path) -> None:
    ensure(workers, sim, "w1", "w2")
    hosts = sim.healthy()[:4]
    before = {h: sim.archive(h).count("\n") for h in hosts}
    line = f"ntp server 192.0.2.44 key {uuid.uuid4().hex[:6]}"
    job = write_job(tmp_path, "stopped", driver="asyncssh", rollback=True,
                    targets={"hosts": hosts},
                    rollout={"batch_size": 2, "max_fail_percentage": 0, "on_stop": "rollback"},
                    steps=[{"config": {"lines": [line]}},
                           {"name": "post", "command": "show clock",
                            "expect": [f"host.name != '{hosts[2]}'"]}])
    result = run_job(tmp_path, job, sim.inventory, "--engine", "celery",
                            "--shard-size", "1", env=env, expect=1)
    assert outcome(result["devices"]) == [
        (hosts[0], "rolled_back", "RolloutStopped"), (hosts[1], "rolled_back", "RolloutStopped"),
        (hosts[2], "rolled_back", "CheckFailed"), (hosts[3], "rolled_back", "RolloutStopped")]
    # each device: the change and its rollback, by a worker; in its config: nothing left
    for host in hosts:
        log = sim.archive(host)
        assert log.count("\n") == before[host] + 2 and f"|no {line}" in log
        assert line not in on_device(sim.inventory, host, "show running-config")



class RedisMonitor:
    """Every command Redis executes while it runs (MONITOR on a connection of its own)."""

    def __init__(self, port: int) -> None:
        import socket
        import threading

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def stop(self) -> bytes:
        import socket

        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)
        return b"".join(self.chunks)


def redis_dump(client: Any) -> bytes:
    """Every key and value in Redis: strings, lists (queues), hashes, sets, sorted sets."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        values: list[Any] = []
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [x for kv in client.hgetall(key).items() for x in kv]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        for item in [key, *values]:
            out.append(item if isinstance(item, bytes) else str(item).encode())
    return b"\n".join(out)


def decoded(raw: bytes) -> str:
    """The text and every base64 run in it decoded (kombu sends message bodies in base64),
    with MONITOR's escaping undone."""
    import base64
    import codecs

    text = codecs.escape_decode(raw)[0].decode(errors="replace")  # type: ignore[attr-defined]
    parts = [text]
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            parts.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode(errors="replace"))
        except ValueError:
            continue
    return "\n".join(parts)


def test_secrets_are_read_by_the_workers_and_never_cross_the_broker(
        sim: Fleet, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The inventory's password is {env: ...} and the job has a secret var: the workers
    read both from their own environment (the dispatcher has neither), and no value is in
    anything Redis was sent or holds: MONITOR during the run, and every key after it."""
    password = str(yaml.safe_load((sim.inventory / "defaults.yaml").read_text())["password"])
    community = "C0mmunity-" + uuid.uuid4().hex[:8]
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text((sim.inventory / "hosts.yaml").read_text())
    # a queue of its own: only the workers started here, with the secrets, take its shards
    (inventory / "groups.yaml").write_text(yaml.safe_dump({"sim": {"data": {"site": "sec"}}}))
    defaults = yaml.safe_load((sim.inventory / "defaults.yaml").read_text())
    defaults["password"] = {"env": "RUNNER_CELERY_TEST_PASSWORD"}
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    assert password not in "".join(p.read_text() for p in inventory.iterdir())
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "community.j2").write_text("logging host 192.0.2.45 vrf {{ community }}\n")
    job = write_job(tmp_path, "secret", driver="asyncssh", secret_vars={
        "community": {"env": "RUNNER_CELERY_TEST_COMMUNITY"}}, steps=[
        {"config": {"template": "community.j2"}},
        {"command": "show running-config", "expect": [
            "('logging host 192.0.2.45 vrf ' ~ vars.community) in output"]}])
    healthy = sim.healthy()[:4]
    assert "RUNNER_CELERY_TEST_PASSWORD" not in env
    worker_env = {**env, "RUNNER_CELERY_TEST_PASSWORD": password,
                  "RUNNER_CELERY_TEST_COMMUNITY": community}
    pool = Workers(tmp_path_factory.mktemp("secret-workers"), worker_env)
    try:
        for name in ("s1", "s2"):
            pool.start(name, inventory, queues=("sec",), templates=templates)
        monitor = RedisMonitor(redis_server.port)
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "-vv", "--db",
             f"sqlite:///{tmp_path / 'runner.db'}", "run", str(job), "-i", str(inventory),
             "--templates", str(templates), "--engine", "celery", "--shard-size", "2",
             "--json", "--limit", ",".join(healthy)],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        traffic = decoded(monitor.stop())
        stored = decoded(redis_dump(redis.Redis.from_url(redis_server.url)))
        logs = pool.log("s1") + pool.log("s2")
    finally:
        pool.stop_all()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert {d["status"] for d in result["devices"]} == {"changed"}
    assert {d["worker"] for d in result["devices"]} <= {"s1", "s2"}
    # MONITOR saw the shards go out: the job, with the secret var's reference only
    assert "RUNNER_CELERY_TEST_COMMUNITY" in traffic and "run_shard" in traffic
    for value in (password, community):
        for text in (traffic, stored, proc.stdout, proc.stderr, logs,
                     (tmp_path / "runner.db").read_bytes().decode(errors="replace")):
            assert value not in text, (value, text[:3000])


def test_a_change_that_needs_approval_reaches_the_workers_only_approved(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path) -> None:
    ensure(workers, sim, "w1", "w2")
    hosts = sim.healthy()[-3:]
    line = f"snmp-server location celery-{uuid.uuid4().hex[:8]}"
    job = write_job(tmp_path, "nightly", driver="asyncssh", targets={"hosts": hosts},
                    schedule={"cron": "30 2 * * *", "approval": "required"},
                    steps=[{"config": {"lines": [line]}}])
    # a real run asked for through the workers: they preview it, nothing is sent
    preview = run_job(tmp_path, job, sim.inventory, "--engine", "celery",
                             "--shard-size", "2", env=env, expect=0)
    assert (preview["status"], preview["engine"]) == ("awaiting_approval", "celery")
    assert {d["worker"] for d in preview["devices"]} <= {"w1", "w2"}
    assert [sessions_with(sim, h, line) for h in hosts] == [0, 0, 0]
    # a shard sent to the workers some other way, without the approval: refused there
    from runner.dispatch.celery_app import make_app
    from runner.job.load import load_job
    from runner.settings import Settings

    app = make_app(Settings(broker_url=redis_server.url))
    forged = {"job": load_job(job).spec.model_dump(mode="json"), "dry_run": False,
              "run_id": f"forged{uuid.uuid4().hex[:6]}", "hosts": hosts[:1]}
    answer = app.send_task("runner.run_shard", args=[forged], queue="runner").get(120)
    assert [(d["status"], d["error_class"]) for d in answer["devices"]] == [
        ("skipped", "NotApproved")]
    assert sessions_with(sim, hosts[0], line) == 0
    # approved: the workers carry out exactly the previewed change
    approved = subprocess.run(
        [sys.executable, "-m", "runner", "--db", sqlite_url(tmp_path), "approve",
         preview["run_id"], "--engine", "celery", "--json"], capture_output=True, text=True,
        env=env, timeout=300, check=False)
    assert approved.returncode == 0, approved.stderr[-3000:]
    carried = json.loads(approved.stdout)
    assert carried["approves"] == preview["run_id"] and carried["engine"] == "celery"
    assert {d["status"] for d in carried["devices"]} == {"changed"}
    assert {d["worker"] for d in carried["devices"]} <= {"w1", "w2"}
    assert [sessions_with(sim, h, line) for h in hosts] == [1, 1, 1]


def test_a_killed_dispatcher_stops_its_shards_on_the_workers(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path) -> None:
    """SIGKILL of `runner run --engine celery` (the OOM killer's way): its heartbeat in
    Redis lapses after RUNNER_WORKER_LOST_AFTER, the workers stop the run's shards, and the
    devices their shards had not reached are never configured."""
    ensure(workers, sim, "w1", "w2")
    slow = sim.slow
    marker = uuid.uuid4().hex[:8]
    line = f"ntp server 192.0.2.1 key {marker}"
    # a device takes ~12 s (40 answers at 0.25 s); shards of 4, one device at a time
    job = write_job(tmp_path, "long", targets={"hosts": slow}, driver="asyncssh",
                    concurrency=1, timeouts={"command": 30, "device": 300},
                    steps=[{"config": {"lines": [line]}}, {"command": ["show clock"] * 40}])
    client = redis_server.client()
    done_before = sum(workers.log(n).count("succeeded in") for n in ("w1", "w2"))
    before = set(client.scan_iter("runner:run:*:dispatcher"))
    proc = subprocess.Popen(run_argv(sqlite_url(tmp_path), job, sim.inventory, "--engine",
                                   "celery", "--shard-size", "4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        new: list[str] = []
        wait_for(lambda: bool(new.extend(set(client.scan_iter("runner:run:*:dispatcher"))
                                         - before) or new), 60, "the run to dispatch")
        run_id = new[0].split(":")[2]
        wait_for(lambda: client.scard(f"runner:run:{run_id}:started") >= 1, 60,
                 "a device to be in progress")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # the three shards end on the workers (stopped, not finished: 4 devices take 48 s)
        wait_for(lambda: sum(workers.log(n).count("succeeded in") for n in ("w1", "w2"))
                 >= done_before + 3, 60, "the workers to stop the run's shards")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "its dispatcher is gone" in workers.log("w1") + workers.log("w2")
    configured = [h for h in slow if sessions_with(sim, h, line)]
    # at most the device each shard was on: none of the others, now or later
    assert 1 <= len(configured) <= 3, configured
    assert client.scard(f"runner:run:{run_id}:started") == len(configured)
    wait_for(lambda: not client.exists(*lease_keys(sim, slow)), 30, "every lease let go")
    assert [h for h in slow if sessions_with(sim, h, line)] == configured
    # the next runner on the database finishes the dead run: interrupted, every device
    history = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", sqlite_url(tmp_path), "history", "--json"],
        capture_output=True, text=True, check=True, env=env).stdout)
    assert (history[0]["run_id"], history[0]["status"]) == (run_id, "interrupted")


def test_compliance_and_its_remediation_run_on_the_workers(
        sim: Fleet, workers: Workers, env: dict[str, str], tmp_path: Path) -> None:
    ensure(workers, sim, "w1", "w2")
    hosts = sim.healthy()[-5:-3]
    job = write_job(tmp_path, "golden", targets={"hosts": hosts}, driver="asyncssh",
                    steps=[{"compliance": {"intended": "golden_sim.j2", "features": [
                        {"name": "ntp", "match": ["ntp server"]},
                        {"name": "logging", "match": ["logging host"]}]}}])
    found = run_job(tmp_path, job, sim.inventory, "--engine", "celery", env=env, expect=3)
    assert {d["status"] for d in found["devices"]} == {"non_compliant"}
    assert {d["worker"] for d in found["devices"]} <= {"w1", "w2"}
    assert found["devices"][0]["compliance"]["ntp"]["extra"] == ["ntp server 192.0.2.123"]
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", sqlite_url(tmp_path), "remediate",
         found["run_id"], "-i", str(sim.inventory), "--templates", str(ROOT / "templates"),
         "--engine", "celery", "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads(proc.stdout)
    assert done["remediates"] == found["run_id"]
    assert {d["status"] for d in done["devices"]} == {"changed"}
    for host in hosts:
        config = on_device(sim.inventory, host, "show running-config")
        assert "ntp server 192.0.2.10" in config and "192.0.2.123" not in config


def test_the_devices_in_progress_of_a_celery_run_are_known_as_they_go(
        sim: Fleet, workers: Workers, env: dict[str, str], redis_server: RedisServer,
        tmp_path: Path) -> None:
    """The run page's devices in progress on the Celery engine: the dispatcher learns from
    the run ledger which devices the workers began, and stores each with its start while
    the run goes (as the local engine does); none is left at work when the run ends."""
    ensure(workers, sim, "w1", "w2")
    slow = sim.slow[:6]
    job = write_job(tmp_path, "slow-show", targets={"hosts": slow}, driver="asyncssh",
                    concurrency=1, timeouts={"command": 30, "device": 120},
                    steps=[{"command": ["show clock"] * 6}])
    url = sqlite_url(tmp_path)
    client = redis_server.client()
    proc, run_id = start(url, env, client, job, sim.inventory, "--engine", "celery",
                         "--shard-size", "3")
    seen: dict[str, str] = {}
    store = ResultsStore(url)

    def look() -> bool:
        seen.update(working(store, run_id))
        return proc.poll() is not None

    try:
        wait_for(look, 300, "the run to end")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert set(seen) <= set(slow) and len(seen) >= 2, seen  # both workers' shards seen
    records = {d["host"]: d for d in result["devices"]}
    for host, began in seen.items():
        assert result["started"] <= began <= records[host]["finished"]
    assert working(ResultsStore(url), run_id) == {}


def test_a_record_crosses_redis_once(sim: Fleet, workers: Workers, env: dict[str, str],
                                     redis_server: RedisServer, tmp_path: Path) -> None:
    """Each device's record goes to the dispatcher through the run ledger as it finishes;
    a shard's own result carries only records the ledger does not hold (none here), not
    every record a second time. The run still has every device's full record."""
    ensure(workers, sim, "w1", "w2")
    healthy = sim.healthy()[:6]
    job = write_job(tmp_path, "show-once", targets={"hosts": healthy}, driver="asyncssh",
                    steps=[{"command": ["show version"]}])
    client = redis_server.client()
    before = set(client.scan_iter("celery-task-meta-*"))
    result = run_job(tmp_path, job, sim.inventory, "--engine", "celery", "--shard-size", "2",
                     env=env, expect=0)
    assert sorted(d["host"] for d in result["devices"]) == sorted(healthy)
    for device in result["devices"]:
        assert device["status"] == "ok" and "Cisco IOS Software" in device["steps"][0]["output"]
    shards = [json.loads(str(client.get(k)))
              for k in set(client.scan_iter("celery-task-meta-*")) - before]
    assert len(shards) == 3 and all(s["status"] == "SUCCESS" for s in shards), shards
    assert [s["result"]["devices"] for s in shards] == [[], [], []]
