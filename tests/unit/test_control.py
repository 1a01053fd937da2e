"""Run control on its own (runner/execution/control): the worker payload codec, the names
both sides of the broker read, process liveness and reap against a real database, the
run's heartbeat and cancel requests, a shard's stop rule, the heartbeats and a device's lease in a
real Redis. The engines that use them are tested against the simulator in tests/sim."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from runner.errors import InputError, StoreError
from runner.execution.control import liveness, runwatch
from runner.execution.control.cancel import (
    CANCELLED,
    CLOSED,
    DROPPED,
    ORPHANED,
    ShardWatch,
    shard_stop,
)
from runner.execution.control.heartbeat import (
    DispatcherAlive,
    WorkerPresence,
    live_workers,
)
from runner.execution.control.keys import (
    LEASE_TTL_MS,
    RunKeys,
    ShardKeys,
    incarnation,
    lease_holder,
    lease_key,
    lease_token,
    ledger_id,
    shard_owner,
    worker_of,
)
from runner.execution.control.liveness import (
    ORPHANED_DEVICE,
    ORPHANED_RUN,
    Controller,
    owner_alive,
    process_identity,
    start_ticks,
)
from runner.execution.control.payload import decode, encode
from runner.execution.control.runwatch import RunWatch
from runner.execution.control.ticker import Ticker
from runner.execution.executor import Work
from runner.execution.leases import Coordination, lease_of
from runner.inventory.loading import load_inventory
from runner.job.spec import JobSpec
from runner.lab.netns import wait_for
from runner.records import ApprovedChange, RestorePlan, RunResult, now_iso
from runner.settings import Settings
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, RunStatus
from tests.support.base import ROOT, write_inventory
from tests.support.workers import RedisServer

HOSTS = ["r1", "r2", "r3"]


def a_work(tmp_path: Path, **extra: object) -> Work:
    inv = write_inventory(tmp_path, "".join(f"{h}:\n  hostname: 10.0.0.{i}\n  platform: "
                                            f"cisco_ios\n" for i, h in enumerate(HOSTS, 1)))
    spec = JobSpec.model_validate({"name": "ntp", "steps": [
        {"config": {"lines": ["ntp server 10.9.9.9"]}}]})
    return Work(spec, load_inventory(inv), ROOT / "templates", "0c0c0c0c0c0c", Settings(),
                **extra)  # type: ignore[arg-type]  # the fields a test sets


# -- the worker payload codec ----------------------------------------------------------------

def test_a_shard_crosses_the_broker_as_json_and_comes_back_whole(tmp_path: Path) -> None:
    plans = {h: RestorePlan([f"no description {h}"], f"k{h}", f"a{h}") for h in HOSTS}
    approved = {h: ApprovedChange(f"d{h}", {"0": "ntp server 10.9.9.9"}) for h in HOSTS}
    work = a_work(tmp_path, dry_run=True, restore=plans, approved=approved, override=True)
    sent = encode(work, ["r1", "r3"])
    wire = json.loads(json.dumps(sent))  # JSON types only: what Celery's serializer carries
    assert wire == sent
    order = decode(wire)
    assert order.spec == work.spec and order.run_id == work.run_id
    assert order.hosts == ["r1", "r3"] and order.dry_run and order.override
    assert order.watch_dispatcher  # a dispatcher killed mid-run stops its shards
    # each shard carries its own hosts' plans and approvals, not the whole run's
    assert order.restore == {"r1": plans["r1"], "r3": plans["r3"]}
    assert order.approved == {"r1": approved["r1"], "r3": approved["r3"]}
    assert order.ledger_id == work.ledger_id == ledger_id(work.run_id, True) \
        == f"{work.run_id}:restore"
    again = order.work(work.inventory, work.templates_dir, work.settings)
    assert (again.spec, again.run_id, again.dry_run, again.restore, again.approved,
            again.override, again.ledger_id) == (
        work.spec, work.run_id, True, order.restore, order.approved, True, work.ledger_id)


def test_a_payload_without_the_optional_fields_takes_their_defaults(tmp_path: Path) -> None:
    work = a_work(tmp_path)
    order = decode({"job": work.spec.model_dump(mode="json"), "run_id": "r", "hosts": ["r2"]})
    assert (order.hosts, order.dry_run, order.restore, order.approved, order.override,
            order.watch_dispatcher, order.ledger_id) == (["r2"], False, None, None, False,
                                                         False, "r")
    plain = decode(encode(work, ["r2"]))
    assert (plain.restore, plain.approved, plain.override, plain.ledger_id) == (
        None, None, False, work.run_id)


@pytest.mark.parametrize(("payload", "field"), [
    ({"run_id": "r", "hosts": []}, "job"),
    ({"job": "ntp", "run_id": "r", "hosts": []}, "job"),
    ({"job": {}, "hosts": []}, "run_id"),
    ({"job": {}, "run_id": "", "hosts": []}, "run_id"),
    ({"job": {}, "run_id": "r"}, "hosts"),
    ({"job": {}, "run_id": "r", "hosts": "r1"}, "hosts"),
    ({"job": {}, "run_id": "r", "hosts": ["r1", 2]}, "hosts"),
])
def test_a_payload_that_is_not_a_shard_is_refused_naming_the_field(
        payload: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as caught:
        decode(payload)
    assert caught.value.field == field


# -- names both sides agree on ---------------------------------------------------------------

def test_the_names_the_dispatcher_and_the_workers_share() -> None:
    keys = RunKeys("abc")
    assert [keys.device("done", "r1"), keys.started, keys.began, keys.finished, keys.cancel,
            keys.closed, keys.dispatcher, keys.alive] == [
        "runner:run:abc:done:r1", "runner:run:abc:started", "runner:run:abc:began",
        "runner:run:abc:finished",
        "runner:run:abc:cancel", "runner:run:abc:closed", "runner:run:abc:dispatcher",
        "runner:run:abc:alive"]
    shard = ShardKeys("t-42")
    assert (shard.holder, shard.dropped) == ("runner:shard:t-42:holder",
                                             "runner:shard:t-42:dropped")
    # the dispatcher frees a lost shard's leases by finding its task id in their tokens
    token = lease_token(shard_owner("w1", "t-42"), "abc")
    assert shard.marker in token and ShardKeys("t-4").marker not in token
    assert lease_holder(token).startswith("w1:t-42:") and lease_holder(token).endswith(":abc")
    assert lease_key("10.0.0.1:22") == "runner:lease:10.0.0.1:22"
    me = incarnation("site-a:w1", 4242)
    assert me.startswith("site-a:w1#4242.") and worker_of(me) == "site-a:w1"
    assert incarnation("site-a:w1", 4242) != me  # a restarted worker is a new incarnation


# -- liveness --------------------------------------------------------------------------------

def test_a_process_is_known_by_its_pid_and_start_time() -> None:
    me = Controller.this_process()
    assert me.alive() and me.started == start_ticks("self") == start_ticks(me.pid)
    assert not Controller(me.pid, "1").alive()  # the pid, reused by another process
    child = subprocess.Popen(["sleep", "60"])
    gone = Controller(child.pid, start_ticks(child.pid))
    assert gone.alive()
    child.kill()
    wait_for(lambda: not gone.alive(), 30, "the killed child to be seen gone")  # a zombie
    child.wait()
    assert not gone.alive() and start_ticks(child.pid) is None


def test_a_runs_owner_lives_by_pid_here_and_by_heartbeat_elsewhere() -> None:
    assert owner_alive(process_identity(), None)
    child = subprocess.Popen(["sleep", "60"])
    owner = f"{socket.gethostname()}:{child.pid}:{start_ticks(child.pid)}"
    assert owner_alive(owner, None)
    child.kill()
    child.wait()
    assert not owner_alive(owner, now_iso())  # on this host the pid decides, not the beat
    assert owner_alive("elsewhere:1:2", now_iso())
    assert not owner_alive("elsewhere:1:2", "2020-01-01T00:00:00+00:00")
    assert not owner_alive("elsewhere:1:2", None) and not owner_alive(None, "not a time")
    assert owner_alive(None, now_iso())  # a run of a runner before owners were stored


KILLED_MID_RUN = textwrap.dedent("""
    import os, signal, sys
    from runner.records import DeviceResult, RunResult
    from runner.store.results import ResultsStore
    from runner.vocab import DeviceStatus
    store = ResultsStore(sys.argv[1])
    run = RunResult(run_id=sys.argv[2], job="audit", started="2026-11-01T09:00:00+00:00",
                    finished=None, devices=[])
    store.start_run(run, ["r1", "r2", "r3"])
    store.record_devices(run.run_id, [DeviceResult(host="r2", status=DeviceStatus.OK)],
                         {"r1": 0, "r2": 1, "r3": 2})
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_run_whose_process_was_killed_is_finished_by_the_next_store(db_url: str) -> None:
    run_id = uuid.uuid4().hex[:12]
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_RUN, db_url, run_id],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    mine = RunResult(run_id=uuid.uuid4().hex[:12], job="audit", started=now_iso(),
                     finished=None, devices=[])
    ResultsStore(db_url).start_run(mine, ["r1"])  # this process: alive, left alone
    store = ResultsStore(db_url)  # opening the store reaps
    row, run = store.get_run(run_id)
    assert (row["status"], row["error"]) == (RunStatus.INTERRUPTED, ORPHANED_RUN)
    assert [(d.host, d.status, d.error_class, d.error) for d in run.devices] == [
        ("r1", DeviceStatus.FAILED, "Interrupted", ORPHANED_DEVICE),
        ("r2", DeviceStatus.OK, None, None),
        ("r3", DeviceStatus.FAILED, "Interrupted", ORPHANED_DEVICE)]
    assert row["summary"]["failed"] == 2 and row["finished"]
    assert store.get_run(mine.run_id)[0]["status"] == RunStatus.RUNNING
    assert liveness.reap(store) == []  # once: a reaped run is not running any more


