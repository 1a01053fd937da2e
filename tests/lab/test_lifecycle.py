"""`lab up`/`down` leave nothing behind: after success, failure, interruption or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runner.lab.netns import wait_for
from runner.lab.system import netns_list
from tests.support.lab import lab_pids, leftovers, plan_of, remove_dead_runs_labs, runner


def small_lab(tmp_path: Path, name: str, octet: int, extra: str = "", host_exec: str = "")\
        -> Path:
    (tmp_path / "r1.conf").write_text(
        "hostname r1\ninterface eth1\n ip address 10.9.0.0/31\nexit\n", encoding="utf-8")
    path = tmp_path / f"{name}.clab.yml"
    path.write_text(f"""
name: {name}
mgmt: {{ipv4-subnet: 172.20.{octet}.0/24}}
topology:
  nodes:
    r1:
      kind: frr
      startup-config: r1.conf
{extra}
    r2: {{kind: linux, image: quay.io/frrouting/frr:8.4.4}}
    h1:
      kind: linux
      image: alpine:3
      exec: [{host_exec or "ip addr add 10.9.1.10/24 dev eth1"}]
  links:
    - endpoints: [r1:eth1, r2:eth1]
    - endpoints: [r2:eth2, h1:eth1]
""", encoding="utf-8")
    return path


def test_down_removes_everything_and_is_safe_twice(tmp_path: Path) -> None:
    topo = small_lab(tmp_path, "tlife", 41)
    plan = plan_of(topo)
    runner("lab", "up", str(topo))
    pids = lab_pids(plan)
    assert len(pids) >= 10  # watchfrr, zebra, staticd, bgpd, ospfd, sshd per router
    assert (Path(plan.lab_dir) / "inventory" / "hosts.yaml").exists()
    first = runner("lab", "down", str(topo))
    assert "removed" in first.stdout
    assert leftovers(plan, pids) == []
    second = runner("lab", "down", str(topo))
    assert "nothing left to remove" in second.stdout
    assert leftovers(plan, pids) == []


def test_failed_up_rolls_back(tmp_path: Path) -> None:
    # A value the kernel refuses makes r1's launcher fail after the network was built (an
    # unknown key is refused earlier, before anything is created).
    topo = small_lab(tmp_path, "tfail", 42,
                     extra="      sysctls: {net.ipv4.ip_forward: 'bogus'}")
    plan = plan_of(topo)
    proc = runner("lab", "up", str(topo), check=False)
    assert proc.returncode == 1
    assert "r1: launcher exited" in proc.stderr
    assert leftovers(plan) == []


def command_of(pid: str) -> str | None:
    """A process's command name, or None when it is gone (it may end at any moment)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def start_up_and_wait_for_exec_phase(topo: Path) -> subprocess.Popen[str]:
    """Start `lab up` on a lab whose host runs a long exec, and wait until it is in it."""
    plan = plan_of(topo)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "lab", "up", str(topo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def in_exec_phase() -> bool:
        out = subprocess.run(["ip", "netns", "pids", plan.nodes["h1"].netns],
                             capture_output=True, text=True, check=False).stdout.split()
        return any(command_of(p) == "sleep" for p in out)

    wait_for(in_exec_phase, 60, "the host's exec command to run")
    state = json.loads((Path(plan.lab_dir) / "runner-lab.json").read_text(encoding="utf-8"))
    assert state["phase"] == "deploying"
    return proc


def test_interrupted_up_rolls_back(tmp_path: Path) -> None:
    topo = small_lab(tmp_path, "tint", 43, host_exec="sleep 120")
    plan = plan_of(topo)
    proc = start_up_and_wait_for_exec_phase(topo)
    pids = lab_pids(plan)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert leftovers(plan, pids) == []


def test_killed_up_is_cleaned_by_down(tmp_path: Path) -> None:
    topo = small_lab(tmp_path, "tkill", 44, host_exec="sleep 120")
    plan = plan_of(topo)
    proc = start_up_and_wait_for_exec_phase(topo)
    pids = lab_pids(plan)
    proc.kill()
    proc.wait(timeout=30)
    assert leftovers(plan, pids) != []  # the kill left a half-built lab ...
    runner("lab", "down", str(topo))
    assert leftovers(plan, pids) == []  # ... that down removes


def test_bad_topology_touches_nothing(tmp_path: Path) -> None:
    before = netns_list()
    bad = tmp_path / "bad.clab.yml"
    bad.write_text("name: tbad\ntopology:\n  nodes:\n    r1: {kind: frr}\n    r2: {kind: frr}\n"
                   "  links:\n    - endpoints: [r1:eth1, r2:eth1, r2:eth2]\n", encoding="utf-8")
    proc = runner("lab", "up", str(bad), check=False)
    assert proc.returncode == 2
    assert "bad.clab.yml:7: topology.links[0].endpoints: a veth link has exactly two" \
        in proc.stderr
    assert netns_list() == before
    assert not (tmp_path / "clab-tbad").exists()


def test_subnet_in_use_is_refused_before_creating_anything(tmp_path: Path) -> None:
    first = small_lab(tmp_path, "tsub1", 45)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = small_lab(second_dir, "tsub2", 45)
    try:
        runner("lab", "up", str(first))
        before = netns_list()
        proc = runner("lab", "up", str(second), check=False)
        assert proc.returncode == 2
        assert ":3: mgmt.ipv4-subnet: management subnet 172.20.45.0/24 overlaps the route " \
            "172.20.45.0/24" in proc.stderr
        assert netns_list() == before
        assert leftovers(plan_of(second)) == []
    finally:
        runner("lab", "down", str(first), check=False)


@pytest.mark.parametrize("ref", ["file", "name"])
def test_status_and_down_by_name_or_file(tmp_path: Path, ref: str) -> None:
    topo = small_lab(tmp_path, f"tref{ref}", 46 if ref == "file" else 47)
    plan = plan_of(topo)
    key = str(topo) if ref == "file" else plan.lab
    try:
        runner("lab", "up", str(topo))
        st = json.loads(runner("lab", "status", "--json", key).stdout)
        assert [n["name"] for n in st[0]["nodes"]] == ["r1", "r2", "h1"]
        ping = runner("lab", "exec", "--lab", key, "h1", "--", "ip", "-br", "addr")
        assert "10.9.1.10/24" in ping.stdout
    finally:
        runner("lab", "down", key, check=False)
    assert leftovers(plan) == []


def test_a_lab_of_the_same_name_up_from_another_file_is_named(tmp_path: Path) -> None:
    # A run killed mid-test leaves its lab; the next run's `up` of that name must say so
    # (not only that the subnet is taken) and the lab fixtures take such labs down.
    run_dir = tmp_path / "pytest-1"
    run_dir.mkdir()
    first = small_lab(run_dir, "tsame", 48)
    other = tmp_path / "other"
    other.mkdir()
    second = small_lab(other, "tsame", 49)
    plan = plan_of(first)
    try:
        runner("lab", "up", str(first))
        proc = runner("lab", "up", str(second), check=False)
        assert proc.returncode != 0
        assert f"a lab named 'tsame' is already up from {first}; `runner lab down tsame` " \
            "removes it" in proc.stderr
        (run_dir / ".lock").write_text(f"{2 ** 22 + 1}\n", encoding="utf-8")  # above any pid_max
        for pid in lab_pids(plan):
            os.kill(pid, signal.SIGKILL)
        proc = runner("lab", "up", str(second), check=False)
        assert "(its processes have stopped: left by a run that died?)" in proc.stderr
        assert remove_dead_runs_labs(tmp_path) == ["tsame"]
        assert leftovers(plan) == []
        runner("lab", "up", str(second))
    finally:
        runner("lab", "down", str(second), check=False)
        runner("lab", "down", str(first), check=False)
    assert leftovers(plan_of(second)) == [] and leftovers(plan) == []
