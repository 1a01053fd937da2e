"""The deployment plan: namespace, interface and address names for every node, as plain data."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import TopologyError
from runner.lab.kinds import Kind, planned
from runner.lab.topology import Topology


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
    # dummy interfaces (`type: dummy` links): also in `interfaces`, which the node brings up
    stubs: list[str] = field(default_factory=list)
    stub_mtu: dict[str, int] = field(default_factory=dict)

    @property
    def kind_impl(self) -> Kind:
        """The node's behaviour, from what the plan keeps (its kind's name and role)."""
        return planned(self.kind, self.role)


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
        data = asdict(self)
        for node in data["nodes"].values():  # a lab without dummy links reads as before
            for key in ("stubs", "stub_mtu"):
                if not node[key]:
                    del node[key]
        return data

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


def make_plan(topo: Topology) -> LabPlan:
    """Assign namespaces, veth names and management addresses; pure, no system calls."""
    static = {n.mgmt_ipv4 for n in topo.nodes.values() if n.mgmt_ipv4 is not None}
    free = (ip for ip in topo.mgmt_subnet.hosts()
            if ip != topo.mgmt_gateway and ip not in static)
    interfaces: dict[str, list[str]] = {name: [] for name in topo.nodes}
    for link in topo.links:
        interfaces[link.a.node].append(link.a.iface)
        interfaces[link.b.node].append(link.b.iface)
    stubs: dict[str, list[str]] = {name: [] for name in topo.nodes}
    for stub in topo.stubs:
        interfaces[stub.end.node].append(stub.end.iface)
        stubs[stub.end.node].append(stub.end.iface)

    nodes: dict[str, NodePlan] = {}
    for node in topo.nodes.values():
        ip = node.mgmt_ipv4 or next(free, None)
        if ip is None:
            raise TopologyError(
                f"management subnet {topo.mgmt_subnet} has no address left for node "
                f"{node.name}", path=topo.path, line=node.line, field="mgmt.ipv4-subnet")
        netns = topo.long_name(node.name)
        nodes[node.name] = NodePlan(
            name=node.name, netns=netns, role=node.kind_impl.role, kind=node.kind,
            mgmt_ip=str(ip), host_veth="rv" + short_hash(netns, 11),
            interfaces=interfaces[node.name], daemons=node.kind_impl.daemons(node),
            username=node.username, group=node.group, labels=dict(node.labels),
            stubs=stubs[node.name],
            stub_mtu={s.end.iface: s.mtu for s in topo.stubs
                      if s.end.node == node.name and s.mtu},
        )
    links = [LinkPlan(topo.long_name(lk.a.node), lk.a.iface, topo.long_name(lk.b.node),
                      lk.b.iface, lk.mtu) for lk in topo.links]
    return LabPlan(
        lab=topo.name, topology=str(topo.path), lab_dir=str(topo.lab_dir),
        bridge=topo.mgmt_bridge or "rb" + short_hash(topo.name, 11),
        subnet=str(topo.mgmt_subnet), gateway=str(topo.mgmt_gateway), nodes=nodes,
        links=links,
    )
