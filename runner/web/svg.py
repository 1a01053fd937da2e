"""A lab's topology drawn as SVG on the server: routers on a ring, each host outside the
router it hangs off, links with the interface names and addresses at each end."""

from __future__ import annotations

import math
from html import escape

from runner.lab.kinds import NodeShape
from runner.web.labs import DrawnNode, Topology

ROUTER_R = 30  # a router's circle
HOST_W, HOST_H = 70, 34  # a host's box
HOST_GAP = 240  # a host sits this far outside its router
MARGIN = 90
LABEL_AT = 0.32  # interface labels sit this far along a link from their node
LABEL_OFF = 8  # ... and this far beside it


def _ring(topo: Topology) -> float:
    routers = sum(1 for n in topo.nodes if n.shape is NodeShape.ROUND)
    return 0.0 if routers <= 1 else max(170.0, routers * 160 / (2 * math.pi))


def _size(topo: Topology) -> float:
    hosts = any(n.shape is not NodeShape.ROUND for n in topo.nodes)
    return 2 * (_ring(topo) + (HOST_GAP if hosts else 0) + MARGIN)


def _layout(topo: Topology) -> dict[str, tuple[float, float]]:
    size = _size(topo)
    cx = cy = size / 2
    ring = _ring(topo)
    # Round nodes (routers) on the ring, the others outside it.
    routers = [n for n in topo.nodes if n.shape is NodeShape.ROUND]
    others = [n for n in topo.nodes if n.shape is not NodeShape.ROUND]
    places: dict[str, tuple[float, float]] = {}
    angles: dict[str, float] = {}
    for i, node in enumerate(routers):
        angle = -math.pi / 2 - math.pi / 4 + 2 * math.pi * i / max(1, len(routers))
        angles[node.name] = angle
        places[node.name] = (cx + ring * math.cos(angle), cy + ring * math.sin(angle))
    # Hosts: outside the router they are linked to, fanned out when a router has several.
    attached: dict[str, list[str]] = {}
    loose: list[str] = []
    for node in others:
        peers = [lk.b if lk.a == node.name else lk.a for lk in topo.links
                 if node.name in (lk.a, lk.b)]
        peer = next((p for p in peers if p in angles), None)
        if peer is None:
            loose.append(node.name)
        else:
            attached.setdefault(peer, []).append(node.name)
    for router, hosts in attached.items():
        rx, ry = places[router]
        for j, host in enumerate(hosts):
            angle = angles[router] + (j - (len(hosts) - 1) / 2) * 0.6
            places[host] = (rx + HOST_GAP * math.cos(angle), ry + HOST_GAP * math.sin(angle))
    outer = ring + HOST_GAP
    for k, host in enumerate(loose):
        angle = math.pi / 2 + 2 * math.pi * k / max(1, len(loose))
        places[host] = (cx + outer * math.cos(angle), cy + outer * math.sin(angle))
    return places


def _text(x: float, y: float, lines: list[str], css: str, anchor: str = "middle") -> str:
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if i == 0 else 1.15}em">{escape(line)}'
                    "</tspan>" for i, line in enumerate(lines))
    return (f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}">'
            f"{spans}</text>")


def _node(node: DrawnNode, x: float, y: float) -> str:
    state = "up" if node.running else "down"
    title = (f"<title>{escape(node.name)}: {escape(node.kind)} {escape(node.role)}, "
             f"management {escape(node.mgmt_ip)}, {'running' if node.running else 'absent'}"
             "</title>")
    if node.shape is NodeShape.ROUND:
        shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{ROUTER_R}" '
                 f'class="router {state}"/>')
    else:
        shape = (f'<rect x="{x - HOST_W / 2:.1f}" y="{y - HOST_H / 2:.1f}" width="{HOST_W}" '
                 f'height="{HOST_H}" rx="4" class="host {state}"/>')
    name = _text(x, y + 5, [node.name], "name")
    below = ROUTER_R if node.shape is NodeShape.ROUND else HOST_H / 2
    mgmt = _text(x, y + below + 14, [node.mgmt_ip], "mgmt")
    return f'<g class="node" data-node="{escape(node.name)}">{title}{shape}{name}{mgmt}</g>'


def render(topo: Topology) -> str:
    """The whole drawing, as a standalone SVG document (also inlined in the lab page)."""
    places = _layout(topo)
    size = round(_size(topo))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}" class="topology" role="img" '
        f'aria-label="topology of lab {escape(topo.lab)}">',
        "<style>.link{stroke:#6b7280;stroke-width:2}"
        ".router{fill:#dbeafe;stroke:#1d4ed8;stroke-width:2}"
        ".host{fill:#f3f4f6;stroke:#374151;stroke-width:2}"
        ".down{stroke:#b91c1c;stroke-dasharray:4 3;fill:#fee2e2}"
        "text{font-family:sans-serif;paint-order:stroke;stroke:#fff;stroke-width:3px}"
        ".name{font-size:14px;font-weight:bold}.mgmt{font-size:11px;fill:#4b5563}"
        ".iface{font-size:11px;fill:#111827}.addr{font-size:10px;fill:#1e40af}</style>",
        f"<title>lab {escape(topo.lab)}</title>",
    ]
    for link in topo.links:
        if link.a not in places or link.b not in places:
            continue
        (ax, ay), (bx, by) = places[link.a], places[link.b]
        parts.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" '
                     f'class="link"><title>{escape(link.a)}:{escape(link.a_iface)} - '
                     f"{escape(link.b)}:{escape(link.b_iface)}</title></line>")
        for end, iface, (x0, y0), (x1, y1) in (
                (link.a, link.a_iface, (ax, ay), (bx, by)),
                (link.b, link.b_iface, (bx, by), (ax, ay))):
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            along = min(max(ROUTER_R + 42, LABEL_AT * length), length / 2 - 8)
            # beside the line: below a flat link, to the outside of a steep one
            nx, ny = -uy, ux
            if ny < 0 or (abs(ny) < 0.3 and nx * (x0 - size / 2) < 0):
                nx, ny = -nx, -ny
            lx = x0 + along * ux + nx * LABEL_OFF * (1 + 2 * abs(nx))
            ly = y0 + along * uy + ny * LABEL_OFF + 4
            lines = [iface, *topo.addresses.get((end, iface), [])]
            anchor = "middle" if abs(nx) < 0.5 else ("start" if nx > 0 else "end")
            parts.append(f'<g class="end" data-end="{escape(end)}:{escape(iface)}">'
                         + _text(lx, ly, lines[:1], "iface", anchor)
                         + (_text(lx, ly + 12, lines[1:], "addr", anchor)
                            if lines[1:] else "")
                         + "</g>")
    for node in topo.nodes:
        if node.name in places:
            parts.append(_node(node, *places[node.name]))
    parts.append("</svg>")
    return "".join(parts)
