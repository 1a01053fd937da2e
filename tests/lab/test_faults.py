"""Faults, capture, graph and save on real routers: what a person breaks shows in status
and in the routing, mends when asked, and `lab down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.lab.capture import PCAP_MAGIC
from runner.lab.converge import routing
from runner.lab.system import netns_pids, process_name
from tests.support.lab import (
    RunningLab,
    lab_pids,
    leftovers,
    plan_of,
    poll,
    practice_copy,
    runner,
    status,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with practice_copy(tmp_path_factory.mktemp("rgfault"), "rgfault", 63) as running:
        yield running


def rl(lab: RunningLab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`runner lab COMMAND --lab <this lab> ARGS`."""
    return runner("lab", args[0], "--lab", lab.plan.lab, *args[1:], check=check)


def ospf_states(lab: RunningLab, node: str) -> dict[str, str]:
    return routing(lab.labs, lab.state, node).ospf


def full_with(lab: RunningLab, node: str, rid: str) -> bool:
    return any(k.startswith(f"{rid}@") and v.startswith("Full")
               for k, v in ospf_states(lab, node).items())


def oper(lab: RunningLab, node: str, iface: str) -> dict[str, Any]:
    out = subprocess.run(["ip", "-n", lab.plan.nodes[node].netns, "-j", "link", "show", iface],
                         capture_output=True, text=True, check=True).stdout
    entry: dict[str, Any] = json.loads(out)[0]
    return entry


def kernel_has_netem() -> bool:
    ns = f"rgprobe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                               "root", "netem", "delay", "1ms"],
                              capture_output=True, check=False).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_link_down_is_seen_by_the_peer_and_shown_until_up(lab: RunningLab) -> None:
    runner("lab", "link", lab.plan.lab, "r1:eth1", "down")
    try:
        st = status(lab)
        assert st["faults"]["links_down"] == ["r1:eth1"]
        assert "NO-CARRIER" in oper(lab, "r2", "eth1")["flags"]  # the cable is "pulled"
        text = runner("lab", "status", lab.plan.lab).stdout
        assert "link r1:eth1 down" in text
        gone = poll(lambda: full_with(lab, "r2", "10.255.0.1"), lambda full: not full)
        assert not gone
    finally:
        runner("lab", "link", lab.plan.lab, "r1:eth1", "up")
    assert status(lab)["faults"]["links_down"] == []
    assert poll(lambda: full_with(lab, "r2", "10.255.0.1"), bool)


def test_link_of_an_unknown_interface_is_refused(lab: RunningLab) -> None:
    proc = runner("lab", "link", lab.plan.lab, "r1:eth9", "down", check=False)
    assert proc.returncode == 1
    assert "r1 has no link interface 'eth9' (its links: eth1, eth2, eth3)" in proc.stderr
    proc = runner("lab", "link", lab.plan.lab, "r1:eth1", "sideways", check=False)
    assert proc.returncode == 2


def test_netem_loss_and_rate_then_clear(lab: RunningLab) -> None:
    rl(lab, "netem", "r1:eth1", "--loss", "100%", "--rate", "1mbit")
    try:
        st = status(lab)
        spec = st["faults"]["netem"]["r1:eth1"]
        assert spec["loss"] == 100 and spec["rate"] == "1mbit"
        assert "netem on r1:eth1: loss 100%, rate 1mbit" in runner(
            "lab", "status", lab.plan.lab).stdout
        qdisc = subprocess.run(["ip", "netns", "exec", lab.plan.nodes["r1"].netns, "tc",
                                "qdisc", "show", "dev", "eth1"], capture_output=True,
                               text=True, check=True).stdout
        assert "1Mbit" in qdisc, qdisc
        # r1 -> r2 dropped on r1's egress: no answers
        ping = rl(lab, "exec", "r1", "--shell", "--", "ping", "-c", "3", "-i", "0.2", "-W",
                  "1", "10.0.12.1", check=False)
        assert ping.returncode == 1 and "100% packet loss" in ping.stdout
    finally:
        rl(lab, "netem", "r1:eth1", "--clear")
    assert status(lab)["faults"]["netem"] == {}
    ping = rl(lab, "exec", "r1", "--shell", "--", "ping", "-c", "3", "-i", "0.2", "-W", "1",
              "10.0.12.1")
    assert " 0% packet loss" in ping.stdout


