"""The deployment plan: namespace, interface and address names for every node, as plain data."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import TopologyError
from runner.lab.schema import ALWAYS_ON_DAEMONS, FRR_DAEMONS
from runner.lab.topology import Node, Topology

# Started when the topology says nothing about daemons: zebra/staticd always, what the
# startup config uses, and bgpd + ospfd so a practice lab can add BGP/OSPF live.
BASELINE_DAEMONS = ("bgpd", "ospfd")
# `router bgp` -> bgpd and so on: what a startup config needs running to apply.
_CONFIG_DAEMONS = (
    (re.compile(r"^\s*router bgp\b", re.M), "bgpd"),
    (re.compile(r"^\s*router ospf\b(?!6)", re.M), "ospfd"),
    (re.compile(r"^\s*(router ospf6|ipv6 ospf6)\b", re.M), "ospf6d"),
    (re.compile(r"^\s*(router isis|ip router isis|ipv6 router isis)\b", re.M), "isisd"),
    (re.compile(r"^\s*router rip\b", re.M), "ripd"),
    (re.compile(r"^\s*router ripng\b", re.M), "ripngd"),
    (re.compile(r"^\s*(router pim|ip pim)\b", re.M), "pimd"),
    (re.compile(r"^\s*mpls ldp\b", re.M), "ldpd"),
    (re.compile(r"^\s*router eigrp\b", re.M), "eigrpd"),
    (re.compile(r"^\s*router babel\b", re.M), "babeld"),
    (re.compile(r"^\s*(bfd\b|.*\bbfd$)", re.M), "bfdd"),
    (re.compile(r"^\s*pbr-map\b", re.M), "pbrd"),
    (re.compile(r"^\s*vrrp\b", re.M), "vrrpd"),
    (re.compile(r"^\s*router openfabric\b", re.M), "fabricd"),
    (re.compile(r"^\s*segment-routing\b", re.M), "pathd"),
    (re.compile(r"^\s*ip nhrp\b", re.M), "nhrpd"),
)


@dataclass
class NodePlan:
    name: str
    netns: str
    role: str
    kind: str
    mgmt_ip: str
    host_veth: str
    interfaces: list[str]
    daemons: list[str]
    username: str
    group: str | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class LinkPlan:
    a_netns: str
    a_iface: str
    b_netns: str
    b_iface: str
    mtu: int | None


@dataclass
class LabPlan:
    """Everything `lab down` needs to remove a lab, even without its topology file."""

    lab: str
    topology: str
    lab_dir: str
    bridge: str
    subnet: str
    gateway: str
    nodes: dict[str, NodePlan]
    links: list[LinkPlan]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabPlan:
        nodes = {k: NodePlan(**v) for k, v in data["nodes"].items()}
        links = [LinkPlan(**x) for x in data["links"]]
        return cls(**{**data, "nodes": nodes, "links": links})

    def node_dir(self, node: str) -> Path:
        return Path(self.lab_dir) / "nodes" / node

    @property
    def mark(self) -> str:
        """The alias set on the lab's interfaces: which ones this lab created."""
        return "runner-lab:" + short_hash(self.lab_dir, 16)


def short_hash(text: str, length: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


def daemons_for(node: Node) -> list[str]:
    """FRR daemons to run, besides the always-on ones, in containerlab's order of sources."""
    bound = node.frr_file("daemons")
    if bound is not None and bound.text is not None:  # text: read once when loaded
        text = bound.text
        on = {m.group(1) for m in re.finditer(r"^\s*(\w+)\s*=\s*yes\b", text, re.M)}
        return [d for d in FRR_DAEMONS if d in on]
    if node.daemons is not None:
        return [d for d in FRR_DAEMONS if d in node.daemons and d not in ALWAYS_ON_DAEMONS]
    config = node.startup_config or ""
    bound_conf = node.frr_file("frr.conf")
    if bound_conf is not None:
        config = bound_conf.text or ""
    wanted = set(BASELINE_DAEMONS)
    wanted.update(daemon for pattern, daemon in _CONFIG_DAEMONS if pattern.search(config))
    return [d for d in FRR_DAEMONS if d in wanted]


def make_plan(topo: Topology) -> LabPlan:
    """Assign namespaces, veth names and management addresses; pure, no system calls."""
    static = {n.mgmt_ipv4 for n in topo.nodes.values() if n.mgmt_ipv4 is not None}
    free = (ip for ip in topo.mgmt_subnet.hosts()
            if ip != topo.mgmt_gateway and ip not in static)
    interfaces: dict[str, list[str]] = {name: [] for name in topo.nodes}
    for link in topo.links:
        interfaces[link.a.node].append(link.a.iface)
        interfaces[link.b.node].append(link.b.iface)

    nodes: dict[str, NodePlan] = {}
    for node in topo.nodes.values():
        ip = node.mgmt_ipv4 or next(free, None)
        if ip is None:
            raise TopologyError(
                f"management subnet {topo.mgmt_subnet} has no address left for node "
                f"{node.name}", path=topo.path, line=node.line, field="mgmt.ipv4-subnet")
        netns = topo.long_name(node.name)
        nodes[node.name] = NodePlan(
            name=node.name, netns=netns, role=node.role, kind=node.kind, mgmt_ip=str(ip),
            host_veth="rv" + short_hash(netns, 11), interfaces=interfaces[node.name],
            daemons=daemons_for(node) if node.role == "router" else [],
            username=node.username, group=node.group, labels=dict(node.labels),
        )
    links = [LinkPlan(topo.long_name(lk.a.node), lk.a.iface, topo.long_name(lk.b.node),
                      lk.b.iface, lk.mtu) for lk in topo.links]
    return LabPlan(
        lab=topo.name, topology=str(topo.path), lab_dir=str(topo.lab_dir),
        bridge=topo.mgmt_bridge or "rb" + short_hash(topo.name, 11),
        subnet=str(topo.mgmt_subnet), gateway=str(topo.mgmt_gateway), nodes=nodes,
        links=links,
    )
