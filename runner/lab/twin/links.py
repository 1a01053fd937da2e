"""Links of a twin inferred from its routers' configs: two interfaces whose addresses share
a point-to-point subnet (/31, /30, or a /29 with exactly those two in it) are cabled
together. Everything else an engineer needs to judge the guess is said as a note."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.lab.topology import Endpoint
from runner.lab.twin.frrconf import BUILT_IN, Interface

# The shortest prefix taken for a point-to-point subnet; shorter ones are LANs.
P2P_MIN_PREFIX = 29


@dataclass(frozen=True)
class InferredLink:
    a: Endpoint
    b: Endpoint
    subnet: ipaddress.IPv4Network

    def __str__(self) -> str:
        return f"{self.a} -- {self.b}  ({self.subnet})"


@dataclass
class Inference:
    """The links, the interfaces left without a peer (each a stub, with why), and notes."""

    links: list[InferredLink] = field(default_factory=list)
    stubs: dict[Endpoint, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def infer(nodes: Mapping[str, list[Interface]]) -> Inference:
    """Links between the nodes' interfaces, from their addresses (nodes in a stable order:
    the same configs always give the same links)."""
    members: dict[ipaddress.IPv4Network, list[tuple[Endpoint, ipaddress.IPv4Interface]]] = {}
    ends: list[Endpoint] = []
    for node, ifaces in nodes.items():
        for iface in ifaces:
            if iface.name in BUILT_IN:
                continue
            end = Endpoint(node, iface.name)
            ends.append(end)
            for address in iface.addresses:
                members.setdefault(address.network, []).append((end, address))

    result = Inference()
    linked: dict[Endpoint, InferredLink] = {}
    why: dict[Endpoint, str] = {}
    for subnet, found in members.items():
        reason = _not_a_link(subnet, found, linked)
        if reason is None:
            (a, _), (b, _) = found
            if a not in linked:  # else a second subnet on the same pair: the same cable
                link = InferredLink(a, b, subnet)
                linked[a] = linked[b] = link
                result.links.append(link)
            continue
        note, unlinked = reason
        if note:
            result.notes.append(note)
        for end, _ in found:
            why.setdefault(end, unlinked)
    for end in ends:
        if end not in linked:
            result.stubs[end] = why.get(end, "no IPv4 address to find its peer by")
    return result


def _not_a_link(subnet: ipaddress.IPv4Network,
                found: list[tuple[Endpoint, ipaddress.IPv4Interface]],
                linked: Mapping[Endpoint, InferredLink]) -> tuple[str, str] | None:
    """None when the subnet's interfaces are one point-to-point link; else a note for the
    engineer ("" for a plain LAN) and why its interfaces stay unlinked."""
    names = ", ".join(str(end) for end, _ in found)
    if subnet.prefixlen < P2P_MIN_PREFIX or subnet.prefixlen == 32:
        return "", f"{subnet} is not a point-to-point subnet"
    if len(found) != 2:
        return (f"{subnet}: {len(found)} interfaces ({names}), not a point-to-point link; "
                "left unlinked", f"{subnet} has {len(found)} interfaces")
    (a, a_ip), (b, b_ip) = found
    if a.node == b.node:
        return f"{subnet}: both ends are on {a.node} ({names}); left unlinked", \
            f"{subnet} has both ends on {a.node}"
    if a_ip.ip == b_ip.ip:
        return (f"{subnet}: {a} and {b} have the same address {a_ip.ip}; left unlinked",
                f"{subnet}: duplicate address")
    taken = [e for e in (a, b) if e in linked and {linked[e].a, linked[e].b} != {a, b}]
    if taken:
        return (f"{subnet}: {a} -- {b} not linked: {taken[0]} is already linked by "
                f"{linked[taken[0]].subnet}", f"{subnet}: its peer is linked elsewhere")
    return None
