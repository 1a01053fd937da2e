"""Hostile topologies against real labs: sysctls stay in the node's namespace, files outside
the lab need the flag, secrets stay root-only, subnets in use are refused, and a `down`
without state removes nothing another lab owns. Labs thsys/thglob/thnet* on 172.20.71-73."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runner.lab import hostcheck, rules
from runner.lab.plan import LabPlan, make_plan
from runner.lab.system import link_exists, netns_list
from runner.lab.topology import FileAccess, load_topology
from tests.lab.helpers import leftovers, plan_of, runner

HOST_KEYS = ("net.core.somaxconn", "net.ipv4.tcp_keepalive_time")


def host_value(key: str) -> str:
    return Path("/proc/sys/" + key.replace(".", "/")).read_text(encoding="utf-8").strip()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def sysctl_lab(tmp_path: Path) -> Path:
    """r1 (FRR) and h1 (host) with sysctls; r1's config lives outside the lab's directory
    and has a line FRR rejects, holding something that looks like a secret."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "r1.conf").write_text(
        "hostname r1\nbogus-command hunter2-secret\ninterface eth1\n ip address 10.71.0.1/24\n"
        "exit\n", encoding="utf-8")
    (tmp_path / "lab").mkdir()
    path = tmp_path / "lab" / "thsys.clab.yml"
    path.write_text("""\
name: thsys
mgmt: {ipv4-subnet: 172.20.71.0/24}
topology:
  nodes:
    r1:
      kind: frr
      startup-config: ../outside/r1.conf
      sysctls: {net.core.somaxconn: "1234", net.ipv4.conf.eth1.rp_filter: "2"}
    h1:
      kind: linux
      image: alpine:3
      sysctls: {net.ipv4.tcp_keepalive_time: "4321"}
  links:
    - endpoints: [r1:eth1, h1:eth1]
""", encoding="utf-8")
    return path


def test_sysctls_change_only_the_namespace_and_secrets_stay_root_only(tmp_path: Path) -> None:
    topo = sysctl_lab(tmp_path)
    plan = plan_of_outside(topo)
    before = {key: host_value(key) for key in HOST_KEYS}
    namespaces = netns_list()
    refused = runner("lab", "up", str(topo), check=False)
    assert refused.returncode == 2
    assert f"{topo}:7: topology.nodes.r1.startup-config: startup-config file " \
        "'../outside/r1.conf' (resolves to" in refused.stderr
    assert netns_list() == namespaces and not Path(plan.lab_dir).exists()
    try:
        up = runner("lab", "up", "--allow-outside-files", str(topo))
        # FRR's rejection is counted, never quoted: the line might be anyone's secret.
        assert "router r1: FRR rejected 1 line(s) of its startup config" in up.stderr
        assert "hunter2" not in up.stdout + up.stderr

        def inside(node: str, key: str) -> str:
            return runner("lab", "exec", "--lab", str(topo), node, "--shell", "--", "sysctl",
                          "-n", key).stdout.strip()

        assert inside("r1", "net.core.somaxconn") == "1234"
        assert inside("r1", "net.ipv4.conf.eth1.rp_filter") == "2"
        assert inside("h1", "net.ipv4.tcp_keepalive_time") == "4321"
        assert inside("h1", "net.core.somaxconn") == before["net.core.somaxconn"]
        assert {key: host_value(key) for key in HOST_KEYS} == before

        lab_dir = Path(plan.lab_dir)
        boot_log = lab_dir / "nodes" / "r1" / "log" / "vtysh-boot.log"
        assert "hunter2" in boot_log.read_text(encoding="utf-8")  # kept, for root only
        assert (mode(lab_dir), mode(boot_log.parent), mode(boot_log)) == (0o700, 0o700, 0o600)
        assert mode(lab_dir / "inventory" / "hosts.yaml") == 0o600
        # Clients still log in (sshd, the vtysh shell) with the lab directory root-only.
        ssh = subprocess.run(
            ["ssh", "-F", str(lab_dir / "ssh_config"), "-o", "BatchMode=yes", "-o",
             "ConnectTimeout=10", "r1", "show running-config"],
            capture_output=True, text=True, timeout=60, check=False)
        assert "hostname r1" in ssh.stdout, ssh.stderr
    finally:
        runner("lab", "down", str(topo), check=False)
    assert leftovers(plan) == []
    assert {key: host_value(key) for key in HOST_KEYS} == before


def plan_of_outside(topo: Path) -> LabPlan:
    return make_plan(load_topology(topo, files=FileAccess(allow_outside=True)))


