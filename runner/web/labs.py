"""Labs for the web: what `runner lab status --json` prints, and a lab's topology (nodes,
links with their interfaces, and each interface's addresses) to draw."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import LabError, NotFound
from runner.lab.kinds import NodeShape
from runner.lab.plan import NodePlan
from runner.lab.service import Labs
from runner.lab.system import interfaces
from runner.lab.twin.listing import statuses
from runner.settings import Settings


def lab_statuses(settings: Settings) -> list[dict[str, Any]]:
    """Every lab up on this machine, as `runner lab status --json` prints them (twins'
    simulated devices too)."""
    return [st.to_json() for st in statuses(settings)]


@dataclass
class DrawnNode:
    name: str
    role: str  # router | host, as status shows it
    kind: str
    mgmt_ip: str
    running: bool
    shape: NodeShape  # how the node's kind is drawn


@dataclass
class DrawnLink:
    a: str
    a_iface: str
    b: str
    b_iface: str


@dataclass
class Topology:
    lab: str
    nodes: list[DrawnNode]
    links: list[DrawnLink]
    # (node, interface) -> addresses with prefix length ("10.0.12.1/30")
    addresses: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def topology(settings: Settings, name: str) -> Topology:
    labs = Labs(settings)
    try:
        state = labs.index.load_by_name(name)
    except LabError as exc:
        raise NotFound(str(exc)) from None
    status = labs.backends.get(state.backend).status(state)
    running = {n.name: n.running for n in status.nodes}
    plan = state.plan
    by_netns = {n.netns: n.name for n in plan.nodes.values()}
    nodes = [DrawnNode(n.name, n.role, n.kind, n.mgmt_ip, running.get(n.name, False),
                       n.kind_impl.shape) for n in plan.nodes.values()]
    links = [DrawnLink(by_netns.get(lk.a_netns, lk.a_netns), lk.a_iface,
                       by_netns.get(lk.b_netns, lk.b_netns), lk.b_iface)
             for lk in plan.links]
    addresses: dict[tuple[str, str], list[str]] = {}
    for node in plan.nodes.values():
        found = live_addresses(node) if running.get(node.name) else {}
        conf = node.kind_impl.config_file(plan.node_dir(node.name))
        if not found and conf is not None:
            found = configured_addresses(conf)
        for iface, addrs in found.items():
            addresses[(node.name, iface)] = addrs
    return Topology(plan.lab, nodes, links, addresses)


def live_addresses(node: NodePlan) -> dict[str, list[str]]:
    """The node's interfaces' IPv4 and global IPv6 addresses, read from its namespace (needs
    root; nothing when it cannot be read)."""
    return {name: addrs for name, (_, addrs) in interfaces(node.netns).items()
            if name != "lo" and addrs}


_IFACE = re.compile(r"^interface (\S+)")
_ADDR = re.compile(r"^\s+(?:ip|ipv6) address (\S+/\d+)")


def configured_addresses(conf: Path) -> dict[str, list[str]]:
    """A router's interface addresses from its saved config (frr.conf) in the lab directory."""
    try:
        text = conf.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _IFACE.match(line)
        if match:
            current = match.group(1)
            continue
        if not line.startswith(" "):
            current = None
        addr = _ADDR.match(line)
        if current and addr:
            out.setdefault(current, []).append(addr.group(1))
    return out
