"""`runner lab graph`: a topology's nodes and links (interfaces, addresses), and when the lab
is up, link state and OSPF/BGP adjacencies coloured; as Graphviz dot, mermaid, SVG or PNG."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from runner.errors import BackendUnavailable, LabError
from runner.lab.converge import routing
from runner.lab.kinds import NodeShape
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.lab.system import interfaces
from runner.lab.topology import Node, Topology
from runner.vocab import GraphFormat

UP, DOWN, PARTIAL = "#2e7d32", "#c62828", "#ef6c00"  # green, red, orange


@dataclass
class Edge:
    a: str
    a_if: str
    b: str
    b_if: str
    a_addr: str = ""
    b_addr: str = ""
    state: str | None = None  # up, down; None: lab not up
    ospf: str | None = None  # e.g. "Full", "ExStart", "none"


@dataclass
class Session:
    a: str
    b: str
    state: str


@dataclass
class Picture:
    lab: str
    nodes: dict[str, NodeShape]  # name -> how its kind is drawn
    edges: list[Edge]
    sessions: list[Session] = field(default_factory=list)
    live: bool = False


_IFACE = re.compile(r"^interface (\S+)\n((?: .*\n?)*)", re.M)
_EXEC_ADDR = re.compile(r"ip (?:-4 )?addr(?:ess)? add (\S+) dev (\S+)")


def _file_addresses(node: Node) -> dict[str, str]:
    """Interface addresses from a router's config or a host's exec commands."""
    found: dict[str, str] = {}
    bind = node.frr_file("frr.conf")
    config = (bind.text if bind is not None else None) or node.startup_config or ""
    for m in _IFACE.finditer(config):
        addr = re.search(r"^ ip address (\S+)", m.group(2), re.M)
        if addr:
            found[m.group(1)] = addr.group(1)
    for command in node.exec:
        for m in _EXEC_ADDR.finditer(command):
            found[m.group(2)] = m.group(1)
    return found


def _live_links(lab: LabState, node: str) -> dict[str, tuple[str, list[str]]]:
    """interface -> (oper state, its IPv4 addresses/prefix) inside the node's namespace."""
    return {name: (state, [a for a in addrs if ":" not in a])
            for name, (state, addrs) in interfaces(lab.plan.nodes[node].netns).items()}


def build(topo: Topology, labs: Labs | None, lab: LabState | None) -> Picture:
    edges = []
    addrs = {name: _file_addresses(node) for name, node in topo.nodes.items()}
    for link in topo.links:
        edges.append(Edge(link.a.node, link.a.iface, link.b.node, link.b.iface,
                          addrs[link.a.node].get(link.a.iface, ""),
                          addrs[link.b.node].get(link.b.iface, "")))
    pic = Picture(topo.name, {n: node.kind_impl.shape for n, node in topo.nodes.items()},
                  edges)
    if labs is not None and lab is not None:
        _add_live(pic, labs, lab)
    return pic


def _add_live(pic: Picture, labs: Labs, lab: LabState) -> None:
    pic.live = True
    live = {n: _live_links(lab, n) for n in lab.plan.nodes}
    owner = {a.split("/")[0]: name for name, ifaces in live.items()
             for _, addrs in ifaces.values() for a in addrs}
    routers = [n for n, p in lab.plan.nodes.items() if p.kind_impl.routes
               and not lab.faults.router_stopped(n)]
    views = {r: routing(labs, lab, r) for r in routers}
    for edge in pic.edges:
        a_state, a_addrs = live[edge.a].get(edge.a_if, ("ABSENT", []))
        b_state, b_addrs = live[edge.b].get(edge.b_if, ("ABSENT", []))
        edge.a_addr = a_addrs[0] if a_addrs else edge.a_addr
        edge.b_addr = b_addrs[0] if b_addrs else edge.b_addr
        edge.state = "up" if a_state == b_state == "UP" else "down"
        if edge.a in views and lab.plan.nodes[edge.b].kind_impl.routes:
            states = [s for key, s in views[edge.a].ospf.items()
                      if key.split("@")[1].split(":")[0] == edge.a_if]
            edge.ospf = states[0].split("/")[0] if states else "none"
    pairs: dict[tuple[str, str], list[str]] = {}
    for router, view in views.items():
        for peer, peer_state in view.bgp.items():
            a, b = sorted((router, owner.get(peer, peer)))
            pairs.setdefault((a, b), []).append(peer_state)
    for (a, b), states in pairs.items():
        worst = next((s for s in states if s != "Established"), "Established")
        pic.sessions.append(Session(a, b, worst))


def _edge_colour(edge: Edge) -> str:
    if edge.state is None:
        return "black"
    if edge.state == "down":
        return DOWN
    return UP if edge.ospf in (None, "Full") else PARTIAL


