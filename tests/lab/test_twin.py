"""`runner twin` on real FRR: the practice lab plays production, the shipped backup job fills
the backup repository, and the twin built from it runs beside production: every router's
running config equals its backup, OSPF and BGP come up as production's, a job run on the
twin's inventory backs up the same configs, `sync` picks up a change made on production,
and `down` leaves nothing. Labs twprod (172.20.81.0/24), twtwin and twtopo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from runner.inventory import platforms
from runner.job.backups import BackupRepo
from runner.job.diffing import normalize
from runner.lab.converge import routing
from runner.lab.service import Labs
from runner.lab.sim.cli import Device
from runner.lab.state import LabState
from runner.lab.system import pid_alive
from runner.lab.twin.masks import LAB_SECRET
from runner.redact import MASK, Redactor
from runner.settings import Settings
from tests.support.base import free_port
from tests.support.jobs import run_job, shipped_job
from tests.support.lab import RunningLab, leftovers, poll, practice_copy, runner, vtysh

ROUTERS = ["r1", "r2", "r3", "r4"]
SECRET = "Prod-Bgp-7f3a"  # production's BGP password between r1 and r2


@dataclass
class Production:
    lab: RunningLab
    workdir: Path
    backups: Path
    job: Path

    @property
    def inventory(self) -> Path:
        return self.lab.lab_dir / "inventory"

    def backup(self) -> dict[str, object]:
        return run_job(self.workdir, self.job, self.inventory, expect=0)


def bgp_up(lab: RunningLab, node: str, peer: str) -> bool:
    state = routing(lab.labs, lab.labs.find_lab(str(lab.topology)), node)
    return state.bgp.get(peer) == "Established"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """The practice lab with a keyed BGP session (r1-r2: a secret the backups mask), backed
    up by the shipped backup job."""
    workdir = tmp_path_factory.mktemp("twin")
    with practice_copy(workdir, "twprod", 81) as lab:
        vtysh(lab, "r1", f"configure terminal\nrouter bgp 65000\n"
              f"neighbor 10.255.0.2 password {SECRET}\nend")
        vtysh(lab, "r2", f"configure terminal\nrouter bgp 65000\n"
              f"neighbor 10.255.0.1 password {SECRET}\nend")
        assert poll(lambda: bgp_up(lab, "r1", "10.255.0.2"), bool)
        backups = workdir / "backups"
        job = shipped_job(workdir, "backup.yml", steps=[
            {"backup": {"dir": str(backups), "volatile": ["^frr version .*$"]}}])
        prod = Production(lab, workdir, backups, job)
        prod.backup()
        yield prod


def twin(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`runner twin ...` from workdir (its RUNNER_HOME, .runner, holds the twin's files)."""
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_HOME"}
    return subprocess.run([sys.executable, "-m", "runner", "twin", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def lab_state(name: str) -> LabState:
    return Labs(Settings.from_env()).find_lab(name)


def twin_config(name: str, node: str) -> str:
    """The twin router's running config, as a backup would hold it."""
    text = runner("lab", "exec", "--lab", name, node, "--", "show", "running-config").stdout
    lines = [ln.rstrip() for ln in text.replace(LAB_SECRET, MASK).splitlines()
             if not ln.startswith(("frr version ", "Building configuration",
                                   "Current configuration"))]
    return "\n".join(lines).strip() + "\n"


def sessions(name: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    labs = Labs(Settings.from_env())
    state = labs.find_lab(name)
    out = {}
    for node in ROUTERS:
        r = routing(labs, state, node)
        out[node] = (r.ospf, r.bgp)
    return out


def test_a_twin_of_production_is_faithful_runs_jobs_syncs_and_leaves_nothing(
        production: Production) -> None:
    workdir = production.workdir
    up = twin(workdir, "up", "--from-backups", str(production.backups), "-i",
              str(production.inventory), "--name", "twtwin")
    try:
        assert up.returncode == 0, (up.stdout, up.stderr)
        out = up.stdout
        # what it built, and what it guessed, said
        assert "4 FRR router(s): r1, r2, r3, r4" in out
        assert "links inferred from the configs (point-to-point subnets):" in out
        for link in ("r1:eth1 -- r2:eth1  (10.0.12.0/31)", "r1:eth2 -- r4:eth2  (10.0.14.0/31)",
                     "r2:eth2 -- r3:eth1  (10.0.23.0/31)", "r3:eth2 -- r4:eth1  (10.0.34.0/31)"):
            assert f"  {link}\n" in out
        assert "  r1:eth3: 10.1.1.0/24 is not a point-to-point subnet" in out
        assert f"replaced by the lab value '{LAB_SECRET}' (2 line(s))" in out
        assert "r1 line" in out and "neighbor 10.255.0.2 password" in out
        assert SECRET not in out + up.stderr
        assert "running configs equal to their backups: 4/4" in out
        for node in ROUTERS:
            assert f"{node}: OSPF 2/2 full, BGP 3/3 established" in out
        # and production's own `show` output says the same, router by router
        assert "routing compared with production's own `show` output: 4/4 same" in out
        for node in ROUTERS:
            assert f"\n  {node}: same as production\n" in out
        assert "NOT as production" not in out

        # the twin and production run at once, each on its own subnet and namespaces
        status = json.loads(runner("lab", "status", "--json").stdout)
        mine = {s["lab"]: s for s in status if s["lab"] in ("twprod", "twtwin")}
        assert set(mine) == {"twprod", "twtwin"}
        twin_lab = lab_state("twtwin")
        assert twin_lab.plan.subnet != production.lab.plan.subnet
        assert all(node["running"] and node["ssh"] for s in mine.values()
                   for node in s["nodes"] if node["role"] == "router")
        inventory = Path(mine["twtwin"]["inventory"])
        hosts = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
        assert sorted(hosts) == ROUTERS
        for node, entry in hosts.items():
            assert entry["hostname"] == twin_lab.plan.nodes[node].mgmt_ip
            assert entry["groups"] == ["routers"]  # production's groups: jobs target them
            assert entry["data"]["twin"] == "twtwin"

        # faithful: each running config is its backup; sessions are production's
        for node in ROUTERS:
            backup = (production.backups / f"{node}.cfg").read_text(encoding="utf-8")
            assert twin_config("twtwin", node) == backup.strip() + "\n", node
        prod_sessions = sessions("twprod")
        assert poll(lambda: sessions("twtwin"), lambda s: s == prod_sessions) == prod_sessions

        # the shipped backup job run on the twin's inventory backs up the same configs
        twin_backups = workdir / "twin-backups"
        (workdir / "twinjob").mkdir()
        job = shipped_job(workdir / "twinjob", "backup.yml", steps=[
            {"backup": {"dir": str(twin_backups), "volatile": ["^frr version .*$"]}}])
        result = run_job(workdir, job, inventory, expect=0)
        assert sorted(d["host"] for d in result["devices"]) == ROUTERS
        for node in ROUTERS:
            assert (twin_backups / f"{node}.cfg").read_text(encoding="utf-8") == \
                (production.backups / f"{node}.cfg").read_text(encoding="utf-8"), node
        facts = run_job(workdir, shipped_job(workdir / "twinjob", "facts.yml"), inventory,
                        expect=0)  # as docs/twin.md shows it
        assert sorted((d["host"], d["status"]) for d in facts["devices"]) == [
            (node, "ok") for node in ROUTERS]

        # a twin's name is taken while it is up: refused, nothing changed
        again = twin(workdir, "up", "--from-backups", str(production.backups), "-i",
                     str(production.inventory), "--name", "twtwin")
        assert again.returncode == 2
        assert "a lab named 'twtwin' is already up" in again.stderr
        assert lab_state("twtwin").plan == twin_lab.plan

        # a change on production, backed up, reaches the twin with `sync`
        vtysh(production.lab, "r2", "configure terminal\ninterface eth1\n"
              "description twin-sync-check\nend")
        try:
            production.backup()
            synced = twin(workdir, "sync", "twtwin")
            assert synced.returncode == 0, (synced.stdout, synced.stderr)
            assert "restarted with their new backup: r2" in synced.stdout
            assert "running configs equal to their backups: 4/4" in synced.stdout
            assert "routing compared with production's own `show` output: 4/4 same" in \
                synced.stdout
            assert "description twin-sync-check" in twin_config("twtwin", "r2")
            assert poll(lambda: sessions("twtwin"), lambda s: s == prod_sessions) == \
                prod_sessions
        finally:
            vtysh(production.lab, "r2", "configure terminal\ninterface eth1\n"
                  "no description\nend")
    finally:
        plan = lab_state("twtwin").plan if up.returncode == 0 else None
        down = twin(workdir, "down", "twtwin")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "twin twtwin removed"
    assert plan is not None
    assert leftovers(plan) == []
    assert not (workdir / ".runner" / "twins" / "twtwin").exists()
    # production is untouched
    assert poll(lambda: sessions("twprod"), lambda s: s == prod_sessions) == prod_sessions


def test_a_twin_cabled_by_production_topology_file(production: Production) -> None:
    workdir = production.workdir
    plan = None
    up = twin(workdir, "up", "--from-backups", str(production.backups), "-i",
              str(production.inventory), "--name", "twtopo", "--topology",
              str(production.lab.topology), "--json")
    try:
        assert up.returncode == 0, (up.stdout, up.stderr)
        report = json.loads(up.stdout)
        assert report["links_inferred"] is False
        assert sorted((lk["a"], lk["b"]) for lk in report["links"]) == [
            ("r1:eth1", "r2:eth1"), ("r2:eth2", "r3:eth1"), ("r3:eth2", "r4:eth1"),
            ("r4:eth2", "r1:eth2")]
        assert report["stubs"] == {"r1:eth3": "its peer h1:eth1 is not in the twin",
                                   "r3:eth3": "its peer h2:eth1 is not in the twin"}
        assert report["configs_equal"] == ROUTERS and report["config_differs"] == {}
        assert report["converged"] is True and report["peers_outside"] == {}
        assert report["production_compared"] is True
        assert {node: (c["compared"], c["same"], c["differences"], c["error"])
                for node, c in report["production"].items()} == {
            node: (True, True, [], None) for node in ROUTERS}
        assert {r["command"] for r in report["secrets_replaced"]} == {
            "neighbor 10.255.0.2 password", "neighbor 10.255.0.1 password"}
        plan = lab_state("twtopo").plan
    finally:
        down = twin(workdir, "down", "twtopo")
    assert down.returncode == 0, down.stderr
    assert plan is not None
    assert leftovers(plan) == []


def test_what_cannot_be_faithful_is_refused_or_left_out_and_said(
        production: Production, tmp_path: Path) -> None:
    """A Junos router among the backups refuses the twin (nothing built); with
    --skip-unfaithful the others are built and it is named, an IOS switch served by the
    twin's simulator beside the routers; a BGP peer outside the twin keeps routing from
    converging, and is said so (exit 1, the twin stays up)."""
    configs = {n: (production.backups / f"{n}.cfg").read_text(encoding="utf-8")
               for n in ROUTERS}
    configs["r1"] = configs["r1"].replace(
        " neighbor 10.255.0.4 peer-group CORE\n",
        " neighbor 10.255.0.4 peer-group CORE\n neighbor 192.0.2.99 remote-as 65099\n")
    configs["mx1"] = "system {\n    host-name mx1;\n}\n"
    platform = platforms.get("cisco_ios")
    assert platform is not None
    configs["sw1"] = normalize(Redactor(patterns=platform.secrets).text(
        Device.default("sw1", 5).running_config()), platform.volatile)
    backups = tmp_path / "backups"
    BackupRepo(backups).commit(configs, "a backup with a switch")
    inventory = tmp_path / "inventory"
    shutil.copytree(production.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
    hosts["mx1"] = {"hostname": "192.0.2.1", "groups": ["routers"],
                    "platform": "juniper_junos"}
    hosts["sw1"] = {"hostname": "192.0.2.2", "groups": ["routers"], "data": {"rack": 7}}
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")

    refused = twin(tmp_path, "up", "--from-backups", str(backups), "-i", str(inventory),
                   "--name", "twskip")
    assert refused.returncode == 2
    assert "mx1: platform juniper_junos has no twin" in refused.stderr
    assert "--skip-unfaithful builds the others" in refused.stderr
    assert not (tmp_path / ".runner" / "twins" / "twskip").exists()
    assert "twskip" not in runner("lab", "status").stdout

    plan = None
    up = twin(tmp_path, "up", "--from-backups", str(backups), "-i", str(inventory),
              "--name", "twskip", "--skip-unfaithful", "--wait", "20")
    try:
        assert up.returncode == 1, (up.stdout, up.stderr)
        plan = lab_state("twskip").plan
        assert sorted(plan.nodes) == ROUTERS
        assert "NOT FAITHFUL, left out (--skip-unfaithful):\n  mx1: platform " \
               "juniper_junos has no twin" in up.stdout
        assert "1 simulated device(s) (the fleet simulator, seeded with their backups; no " \
               "links, no routing): sw1" in up.stdout
        assert "running configs equal to their backups: 5/5" in up.stdout
        assert "r1: OSPF 2/2 full, BGP 3/4 established" in up.stdout
        twin_hosts = yaml.safe_load(
            (Path(plan.lab_dir) / "inventory" / "hosts.yaml").read_text(encoding="utf-8"))
        assert sorted(twin_hosts) == [*ROUTERS, "sw1"]
        assert twin_hosts["sw1"]["hostname"].startswith("127.77.")
        assert twin_hosts["sw1"]["data"]["rack"] == 7
        sim_pid = json.loads((tmp_path / ".runner" / "twins" / "twskip" / "sim" /
                              "sim.json").read_text(encoding="utf-8"))["pid"]
        assert pid_alive(sim_pid)
        assert "192.0.2.99: " in up.stdout and "(no twin router has this address)" in up.stdout
        assert "routing has NOT converged" in up.stdout
        # production has no such peer (the backup is not its config): a difference; the
        # switch is simulated (said, not compared); the Junos router is not in the twin
        assert "  r1: DIFFERS from production:\n  " \
               "  BGP 192.0.2.99 production has no such peer, twin " in up.stdout
        assert "  sw1: simulated: routing not compared" in up.stdout
        assert "routing compared with production's own `show` output: 3/4 same" in up.stdout
        assert "mx1: " not in up.stdout.split("routing compared with production")[1]
    finally:
        down = twin(tmp_path, "down", "twskip")
    assert down.returncode == 0, down.stderr
    assert plan is not None
    assert leftovers(plan) == []
    assert not pid_alive(sim_pid)


def test_routing_unlike_production_and_an_unreadable_production_host_are_said(
        production: Production, tmp_path: Path) -> None:
    """After the backup, production's r1 shuts its BGP neighbour r3: the twin (from the
    backup) has the session up, and `twin up` names the difference on both ends; r4's
    production address is wrong in the inventory: not compared, said with its error class.
    Exit 1, the twin left up; `--no-production` says it did not compare."""
    inventory = tmp_path / "inventory"
    shutil.copytree(production.inventory, inventory)
    prod_hosts = (inventory / "hosts.yaml").read_text(encoding="utf-8")
    hosts = yaml.safe_load(prod_hosts)
    hosts["r4"]["hostname"] = "127.0.0.1"
    hosts["r4"]["port"] = free_port()
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    backups = tmp_path / "backups"  # production's, to commit a later backup into
    shutil.copytree(production.backups, backups)
    plan = None
    vtysh(production.lab, "r1", "configure terminal\nrouter bgp 65000\n"
          "neighbor 10.255.0.3 shutdown\nend")
    try:
        assert poll(lambda: bgp_up(production.lab, "r3", "10.255.0.1"), lambda up: not up) \
            is False
        up = twin(tmp_path, "up", "--from-backups", str(backups), "-i",
                  str(inventory), "--name", "twdiff")
        plan = lab_state("twdiff").plan  # left up to look at
        assert up.returncode == 1, (up.stdout, up.stderr)
        out = up.stdout
        assert "Traceback" not in up.stderr, up.stderr
        assert "running configs equal to their backups: 4/4" in out
        assert "r1: OSPF 2/2 full, BGP 3/3 established" in out  # the twin converged
        assert "routing compared with production's own `show` output: 1/4 same" in out
        assert "  r1: DIFFERS from production:\n" \
               "    BGP 10.255.0.3 production Idle (Admin), twin Established\n" in out
        assert "  r3: DIFFERS from production:\n    BGP 10.255.0.1 production " in out
        assert "  r2: same as production\n" in out
        assert "  r4: NOT COMPARED: production could not be read: ConnectFailed: " in out
        assert "the twin is NOT as production for r1, r3, r4 (above)" in out
        assert "admin" not in out.split("r4: NOT COMPARED")[1].splitlines()[0]

        synced = twin(tmp_path, "sync", "twdiff", "--json")
        assert synced.returncode == 1, (synced.stdout, synced.stderr)
        report = json.loads(synced.stdout)["production"]
        assert report["r1"]["same"] is False and report["r1"]["differences"] == [
            {"protocol": "BGP", "key": "10.255.0.3", "production": "Idle (Admin)",
             "twin": "Established", "expected": None}]
        assert report["r2"] == {"compared": True, "same": True, "differences": [],
                                "expected_differences": [], "error": None, "note": None}
        assert report["r4"]["compared"] is False and report["r4"]["same"] is None
        assert report["r4"]["error"].startswith("ConnectFailed: ")

        unasked = twin(tmp_path, "sync", "twdiff", "--no-production")
        assert unasked.returncode == 0, (unasked.stdout, unasked.stderr)
        assert "production's routing not compared (--no-production)" in unasked.stdout
        assert "same as production" not in unasked.stdout

        # production's shut session backed up, r4's address put right: the twin's r1-r3
        # session stays down as production's does; not converged, yet as production: 0
        (inventory / "hosts.yaml").write_text(prod_hosts, encoding="utf-8")
        configs = {n: (backups / f"{n}.cfg").read_text(encoding="utf-8") for n in ROUTERS}
        configs["r1"] = configs["r1"].replace(
            " neighbor 10.255.0.3 peer-group CORE\n",
            " neighbor 10.255.0.3 peer-group CORE\n neighbor 10.255.0.3 shutdown\n")
        assert "neighbor 10.255.0.3 shutdown" in configs["r1"]
        BackupRepo(backups).commit(configs, "r1 shut its session to r3")
        alike = twin(tmp_path, "sync", "twdiff", "--wait", "40")
        assert alike.returncode == 0, (alike.stdout, alike.stderr)
        assert "restarted with their new backup: r1" in alike.stdout
        assert "r1: OSPF 2/2 full, BGP 2/3 established" in alike.stdout
        assert "routing compared with production's own `show` output: 4/4 same" in \
            alike.stdout
        assert "routing has not fully converged, as in production" in alike.stdout
    finally:
        vtysh(production.lab, "r1", "configure terminal\nrouter bgp 65000\n"
              "no neighbor 10.255.0.3 shutdown\nend")
        down = twin(tmp_path, "down", "twdiff")
    assert down.returncode == 0, down.stderr
    assert plan is not None
    assert leftovers(plan) == []
    assert poll(lambda: bgp_up(production.lab, "r3", "10.255.0.1"), bool)