def test_netem_delay_is_set_or_refused_with_the_reason(lab: RunningLab) -> None:
    proc = rl(lab, "netem", "r1:eth2", "--delay", "50ms", "--jitter", "5ms", check=False)
    try:
        if kernel_has_netem():
            assert proc.returncode == 0, proc.stderr
            qdisc = subprocess.run(["ip", "netns", "exec", lab.plan.nodes["r1"].netns, "tc",
                                    "qdisc", "show", "dev", "eth2"], capture_output=True,
                                   text=True, check=True).stdout
            assert "netem" in qdisc and "delay 50ms" in qdisc and "5ms" in qdisc, qdisc
        else:
            assert proc.returncode == 1
            assert "CONFIG_NET_SCH_NETEM" in proc.stderr and "--loss and --rate" in proc.stderr
            assert status(lab)["faults"]["netem"] == {}
    finally:
        rl(lab, "netem", "r1:eth2", "--clear")
    for bad, why in ((["--delay", "fast"], "not a duration"),
                     (["--jitter", "5ms"], "--jitter needs --delay"),
                     (["--loss", "140%"], "percentage from 0 to 100"),
                     (["--rate", "10 mbit"], "not a rate")):
        proc = rl(lab, "netem", "r1:eth2", *bad, check=False)
        assert proc.returncode == 1 and why in proc.stderr, proc.stderr


def test_stopped_daemon_stays_down_until_started(lab: RunningLab) -> None:
    rl(lab, "stop", "r2", "ospfd")
    try:
        node = next(n for n in status(lab)["nodes"] if n["name"] == "r2")
        assert node["stopped"] == ["ospfd"] and node["daemons"]["ospfd"] is False
        assert node["daemons"]["watchfrr"] is True
        assert runner("lab", "status", lab.plan.lab).returncode == 0  # on purpose: healthy
        # watchfrr now supervises the others only, so it will not bring ospfd back
        watchfrr = [p for p in netns_pids(lab.plan.nodes["r2"].netns)
                    if process_name(p) == "watchfrr"]
        assert len(watchfrr) == 1
        cmdline = Path(f"/proc/{watchfrr[0]}/cmdline").read_bytes().split(b"\0")
        assert b"ospfd" not in cmdline and b"bgpd" in cmdline
        assert not poll(lambda: full_with(lab, "r1", "10.255.0.2"), lambda full: not full)
    finally:
        rl(lab, "start", "r2", "ospfd")
    node = next(n for n in status(lab)["nodes"] if n["name"] == "r2")
    assert node["stopped"] == [] and all(node["daemons"].values())
    assert poll(lambda: full_with(lab, "r1", "10.255.0.2"), bool)


def test_stopping_a_whole_router_powers_it_off_until_started(lab: RunningLab) -> None:
    rl(lab, "stop", "r4")
    try:
        node = next(n for n in status(lab)["nodes"] if n["name"] == "r4")
        assert node["stopped"] == ["router"] and node["ssh"] is False
        assert not any(node["daemons"].values())
        assert "STOPPED" in runner("lab", "status", lab.plan.lab).stdout
        assert "NO-CARRIER" in oper(lab, "r1", "eth2")["flags"]
        proc = rl(lab, "exec", "r4", "--", "show", "version", check=False)
        assert proc.returncode == 1 and "runner lab start r4" in proc.stderr
    finally:
        rl(lab, "start", "r4")
    node = next(n for n in status(lab)["nodes"] if n["name"] == "r4")
    assert node["stopped"] == [] and all(node["daemons"].values()) and node["ssh"] is True
    assert poll(lambda: full_with(lab, "r1", "10.255.0.4"), bool)
    assert "hostname r4" in rl(lab, "exec", "r4", "--", "show", "running-config").stdout