def _dot(text: str) -> str:
    """Text for inside a DOT double-quoted string (an interface name may hold `"`)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _label(edge: Edge, end: str) -> str:
    iface, addr = (edge.a_if, edge.a_addr) if end == "a" else (edge.b_if, edge.b_addr)
    return f"{_dot(iface)}\\n{_dot(addr)}" if addr else _dot(iface)


_DOT_SHAPES = {NodeShape.ROUND: "circle", NodeShape.BOX: "box"}
_MERMAID_SHAPES = {NodeShape.ROUND: "(({}))", NodeShape.BOX: "[{}]"}


def to_dot(pic: Picture) -> str:
    lines = [f'graph "{pic.lab}" {{',
             '  layout=neato; overlap=false; sep="+20"; splines=true; dpi=110;',
             f'  label="lab {pic.lab}{_legend(pic)}"; fontname="Helvetica"; fontsize=10;',
             '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=8, len=2.6];']
    for name, shape in pic.nodes.items():
        lines.append(f'  "{_dot(name)}" [shape={_DOT_SHAPES[shape]}];')
    for e in pic.edges:
        extra = ""
        if e.state is not None:
            extra = f', color="{_edge_colour(e)}", penwidth=2'
            if e.state == "down":
                extra += ", style=dashed"
        ospf = f'label="OSPF {e.ospf}", ' if e.ospf and e.ospf != "Full" else ""
        lines.append(f'  "{_dot(e.a)}" -- "{_dot(e.b)}" [{ospf}taillabel="{_label(e, "a")}", '
                     f'headlabel="{_label(e, "b")}"{extra}];')
    for s in pic.sessions:
        colour = UP if s.state == "Established" else DOWN
        label = "" if s.state == "Established" else f'label="BGP {s.state}", '
        lines.append(f'  "{_dot(s.a)}" -- "{_dot(s.b)}" [style=dotted, color="{colour}", {label}'
                     f'fontcolor="{colour}", len=3.5];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _legend(pic: Picture) -> str:
    if not pic.live:
        return " (not up: links and addresses from the files)"
    return ("\\nlinks: green up and OSPF Full, orange OSPF not Full, red dashed down; "
            "dotted: BGP sessions (green Established, red not)")


_MERMAID_ENTITIES = {"#": "#35;", '"': "#quot;", "|": "#124;", "<": "#lt;", ">": "#gt;",
                     "[": "#91;", "]": "#93;", "(": "#40;", ")": "#41;", "{": "#123;",
                     "}": "#125;", "`": "#96;"}


def _mtext(text: str) -> str:
    """Text for inside a mermaid label, its syntax characters as entity codes."""
    return "".join(_MERMAID_ENTITIES.get(c, c) for c in text)


def to_mermaid(pic: Picture) -> str:
    # Ids of their own (n0, n1...): names such as r-1 and r.1 stay two nodes, and `end`,
    # `graph` or `style` are labels, never keywords; every label is quoted.
    ids = {name: f"n{i}" for i, name in enumerate(pic.nodes)}

    def _mid(name: str) -> str:
        return ids.get(name) or f"n{len(ids)}_{re.sub(r'[^A-Za-z0-9]', '_', name)}"

    lines = ["graph LR"]
    for name, shape in pic.nodes.items():
        label = f'"{_mtext(name)}"'
        lines.append(f"  {_mid(name)}{_MERMAID_SHAPES[shape].format(label)}")
    styles = []
    index = 0
    for e in pic.edges:
        text = _mtext(f"{e.a_if} {e.a_addr} -- {e.b_if} {e.b_addr}".replace("  ", " ")
                      .strip())
        if e.ospf and e.ospf != "Full":
            text += f" (OSPF {e.ospf})"
        arrow = "-.-" if e.state == "down" else "---"
        lines.append(f'  {_mid(e.a)} {arrow}|"{text}"| {_mid(e.b)}')
        if e.state is not None:
            styles.append(f"  linkStyle {index} stroke:{_edge_colour(e)},stroke-width:2px")
        index += 1
    for s in pic.sessions:
        lines.append(f'  {_mid(s.a)} -.-|"BGP {_mtext(s.state)}"| {_mid(s.b)}')
        colour = UP if s.state == "Established" else DOWN
        styles.append(f"  linkStyle {index} stroke:{colour},stroke-dasharray:3")
        index += 1
    return "\n".join(lines + styles) + "\n"


def render(pic: Picture, fmt: GraphFormat) -> bytes:
    """The picture in `fmt`; SVG and PNG through Graphviz's `dot` (Debian's graphviz)."""
    if fmt is GraphFormat.MERMAID:
        return to_mermaid(pic).encode()
    dot = to_dot(pic)
    if fmt is GraphFormat.DOT:
        return dot.encode()
    if shutil.which("neato") is None:
        raise BackendUnavailable("Graphviz is not installed (./dev setup installs the "
                                 "graphviz package); --format dot or mermaid need nothing")
    proc = subprocess.run(["neato", f"-T{fmt.value}"], input=dot.encode(),
                          capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise LabError(f"graphviz failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout

