"""`runner run` against the practice lab, with both drivers: parsed facts match the routers,
dry-run changes nothing, real runs change once, backups commit only changes, faults are
classified while the other devices succeed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.base import ROOT
from tests.support.jobs import run_job, shipped_job
from tests.support.lab import DRIVERS, RunningLab, runner, step, vtysh

NEIGHBORS = {"r1": {"10.255.0.2", "10.255.0.4"}, "r2": {"10.255.0.1", "10.255.0.3"},
             "r3": {"10.255.0.2", "10.255.0.4"}, "r4": {"10.255.0.1", "10.255.0.3"}}


@pytest.mark.parametrize("driver", DRIVERS)
def test_facts_parsed_fields_match_the_routers(practice_lab: RunningLab, tmp_path: Path,
                                               driver: str) -> None:
    job = shipped_job(tmp_path, "facts.yml", driver=driver)
    result = run_job(tmp_path, job, practice_lab.lab_dir / "inventory", expect=0)
    assert result["summary"]["ok"] == 4
    for device in result["devices"]:
        node = device["host"]
        assert device["status"] == "ok" and device["driver"] == driver
        version = step(device, "version")["parsed"][0]
        real = vtysh(practice_lab, node, "show", "version").split()
        assert version["version"] == real[1] and version["hostname"] == node
        interfaces = {row["interface"]: row for row in step(device, "interfaces")["parsed"]}
        addrs = runner("lab", "exec", "--lab", str(practice_lab.topology), "--shell", node,
                       "--", "ip", "-4", "-br", "addr").stdout
        for line in addrs.splitlines():
            name, _, *kernel = line.split()
            assert interfaces[name.split("@")[0]]["address"] in kernel
        assert interfaces["eth0"]["address"] == f"{practice_lab.ip(node)}/24"
        ospf = step(device, "ospf-neighbors")["parsed"]["neighbors"]
        assert set(ospf) == NEIGHBORS[node]
        bgp = step(device, "bgp-summary")["parsed"]["ipv4Unicast"]["peers"]
        assert {p["state"] for p in bgp.values()} == {"Established"} and len(bgp) == 3


def changed_lines(diff: str) -> set[str]:
    """A diff's added and removed config lines, separators aside."""
    return {line for line in diff.splitlines() if line[:1] in "+-"
            and not line.startswith(("+++", "---")) and line[1:].strip() not in ("!", "exit")}


@pytest.mark.parametrize("driver", DRIVERS)
def test_dry_run_then_change_then_no_change(practice_lab: RunningLab, tmp_path: Path,
                                            driver: str) -> None:
    site = f"{driver}-{uuid.uuid4().hex[:6]}"
    base = yaml.safe_load((ROOT / "jobs" / "bgp-descriptions.yml").read_text())
    job = shipped_job(tmp_path, "bgp-descriptions.yml", driver=driver,
                   vars={**base["vars"], "site": site})
    inventory = practice_lab.lab_dir / "inventory"

    dry = run_job(tmp_path, job, inventory, "--dry-run", expect=0)
    assert dry["dry_run"] is True
    previews = {}
    for device in dry["devices"]:
        diff = step(device, "descriptions")["diff"]
        assert f"+ description {device['host']} loopback, {site}" in diff
        assert device["status"] == "changed"
        assert step(device, "check")["not_run"] == "not evaluated (dry run)"
        previews[device["host"]] = changed_lines(diff)
    for node in ("r1", "r2", "r3", "r4"):  # read in a separate session: nothing was sent
        assert site not in vtysh(practice_lab, node, "show", "running-config")

    real = run_job(tmp_path, job, inventory, expect=0)
    assert {d["status"] for d in real["devices"]} == {"changed"}
    for device in real["devices"]:
        node = device["host"]
        diff = step(device, "descriptions")["diff"]
        assert f"+ description {node} loopback, {site}" in diff
        assert changed_lines(diff) == previews[node]  # the preview was the real diff
        running = vtysh(practice_lab, node, "show", "running-config")
        assert f" description {node} loopback, {site}" in running
        saved = practice_lab.lab_dir / "nodes" / node / "etc-frr" / "frr.conf"
        assert site in saved.read_text(encoding="utf-8")  # save: true wrote memory
        peers = step(device, "check")["parsed"]
        others = {a for a, n in base["vars"]["bgp_peers"].items() if n != node}
        assert {p: peers[p]["nbrDesc"] for p in others} == \
            {a: base["vars"]["bgp_peers"][a] for a in others}

    again = run_job(tmp_path, job, inventory, expect=0)
    assert {d["status"] for d in again["devices"]} == {"ok"}
    assert all(not step(d, "descriptions")["changed"] for d in again["devices"])

    # the results database kept all three runs, with every device
    shown = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         "show", real["run_id"][:8], "--json"], capture_output=True, text=True,
        check=True).stdout)
    assert shown["run_id"] == real["run_id"] and shown["status"] == "ok"
    assert [d["status"] for d in shown["devices"]] == [d["status"] for d in real["devices"]]
    history = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         "history"], capture_output=True, text=True, check=True).stdout
    for run in (dry, real, again):
        assert run["run_id"] in history


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("driver", DRIVERS)
def test_backups_commit_only_what_changed(practice_lab: RunningLab, tmp_path: Path,
                                          driver: str) -> None:
    backups = tmp_path / "backups"
    job = shipped_job(tmp_path, "backup.yml", driver=driver,
                   steps=[{"backup": {"dir": str(backups), "volatile": ["^frr version .*$"]}}])
    inventory = practice_lab.lab_dir / "inventory"

    first = run_job(tmp_path, job, inventory, expect=0)
    assert first["backup_commit"]
    assert git(backups, "rev-list", "--count", "HEAD").strip() == "1"
    assert sorted(p.name for p in backups.glob("*.cfg")) == [f"r{i}.cfg" for i in range(1, 5)]
    assert all(step(d, "backup")["changed"] for d in first["devices"])
    # a device whose backup changed is `changed`, in the run's output and in the store
    assert {(d["status"], d["changed"]) for d in first["devices"]} == {("changed", True)}
    assert {k: n for k, n in first["summary"].items() if n} == {"changed": 4}
    stored = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         "show", first["run_id"], "--json"], capture_output=True, text=True,
        check=True).stdout)
    assert {(d["status"], d["changed"]) for d in stored["devices"]} == {("changed", True)}

    second = run_job(tmp_path, job, inventory, expect=0)
    assert second["backup_commit"] is None
    assert git(backups, "rev-list", "--count", "HEAD").strip() == "1"
    assert not any(step(d, "backup")["changed"] for d in second["devices"])
    assert {(d["status"], d["changed"]) for d in second["devices"]} == {("ok", False)}

    secret = f"Bgp-{uuid.uuid4().hex[:8]}"
    vtysh(practice_lab, "r2", "configure terminal\nrouter bgp 65000\n"
          f"neighbor 10.255.0.1 password {secret}\nend")
    try:
        third = run_job(tmp_path, job, inventory, expect=0)
        assert third["backup_commit"]
        assert git(backups, "rev-list", "--count", "HEAD").strip() == "2"
        assert git(backups, "show", "--name-only", "--format=", "HEAD").split() == ["r2.cfg"]
        assert [d["host"] for d in third["devices"] if step(d, "backup")["changed"]] == ["r2"]
        assert [d["host"] for d in third["devices"] if d["status"] == "changed"] == ["r2"]
        r2 = (backups / "r2.cfg").read_text(encoding="utf-8")
        assert "neighbor 10.255.0.1 password ********" in r2
        assert secret not in r2 and secret not in json.dumps(third)
        assert secret.encode() not in (tmp_path / "runner.db").read_bytes()
    finally:
        vtysh(practice_lab, "r2", "configure terminal\nrouter bgp 65000\n"
              "no neighbor 10.255.0.1 password\nend")