def test_only_routers_have_daemons_to_stop(lab: RunningLab) -> None:
    proc = rl(lab, "stop", "h1", check=False)
    assert proc.returncode == 1 and "h1 is a host, not a router" in proc.stderr
    proc = rl(lab, "stop", "r1", "isisd", check=False)
    assert proc.returncode == 1 and "r1 runs no 'isisd'" in proc.stderr


def test_capture_writes_a_pcap_and_streams_one_to_a_pipe(lab: RunningLab,
                                                        tmp_path: Path) -> None:
    pcap = tmp_path / "r1-eth1.pcap"
    pinger = subprocess.Popen(["ip", "netns", "exec", lab.plan.nodes["r1"].netns, "ping",
                               "-i", "0.2", "10.0.12.1"], stdout=subprocess.DEVNULL)
    try:
        rl(lab, "capture", "r1:eth1", "--count", "6", "-w", str(pcap), "icmp")
        piped = subprocess.run([sys.executable, "-m", "runner", "lab", "capture", "r1:eth1",
                                "-c", "2", "--lab", lab.plan.lab], capture_output=True,
                               timeout=60, check=True)
    finally:
        pinger.kill()
        pinger.wait()
    assert pcap.read_bytes()[:4] in PCAP_MAGIC
    decoded = subprocess.run(["tcpdump", "-r", str(pcap), "-n"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert len(decoded) == 6 and all("ICMP" in line for line in decoded), decoded
    assert any("10.0.12.0 > 10.0.12.1: ICMP echo request" in line for line in decoded)
    assert piped.stdout[:4] in PCAP_MAGIC  # a pcap on the pipe, for `| wireshark -k -i -`
    assert b"2 packets captured" in piped.stderr


def test_graph_shows_interfaces_addresses_and_live_state(lab: RunningLab,
                                                         tmp_path: Path) -> None:
    runner("lab", "wait", lab.plan.lab, "--timeout", "120")  # every session up first
    runner("lab", "link", lab.plan.lab, "r3:eth3", "down")
    try:
        dot = runner("lab", "graph", str(lab.topology)).stdout
        mermaid = runner("lab", "graph", lab.plan.lab, "--format", "mermaid").stdout
    finally:
        runner("lab", "link", lab.plan.lab, "r3:eth3", "up")
    assert dot.startswith(f'graph "{lab.plan.lab}"')
    edge = next(ln for ln in dot.splitlines() if '"r1" -- "r2" [' in ln
                and "taillabel" in ln)
    assert "eth1\\n10.0.12.0/31" in edge and "eth1\\n10.0.12.1/31" in edge
    assert "#2e7d32" in edge  # up and OSPF Full: green
    down = next(ln for ln in dot.splitlines() if '"r3" -- "h2" [' in ln)
    assert "style=dashed" in down and "#c62828" in down
    assert '"r1" -- "r3" [style=dotted, color="#2e7d32"' in dot  # iBGP session, by loopback
    # each node drawn as its kind says: router r1 round, host h1 a box
    assert mermaid.startswith("graph LR") and '(("r1"))' in mermaid and '["h1"]' in mermaid
    assert '|"eth3 10.3.3.1/24 -- eth1 10.3.3.10/24"|' in mermaid
    svg = tmp_path / "lab.svg"
    runner("lab", "graph", str(lab.topology), "-o", str(svg))
    assert b"<svg" in svg.read_bytes()[:1000] and b"10.0.23.0/31" in svg.read_bytes()
    png = tmp_path / "lab.png"
    runner("lab", "graph", str(lab.topology), "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_of_a_topology_not_up_uses_its_files(tmp_path: Path) -> None:
    topo = tmp_path / "pair.clab.yml"
    (tmp_path / "r1.conf").write_text("interface eth1\n ip address 10.9.0.0/31\nexit\n")
    topo.write_text(textwrap.dedent("""\
        name: rgnotup
        topology:
          nodes:
            r1: {kind: frr, startup-config: r1.conf}
            h1: {kind: linux, exec: ["ip addr add 10.9.0.1/31 dev eth1"]}
          links:
            - endpoints: ["r1:eth1", "h1:eth1"]
        """))
    dot = runner("lab", "graph", str(topo)).stdout
    assert "not up" in dot
    assert 'taillabel="eth1\\n10.9.0.0/31", headlabel="eth1\\n10.9.0.1/31"]' in dot


SAVE_TOPOLOGY = """\
name: rgsave
mgmt: {ipv4-subnet: 172.20.64.0/24}
topology:
  nodes:
    a:
      kind: frr
      binds: [a/frr.conf:/etc/frr/frr.conf]
    b:
      kind: frr
      startup-config: b.conf
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"""


def test_save_keeps_a_change_across_down_and_up_beside_another_lab(
        lab: RunningLab, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "frr.conf").write_text("hostname a\ninterface eth1\n ip address "
                                             "10.8.0.0/31\nexit\n")
    (tmp_path / "b.conf").write_text("hostname b\ninterface eth1\n ip address 10.8.0.1/31\n"
                                     "exit\n")
    topo = tmp_path / "rgsave.clab.yml"
    topo.write_text(SAVE_TOPOLOGY)
    plan = plan_of(topo)
    pids: list[int] = []
    try:
        runner("lab", "up", str(topo))
        # two labs up at once, each on its own management subnet
        both = {s["lab"] for s in json.loads(runner("lab", "status", "--json").stdout)}
        assert {"rgsave", lab.plan.lab} <= both
        assert plan.nodes["a"].mgmt_ip.startswith("172.20.64.")
        runner("lab", "exec", "--lab", "rgsave", "a", "--shell", "--", "vtysh", "-c",
               "configure terminal", "-c", "interface eth1", "-c", "description kept-by-save")
        runner("lab", "exec", "--lab", "rgsave", "b", "--shell", "--", "vtysh", "-c",
               "configure terminal", "-c", "ip route 192.0.2.0/24 Null0")
        runner("lab", "stop", "b", "bgpd", "--lab", "rgsave")  # a fault `down` must clean
        out = runner("lab", "save", str(topo)).stdout
        assert f"a: {tmp_path / 'a' / 'frr.conf'}" in out and f"b: {tmp_path / 'b.conf'}" in out
        assert "description kept-by-save" in (tmp_path / "a" / "frr.conf").read_text()
        assert "ip route 192.0.2.0/24 Null0" in (tmp_path / "b.conf").read_text()
        other = tmp_path / "elsewhere"
        runner("lab", "save", "rgsave", "--to", str(other))
        assert "description kept-by-save" in (other / "a" / "frr.conf").read_text()
        pids = lab_pids(plan)
        runner("lab", "down", str(topo))
        assert leftovers(plan, pids) == []
        runner("lab", "up", str(topo))
        assert status_of("rgsave")["faults"] == {"links_down": [], "netem": {}, "stopped": {}}
        conf_a = runner("lab", "exec", "--lab", "rgsave", "a", "--", "show",
                        "running-config").stdout
        conf_b = runner("lab", "exec", "--lab", "rgsave", "b", "--", "show",
                        "running-config").stdout
        assert "description kept-by-save" in conf_a
        assert "ip route 192.0.2.0/24 Null0" in conf_b
    finally:
        runner("lab", "down", str(topo), check=False)
    assert leftovers(plan) == []
    assert status(lab)["nodes"]  # the other lab is untouched


def status_of(name: str) -> dict[str, Any]:
    data = json.loads(runner("lab", "status", "--json", name).stdout)
    result: dict[str, Any] = data[0]
    return result
