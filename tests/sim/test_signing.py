"""Broker messages signed (RUNNER_BROKER_KEY, _CERT, _TRUSTED): with a real redis-server and
real `runner worker` processes, a signed run works; a shard written into Redis by anyone
else (unsigned, or signed with a key the workers do not trust) is refused and touches no
device; half a signing configuration is an input error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from celery import Celery

from runner.dispatch.celery_app import TASK
from runner.lab.netns import wait_for
from runner.settings import DEFAULT_QUEUE
from tests.support.base import ROOT, write_inventory
from tests.support.fleet import Fleet, FleetSpec, on_device, start_fleet
from tests.support.workers import RedisServer, Workers, run_celery

FORGED_LINE = "logging host 192.0.2.99"


def keypair(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    key.chmod(0o600)
    return key, cert


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("sim-signing"),
                     FleetSpec(2, "127.116.0.1")) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory,
           redis_server: RedisServer) -> dict[str, str]:
    """The environment of runner processes that sign: one key pair, its certificate
    trusted."""
    keys = tmp_path_factory.mktemp("signing")
    key, cert = keypair(keys / "own", "runner")
    trusted = keys / "trusted"
    trusted.mkdir()
    (trusted / "runner.pem").write_bytes(cert.read_bytes())
    return {**os.environ, "RUNNER_BROKER_URL": redis_server.url, "RUNNER_BROKER_KEY": str(key),
            "RUNNER_BROKER_CERT": str(cert), "RUNNER_BROKER_TRUSTED": str(trusted)}


def forge(redis_server: RedisServer, host: str, signer: tuple[Path, Path, Path] | None) -> None:
    """A shard pushing FORGED_LINE to `host`, written into the broker by someone who can
    reach Redis: unsigned (signer None), or signed with their own key."""
    app = Celery("forger", broker=redis_server.url)
    if signer is None:
        app.conf.update(task_serializer="json", accept_content=["json"])
    else:
        key, cert, store = signer
        app.conf.update(task_serializer="auth", accept_content=["auth"],
                        security_key=str(key), security_certificate=str(cert),
                        security_cert_store=str(store / "*.pem"), security_digest="sha256")
        app.setup_security(allowed_serializers=["json"], serializer="json")
    job = {"name": "forged", "driver": "asyncssh",
           "steps": [{"config": {"lines": [FORGED_LINE]}}]}
    app.send_task(TASK, args=[{"job": job, "run_id": f"forged{os.getpid()}", "dry_run": False,
                               "restore": None, "approved": None, "hosts": [host]}],
                  queue=DEFAULT_QUEUE)


def test_signed_runs_work_and_forged_shards_are_refused(
        sim: Fleet, redis_server: RedisServer, signed: dict[str, str],
        tmp_path: Path) -> None:
    hosts = list(sim.hosts)
    workers = Workers(tmp_path, signed)
    try:
        workers.start("signed", sim.inventory)
        job = tmp_path / "show.yml"
        job.write_text(yaml.safe_dump({"name": "show", "driver": "asyncssh", "steps": [
            {"config": {"lines": ["snmp-server location signed-run"]}}]}), encoding="utf-8")
        code, result, err = run_celery(tmp_path, signed, job, sim.inventory)
        assert code == 0, err
        assert {d["status"] for d in result["devices"]} == {"changed"}
        # Someone who can write to Redis: unsigned, then signed with a key of their own.
        mallory = tmp_path / "mallory"
        key, cert = keypair(mallory, "mallory")
        (mallory / "store").mkdir()
        (mallory / "store" / "mallory.pem").write_bytes(cert.read_bytes())
        forge(redis_server, hosts[0], None)
        forge(redis_server, hosts[1], (key, cert, mallory / "store"))
        wait_for(lambda: workers.log("signed").count("Refusing to deserialize") +
                 workers.log("signed").count("Unable to deserialize") >= 2, 60,
                 "the worker to refuse both forged shards")
        for host in hosts:
            assert FORGED_LINE not in on_device(sim.inventory, host, "show running-config")
        assert "runner.run_shard" not in workers.log("signed").split("received")[-1]
    finally:
        workers.stop_all()


def test_half_a_signing_configuration_is_an_input_error(signed: dict[str, str],
                                                        tmp_path: Path) -> None:
    env = {k: v for k, v in signed.items() if k != "RUNNER_BROKER_TRUSTED"}
    job = tmp_path / "j.yml"
    job.write_text("name: j\nsteps:\n  - command: show clock\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runner", "history"], capture_output=True,
                          text=True, env=env, check=False, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: broker message signing needs all of RUNNER_BROKER_KEY, RUNNER_BROKER_CERT, "
        "RUNNER_BROKER_TRUSTED (RUNNER_BROKER_TRUSTED not set)")
    bad = {**signed, "RUNNER_BROKER_KEY": str(tmp_path / "missing.key")}
    inventory = write_inventory(tmp_path, "r1: {platform: cisco_ios}\n")
    proc = subprocess.run([sys.executable, "-m", "runner", "worker", "-i", str(inventory),
                           "--templates", str(ROOT / "templates")], capture_output=True,
                          text=True, env=bad, check=False, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "broker message signing (RUNNER_BROKER_KEY, RUNNER_BROKER_CERT, " \
           "RUNNER_BROKER_TRUSTED): FileNotFoundError" in proc.stderr
