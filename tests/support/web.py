"""`runner web` as a person runs it: the server as a child process on a free loopback port
with its own database, tokens made with `runner token create`, the jobs the web tests run
on their small simulated fleet, and a lab in the server's lab index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from runner.lab.netns import wait_for
from tests.support.base import ROOT, free_port
from tests.support.fleet import Fleet
from tests.support.jobs import write_job


class Web:
    """`runner web` (and the rest of the CLI) on one database, as a person runs them."""

    def __init__(self, workdir: Path, jobs: Path, inventory: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.jobs = jobs
        self.inventory = inventory
        self.extra = extra
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = f"sqlite:///{workdir / 'runner.db'}"
        self.env = {**os.environ, "RUNNER_HOME": str(workdir / "home"),
                    "RUNNER_LAB_INDEX": str(workdir / "labs"),
                    "RUNNER_LOCK_DIR": str(workdir / "locks")}
        self.env.pop("RUNNER_DB_URL", None)
        self.env.pop("RUNNER_BROKER_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "web.log"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner", "--db", self.db, *args]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              cwd=self.workdir, check=check, timeout=300)

    def start(self) -> Web:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(
                "web", "--port", str(self.port), "--jobs", str(self.jobs), "-i",
                str(self.inventory), "--templates", str(ROOT / "templates"), *self.extra),
                env=self.env, cwd=self.workdir, stdout=log, stderr=log)
        wait_for(self._answers, 60, "runner web to answer")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"runner web exited {self.proc.returncode}: "
                                 f"{self.log.read_text()}")
        try:
            return httpx.get(f"{self.base}/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def token(self, role: str, name: str) -> str:
        created = json.loads(self.cli("token", "create", "--role", role, "--name", name,
                                      "--json").stdout)
        return str(created["token"])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def wait_finished(self, client: httpx.Client, run_id: str, timeout: float = 120) -> None:
        wait_for(lambda: client.get(f"/api/runs/{run_id}/progress").json()["status"]
                 != "running", timeout, f"run {run_id} to finish")


def fleet_jobs(jobs: Path, fleet: Fleet, backups: Path) -> None:
    """The jobs the web tests run on the fleet."""
    some = [*fleet.refusing, *fleet.healthy()[:3]]
    write_job(jobs, "ntp", description="NTP servers", targets={"hosts": some},
              driver="asyncssh", steps=[
                  {"config": {"lines": ["ntp server 192.0.2.10", "ntp server 192.0.2.11"],
                              "save": True}},
                  {"backup": {"dir": str(backups)}}])
    write_job(jobs, "facts", targets={"hosts": fleet.healthy()[:2]}, driver="asyncssh",
              schedule={"interval": "1h"}, steps=[{"command": "show version"}])
    write_job(jobs, "slow", targets={"hosts": [*fleet.slow, *fleet.healthy()[:1]]},
              driver="asyncssh", timeouts={"connect": 30, "command": 200, "device": 300},
              steps=[{"command": ["show clock"] * 5}])
    write_job(jobs, "golden", description="NTP and logging as intended",
              targets={"hosts": fleet.healthy()[5:6]}, driver="asyncssh", steps=[
                  {"compliance": {"intended": "golden_sim.j2", "features": [
                      {"name": "ntp", "match": ["ntp server"]},
                      {"name": "logging", "match": ["logging host"]}]}}])
    write_job(jobs, "logging", description="a change that waits for approval",
              targets={"hosts": fleet.healthy()[3:5]}, driver="asyncssh",
              schedule={"cron": "0 3 * * *", "approval": "required",
                        "timezone": "Europe/Amsterdam"},
              steps=[{"config": {"lines": ["logging host 192.0.2.77"]}}])


def fake_lab(web: Web) -> str:
    """A lab in this server's lab index as `runner lab up` records it (two routers and a
    host; its namespaces do not exist, so every node is absent): its name. The routers'
    frr.conf in the lab directory hold the links' addresses."""
    from runner.lab.plan import LabPlan, LinkPlan, NodePlan
    from runner.lab.state import LabState

    lab_dir = web.workdir / "clab-webtest"
    nodes = {}
    for name, role, mgmt, ifaces in (("r1", "router", "172.31.254.11", ["eth1", "eth2"]),
                                     ("r2", "router", "172.31.254.12", ["eth1"]),
                                     ("h1", "host", "172.31.254.21", ["eth1"])):
        nodes[name] = NodePlan(name=name, netns=f"clab-webtest-{name}", role=role,
                               kind="linux", mgmt_ip=mgmt, host_veth=f"vwt{name}",
                               interfaces=ifaces, daemons=["ospfd"] if role == "router"
                               else [], username="admin", group=None)
    for router, conf in (("r1", "interface eth1\n ip address 10.0.12.1/30\nexit\n"
                                "interface eth2\n ip address 10.1.1.1/24\nexit\n"),
                         ("r2", "interface eth1\n ip address 10.0.12.2/30\nexit\n")):
        etc = lab_dir / "nodes" / router / "etc-frr"
        etc.mkdir(parents=True)
        (etc / "frr.conf").write_text(f"hostname {router}\n{conf}", encoding="utf-8")
    plan = LabPlan(lab="webtest", topology=str(web.workdir / "webtest.clab.yml"),
                   lab_dir=str(lab_dir), bridge="br-webtest", subnet="172.31.254.0/24",
                   gateway="172.31.254.1", nodes=nodes, links=[
                       LinkPlan("clab-webtest-r1", "eth1", "clab-webtest-r2", "eth1", None),
                       LinkPlan("clab-webtest-r1", "eth2", "clab-webtest-h1", "eth1", None)])
    index = web.workdir / "labs"
    index.mkdir(exist_ok=True)
    (index / "webtest.json").write_text(json.dumps(LabState("namespace", plan, "up")
                                                   .to_json()), encoding="utf-8")
    return "webtest"


def run_over_api(web: Web, op: httpx.Client, job: str) -> str:
    """Start `job` through POST /api/runs and wait until it finished: its run id."""
    started = op.post("/api/runs", json={"job": job})
    assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    web.wait_finished(op, run_id)
    return run_id