@pytest.mark.parametrize("driver", DRIVERS)
def test_faults_are_classified_and_the_others_succeed(practice_lab: RunningLab, tmp_path: Path,
                                                     driver: str) -> None:
    inv = tmp_path / "inventory"
    inv.mkdir()
    src = practice_lab.lab_dir / "inventory"
    for name in ("groups.yaml", "defaults.yaml"):
        (inv / name).write_text((src / name).read_text(encoding="utf-8"), encoding="utf-8")
    hosts = yaml.safe_load((src / "hosts.yaml").read_text(encoding="utf-8"))
    wrong = f"Wrong-{uuid.uuid4().hex[:8]}"
    subnet = practice_lab.ip("r1").rsplit(".", 1)[0]
    hosts = {
        "r1": hosts["r1"], "r3": hosts["r3"], "r4": hosts["r4"],
        "badpw": {**hosts["r2"], "password": wrong},
        "ghost": {**hosts["r2"], "hostname": f"{subnet}.99"},  # nothing answers there
    }
    (inv / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False), encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "fault.j2").write_text(
        "interface lo\n description fault-test\nexit\n"
        "{% if host.name == 'r3' %}this is not a command\n{% endif %}", encoding="utf-8")
    job = tmp_path / "faults.yml"
    job.write_text(yaml.safe_dump({
        "name": "faults", "driver": driver, "timeouts": {"connect": 5, "command": 20},
        "retries": {"count": 1, "backoff": 0.2},
        "steps": [{"config": {"template": "fault.j2"}}, {"command": "show version"}]}),
        encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(job), "-i", str(inv), "--templates", str(templates), "--json"],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    devices = {d["host"]: d for d in result["devices"]}
    assert list(devices) == ["r1", "r3", "r4", "badpw", "ghost"]
    for ok in ("r1", "r4"):
        assert devices[ok]["status"] in ("ok", "changed"), devices[ok]
        assert "FRRouting" in devices[ok]["steps"][1]["output"]
    assert devices["r3"]["status"] == "failed"
    assert devices["r3"]["error_class"] == "CommandRejected"
    assert "% Unknown command" in devices["r3"]["error"]
    assert len(devices["r3"]["steps"]) == 1  # stopped at the rejected step
    assert devices["badpw"]["status"] == "auth_failed"
    assert devices["badpw"]["error_class"] == "AuthFailed"
    assert devices["badpw"]["attempts"] == 1  # auth failures are not retried
    assert devices["ghost"]["status"] == "unreachable"
    assert devices["ghost"]["error_class"] == "ConnectFailed"
    assert devices["ghost"]["attempts"] == 2  # connection failures are
    assert result["summary"] == {"ok": result["summary"]["ok"],
                                 "changed": result["summary"]["changed"], "failed": 1,
                                 "unreachable": 1, "auth_failed": 1, "timed_out": 0,
                                 "skipped": 0, "rolled_back": 0, "non_compliant": 0}
    for text in (proc.stdout, proc.stderr, (tmp_path / "r.db").read_bytes().decode(
            errors="replace")):
        assert wrong not in text


@pytest.mark.parametrize("driver", DRIVERS)
def test_later_step_uses_fields_parsed_by_an_earlier_one(practice_lab: RunningLab,
                                                        tmp_path: Path, driver: str) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "from_facts.j2").write_text(
        "interface lo\n"
        " description {{ host.name }} runs FRR {{ steps.version.parsed[0].version }} "
        "{{ tag }}\nexit\n", encoding="utf-8")
    tag = uuid.uuid4().hex[:6]
    job = tmp_path / "chain.yml"
    job.write_text(yaml.safe_dump({
        "name": "chain", "driver": driver, "targets": {"hosts": ["r1", "r4"]},
        "vars": {"tag": tag},
        "steps": [{"name": "version", "command": "show version",
                   "parse": {"ttp": "FRRouting {{ version }} ({{ hostname }}) on {{ os }}"}},
                  {"config": {"template": "from_facts.j2"}}]}), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(job), "-i", str(practice_lab.lab_dir / "inventory"), "--templates",
         str(templates), "--json"], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    version = vtysh(practice_lab, "r1", "show", "version").split()[1]
    for node in ("r1", "r4"):
        running = vtysh(practice_lab, node, "show", "running-config")
        assert f" description {node} runs FRR {version} {tag}" in running