@pytest.mark.parametrize(("key", "problem"), [
    ("net.core.netdev_max_backlog", "is host-global on this kernel (a fresh network namespace "
     "has no writable /proc/sys/net/core/netdev_max_backlog); setting it would fail or change "
     "this machine's own value"),
    ("net.ipv4.no_such_knob", "does not exist on this kernel (no "
     "/proc/sys/net/ipv4/no_such_knob)"),
])
def test_sysctl_not_in_a_namespace_is_refused_before_anything_exists(
        tmp_path: Path, key: str, problem: str) -> None:
    assert hostcheck.unnamespaced([key, "net.core.somaxconn",
                                   "net.ipv4.conf.eth1.rp_filter"]) == {key}
    topo = tmp_path / "thglob.clab.yml"
    topo.write_text(f"""\
name: thglob
mgmt: {{ipv4-subnet: 172.20.71.0/24}}
topology:
  nodes:
    h1:
      kind: linux
      sysctls:
        net.ipv4.ip_forward: 1
        {key}: 5000
""", encoding="utf-8")
    before = netns_list()
    value = host_value(key) if Path(rules.sysctl_probe_path(key)).exists() else None
    proc = runner("lab", "up", str(topo), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {topo}:9: topology.nodes.h1.sysctls.{key}: node h1: sysctl {key} {problem}"]
    assert netns_list() == before
    assert value is None or host_value(key) == value
    assert not (tmp_path / "clab-thglob").exists()


def hosts_lab(directory: Path, name: str, subnet: str, bridge: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.clab.yml"
    mgmt = f"{{ipv4-subnet: {subnet}{', bridge: ' + bridge if bridge else ''}}}"
    path.write_text(f"name: {name}\nmgmt: {mgmt}\ntopology:\n  nodes:\n"
                    "    h1: {kind: linux}\n    h2: {kind: linux}\n", encoding="utf-8")
    return path


def test_subnets_in_use_and_down_without_state(tmp_path: Path) -> None:
    first = hosts_lab(tmp_path / "a", "thnet1", "172.20.72.0/24")
    second = hosts_lab(tmp_path / "b", "thnet2", "172.20.73.0/24")
    plans = [plan_of(first), plan_of(second)]
    try:
        runner("lab", "up", str(first))
        runner("lab", "up", str(second))  # two labs, distinct subnets, at once
        before = netns_list()

        overlapping = hosts_lab(tmp_path / "c", "thnet3", "172.20.72.0/25")
        proc = runner("lab", "up", str(overlapping), check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: {overlapping}:2: mgmt.ipv4-subnet: management subnet 172.20.72.0/25 "
            f"overlaps the route 172.20.72.0/24 on {plans[0].bridge} of this host; choose a "
            "free private subnet (`ip route` lists those in use)"]
        assert netns_list() == before and leftovers(plan_of(overlapping)) == []

        # Its own bridge's route is no conflict when the lab is brought up again.
        runner("lab", "up", "--reconfigure", str(first))

        # The same lab name in another directory: same namespace and bridge names, but
        # `down` of that file (not up) must not touch the lab that is up; nor may a file
        # naming that lab's bridge as its own.
        copy = hosts_lab(tmp_path / "copy", "thnet1", "172.20.72.0/24")
        thief = hosts_lab(tmp_path / "d", "thnet4", "172.20.72.0/24", bridge=plans[0].bridge)
        for other in (copy, thief):
            out = runner("lab", "down", str(other))
            assert "is not up; nothing left to remove" in out.stdout
        assert {n.netns for n in plans[0].nodes.values()} <= netns_list()
        assert link_exists(plans[0].bridge)
        assert all(n["running"] for n in status_nodes(first))
    finally:
        for topo in (first, second):
            runner("lab", "down", str(topo), check=False)
    for plan in plans:
        assert leftovers(plan) == []


def status_nodes(topo: Path) -> list[dict[str, object]]:
    data = json.loads(runner("lab", "status", "--json", str(topo)).stdout)
    nodes: list[dict[str, object]] = data[0]["nodes"]
    return nodes


@pytest.fixture(autouse=True)
def _no_leftover_labs_of_ours() -> None:
    """These names are this module's alone: none may exist before a test."""
    ours = {ns for ns in netns_list() if ns.startswith(("clab-thsys-", "clab-thglob-",
                                                        "clab-thnet"))}
    assert not ours, f"leftovers from an earlier run: {sorted(ours)}"


def test_exec_commands_configure_the_node_and_cannot_write_the_host(tmp_path: Path) -> None:
    probe = Path("/root/runner-exec-probe")
    probe.unlink(missing_ok=True)
    path = tmp_path / "thexec.clab.yml"
    path.write_text(f"""\
name: thexec
mgmt: {{ipv4-subnet: 172.20.74.0/24}}
topology:
  nodes:
    h1:
      kind: linux
      image: alpine:3
      exec:
        - ip addr add 10.74.0.10/24 dev eth1
        - touch {probe}
        - echo hostile >> /etc/hosts
        - sysctl -w vm.stat_interval=7
  links:
    - endpoints: [h1:eth1, h1:eth2]
""", encoding="utf-8")
    hosts, interval = Path("/etc/hosts").read_text(), host_value("vm.stat_interval")
    plan = plan_of(path)
    try:
        up = runner("lab", "up", str(path))
        assert up.returncode == 0, up.stderr
        # the network half of exec worked; the host half did not
        addresses = runner("lab", "exec", "--lab", str(path), "h1", "--", "ip", "-4", "addr",
                           "show", "eth1").stdout
        assert "10.74.0.10/24" in addresses
        assert not probe.exists()
        assert Path("/etc/hosts").read_text() == hosts
        assert host_value("vm.stat_interval") == interval
        assert "exec 'touch /root/runner-exec-probe' exited" in up.stderr
    finally:
        runner("lab", "down", str(path), check=False)
        probe.unlink(missing_ok=True)
    assert leftovers(plan) == []