# -- a run's heartbeat and cancel requests ---------------------------------------------------

def test_the_run_beats_and_a_cancel_asked_elsewhere_reaches_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(runwatch, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(runwatch, "REQUEST_POLL_S", 0.1)
    url = f"sqlite:///{tmp_path / 'runner.db'}"
    store = ResultsStore(url)
    run = RunResult(run_id="0d0d0d0d0d0d", job="audit", started=now_iso(), finished=None,
                    devices=[])
    store.start_run(run, ["r1"])
    first = store.get_run(run.run_id)[0]["heartbeat"]
    cancel = threading.Event()
    with RunWatch(store, run.run_id, cancel):
        wait_for(lambda: store.get_run(run.run_id)[0]["heartbeat"] != first, 30,
                 "a heartbeat stored")
        assert not cancel.is_set()
        assert ResultsStore(url).request_cancel(run.run_id, "ops@noc")  # another process
        wait_for(cancel.is_set, 30, "the cancel request to reach the run")
    assert f"run {run.run_id}: cancelled by ops@noc" in caplog.text


def test_a_store_that_fails_says_so_without_its_statement(tmp_path: Path) -> None:
    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE devices"))
        conn.execute(text("DROP TABLE runs"))
    for action in (lambda: store.beat("x"), lambda: store.cancel_requested("x")):
        with pytest.raises(StoreError) as caught:
            action()
        assert "no such table: runs" in str(caught.value)
        assert "SELECT" not in str(caught.value) and "UPDATE" not in str(caught.value)


def test_a_ticker_stops_when_told_or_when_its_work_is_done() -> None:
    ticks: list[int] = []

    def three() -> bool:
        ticks.append(1)
        return len(ticks) < 3

    done = Ticker("runner-test", 0.01, three)
    done.start()
    wait_for(lambda: not done._thread.is_alive(), 30, "the ticker to end by itself")
    assert len(ticks) == 3
    seen = threading.Event()
    told = Ticker("runner-test", 0.01, seen.set)
    told.start()
    wait_for(seen.is_set, 30, "a tick")
    told.stop()
    assert told.stopped and not told._thread.is_alive()


# -- a shard's stop rule and the heartbeats in Redis ----------------------------------------

def test_a_shard_stops_for_each_reason_in_order(redis_server: RedisServer) -> None:
    client = redis_server.client()
    keys, shard = RunKeys(uuid.uuid4().hex), ShardKeys(uuid.uuid4().hex)
    assert shard_stop(client, keys, shard, watch_dispatcher=False) is None
    assert shard_stop(client, keys, shard, watch_dispatcher=True) == ORPHANED
    client.set(keys.alive, "1")
    assert shard_stop(client, keys, shard, watch_dispatcher=True) is None
    for key, reason in ((keys.cancel, CANCELLED), (shard.dropped, DROPPED),
                        (keys.closed, CLOSED)):
        client.set(key, "1")
        assert shard_stop(client, keys, shard, watch_dispatcher=True) == reason


def test_a_running_shard_stops_when_its_dispatcher_goes_silent(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    client = redis_server.client()
    keys, shard = RunKeys(uuid.uuid4().hex), ShardKeys(uuid.uuid4().hex)
    alive = DispatcherAlive(client, keys, ttl=1.0)
    alive.start()
    cancel = threading.Event()
    with ShardWatch(client, keys, shard, cancel, watch_dispatcher=True):
        assert client.exists(keys.alive)
        alive.stop()  # as at the end of a dispatcher's run: its key goes at once
        wait_for(cancel.is_set, 30, "the shard to stop")
    assert f"run {keys.run_id}: its dispatcher is gone" in caplog.text


PRESENT = textwrap.dedent("""
    import sys, threading
    from runner.execution.control.heartbeat import WorkerPresence
    WorkerPresence(sys.argv[1], sys.argv[2], ["site-a"], 1.0).start()
    print("present", flush=True)
    threading.Event().wait()
""")


def test_a_worker_killed_outright_is_forgotten_within_its_bound(
        redis_server: RedisServer) -> None:
    client = redis_server.client()
    me = incarnation("w-killed", 1)
    proc = subprocess.Popen([sys.executable, "-c", PRESENT, redis_server.url, me], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "present"
        assert live_workers(client)[me] == ["site-a"]
        wait_for(lambda: client.pttl(f"runner:worker:{me}") > 0, 30, "a renewed presence")
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: me not in live_workers(client), 30, "the presence key to lapse")
    assert not client.sismember("runner:workers", me)  # forgotten, not only absent
    polite = WorkerPresence(redis_server.url, incarnation("w-polite", 2), ["runner"], 10.0)
    polite.start()
    assert polite.incarnation in live_workers(client)
    polite.stop()  # a worker that shuts down says so at once
    assert polite.incarnation not in live_workers(client)


def test_a_devices_lease_is_read_from_redis_without_taking_it(redis_server: RedisServer,
                                                              tmp_path: Path) -> None:
    """What the device page shows with a broker: the holder of the lease a real worker's
    Coordination holds, for how long it stands; nobody once released; the broker's
    failure as such. Looking never takes the lease."""
    address = "10.9.8.7:22"
    seen: dict[str, object] = {}

    async def hold() -> None:
        coord = Coordination(redis_server.url, "ab12ab12ab12", "worker-7@host")
        try:
            async with coord.lease(address, 0):
                seen["held"] = await asyncio.to_thread(lease_of, address, redis_server.url,
                                                       tmp_path)
                # a second holder is refused while it is held: the look did not take it
                other = Coordination(redis_server.url, "cd34cd34cd34", "worker-8@host")
                with contextlib.suppress(Exception):
                    async with other.lease(address, 0):
                        seen["second"] = True
                await other.close()
        finally:
            await coord.close()

    asyncio.run(hold())
    held = seen["held"]
    assert isinstance(held, dict) and "second" not in seen
    assert held["holder"] == "worker-7@host:ab12ab12ab12" and held["via"] == "redis"
    assert 0 < held["expires_in_s"] <= LEASE_TTL_MS / 1000
    assert lease_of(address, redis_server.url, tmp_path) is None  # released
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, not listening: refuses connections
        down = lease_of(address, f"redis://127.0.0.1:{closed}/0", tmp_path)
    assert down is not None and down["holder"] is None and down["via"] == "redis"
    assert str(down["error"]).startswith("broker unreachable")


def test_begin_and_lease_marks_the_device_started_and_takes_a_free_lease_at_once(
        redis_server: RedisServer, tmp_path: Path) -> None:
    """A device that needs nothing rendered first is begun and leased in one round trip:
    a free lease is taken (and released like any other), a held one is not (the usual
    wait follows), and a device this run finished returns its record and takes none."""
    address = "10.9.8.6:22"
    seen: dict[str, object] = {}

    async def go() -> None:
        coord = Coordination(redis_server.url, "ef56ef56ef56", "worker-9@host")
        other = Coordination(redis_server.url, "ab78ab78ab78", "worker-10@host")
        try:
            done, token = await coord.begin_and_lease("r1", address)
            seen["first"] = (done, token)
            seen["held"] = await asyncio.to_thread(lease_of, address, redis_server.url,
                                                   tmp_path)
            seen["busy"] = await other.begin_and_lease("r1", address)
            async with coord.lease(address, 0, token):  # holds it, then releases it
                seen["inside"] = await asyncio.to_thread(lease_of, address,
                                                         redis_server.url, tmp_path)
            await coord.mark_done("r1", {"host": "r1", "status": "ok"})
            seen["again"] = await coord.begin_and_lease("r1", address)
        finally:
            await coord.close()
            await other.close()

    asyncio.run(go())
    done, token = seen["first"]  # type: ignore[misc]
    assert done is None and isinstance(token, str) and token.startswith("worker-9@host:")
    for look in (seen["held"], seen["inside"]):
        assert isinstance(look, dict) and look["holder"] == "worker-9@host:ef56ef56ef56"
    assert seen["busy"] == (None, None)  # begun, but the lease is another's
    assert lease_of(address, redis_server.url, tmp_path) is None  # released, not re-taken
    assert seen["again"] == ({"host": "r1", "status": "ok"}, None)
    client = redis_server.client()
    assert client.sismember("runner:run:ef56ef56ef56:started", "r1")
    assert client.lrange("runner:run:ef56ef56ef56:began", 0, -1) == ["r1"]
