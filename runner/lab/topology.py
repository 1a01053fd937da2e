"""Containerlab topology files: load, merge defaults/kinds/groups into nodes, check, model."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from runner.errors import TopologyError
from runner.lab.kinds import Kind, KindRegistry, Role, default_registry, is_frr_image
from runner.yamlsrc import LineDict, LineList, line_of, load_yaml

DEFAULT_MGMT_SUBNET = ipaddress.IPv4Network("172.20.20.0/24")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
IFNAME_RE = re.compile(r"^[^\s/:]+$")
IFNAME_MAX = 15  # IFNAMSIZ - 1: the kernel refuses longer interface names
FRR_DIR = "/etc/frr/"

# Node fields merged from defaults < kinds < groups < node, as containerlab does.
NODE_FIELDS = frozenset(
    {
        "kind", "image", "group", "startup-config", "binds", "exec", "labels", "mgmt-ipv4",
        "credentials", "extras", "env", "sysctls",
    }
)
# Fields containerlab accepts that only mean something to a container runtime.
IGNORED_NODE_FIELDS = frozenset(
    {
        "image-pull-policy", "restart-policy", "license", "type", "startup-delay",
        "enforce-startup-config", "suppress-startup-config", "auto-remove", "volumes",
        "ports", "env-files", "user", "hostname", "entrypoint", "cmd", "runtime",
        "mgmt-ipv6", "network-mode", "cpu", "memory", "cpu-set", "config", "stages", "dns",
        "certificate", "healthcheck", "components", "aliases", "shm-size", "cap-add",
        "privileged", "cgroupns-mode", "cgroup-parent", "pid-mode", "tmpfs",
        "security-opts", "devices", "link-apply-mode",
    }
)
FRR_DAEMONS = (
    "bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd", "nhrpd",
    "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd",
)
ALWAYS_ON_DAEMONS = ("zebra", "staticd", "watchfrr", "mgmtd")


@dataclass(frozen=True)
class Endpoint:
    node: str
    iface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint
    mtu: int | None
    line: int


@dataclass(frozen=True)
class Bind:
    source: Path
    target: str
    line: int


@dataclass
class Node:
    """One node after merging defaults, its kind's and its group's settings."""

    name: str
    kind: str
    role: Role
    image: str | None
    group: str | None
    mgmt_ipv4: ipaddress.IPv4Address | None
    startup_config: str | None  # the config text itself, read from file or embedded
    startup_config_source: str | None
    binds: list[Bind]
    exec: list[str]
    labels: dict[str, str]
    env: dict[str, str]
    sysctls: dict[str, str]
    username: str
    password: str
    daemons: list[str] | None  # extras.frr.daemons; None = not given
    line: int

    def frr_file(self, name: str) -> Bind | None:
        """The bind that provides /etc/frr/<name>, if any."""
        for bind in self.binds:
            if bind.target == FRR_DIR + name:
                return bind
        return None


@dataclass
class Topology:
    """A whole topology file, checked: every node and link can be built as written."""

    path: Path
    name: str
    prefix: str
    mgmt_subnet: ipaddress.IPv4Network
    mgmt_gateway: ipaddress.IPv4Address
    mgmt_bridge: str | None
    nodes: dict[str, Node]
    links: list[Link]
    warnings: list[str] = field(default_factory=list)

    @property
    def lab_dir(self) -> Path:
        """Where the lab's generated files live: clab-<name> beside the topology file."""
        return self.path.parent / f"clab-{self.name}"

    def long_name(self, node: str) -> str:
        """Containerlab's container name, which is also our namespace name."""
        if self.prefix == "":
            return node
        if self.prefix == "__lab-name":
            return f"{self.name}-{node}"
        return f"{self.prefix}-{self.name}-{node}"

    def routers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "router"]


class _Reader:
    """Error helper: every failure names the file, the line and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, msg: str, where: Any, key: Any = None, fieldname: str | None = None) -> None:
        raise TopologyError(msg, path=self.path, line=line_of(where, key), field=fieldname)

    def mapping(self, value: Any, where: Any, key: Any, fieldname: str) -> LineDict:
        if value is None:
            empty = LineDict()
            empty.line, empty.lines = line_of(where, key) or 0, {}
            return empty
        if not isinstance(value, dict):
            self.fail(f"expected a mapping, got {_type(value)}", where, key, fieldname)
        return cast(LineDict, value)

    def string(self, value: Any, where: Any, key: Any, fieldname: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(f"expected a string, got {_type(value)}", where, key, fieldname)
        return str(value)

    def strings(self, value: Any, where: Any, key: Any, fieldname: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(f"expected a list of strings, got {_type(value)}", where, key, fieldname)
        return [self.string(v, value, i, f"{fieldname}[{i}]") for i, v in enumerate(value)]

    def str_map(self, value: Any, where: Any, key: Any, fieldname: str) -> dict[str, str]:
        mapping = self.mapping(value, where, key, fieldname)
        return {
            str(k): self.string(v, mapping, k, f"{fieldname}.{k}") for k, v in mapping.items()
        }


def _type(value: Any) -> str:
    if value is None:
        return "nothing"
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"),
                        (str, "a string")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def load_topology(path: Path, registry: KindRegistry | None = None) -> Topology:
    """Read and check a containerlab topology file; raise TopologyError naming file+line."""
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    raw = load_yaml(path)
    return parse_topology(raw, path, registry or default_registry())


def parse_topology(raw: Any, path: Path, registry: KindRegistry) -> Topology:
    r = _Reader(path)
    if not isinstance(raw, dict):
        r.fail(f"a topology file is a mapping with `name` and `topology`, got {_type(raw)}",
               raw)
    doc: LineDict = raw
    name, prefix = _parse_header(r, doc)

    mgmt = r.mapping(doc.get("mgmt"), doc, "mgmt", "mgmt")
    subnet, gateway, bridge = _parse_mgmt(r, mgmt)

    if "topology" not in doc:
        r.fail("missing `topology` (with `nodes` and `links`)", doc, None, "topology")
    topo = r.mapping(doc["topology"], doc, "topology", "topology")
    for key in topo:
        if key not in {"nodes", "links", "defaults", "kinds", "groups"}:
            r.fail(f"unknown field {key!r} (expected nodes, links, defaults, kinds, groups)",
                   topo, key, f"topology.{key}")
    defaults = r.mapping(topo.get("defaults"), topo, "defaults", "topology.defaults")
    kinds = r.mapping(topo.get("kinds"), topo, "kinds", "topology.kinds")
    groups = r.mapping(topo.get("groups"), topo, "groups", "topology.groups")
    raw_nodes = r.mapping(topo.get("nodes"), topo, "nodes", "topology.nodes")
    if not raw_nodes:
        r.fail("the topology has no nodes", topo, "nodes", "topology.nodes")

    warnings: list[str] = []
    nodes: dict[str, Node] = {}
    for node_name, node_raw in raw_nodes.items():
        sname = str(node_name)
        fieldname = f"topology.nodes.{sname}"
        if not NAME_RE.match(sname):
            r.fail("node names use letters, digits, '.', '_' and '-'", raw_nodes, node_name,
                   fieldname)
        node_map = r.mapping(node_raw, raw_nodes, node_name, fieldname)
        nodes[sname] = _parse_node(r, sname, node_map, raw_nodes.line_of(node_name),
                                   _Levels(defaults, kinds, groups), registry, warnings)

    links = _parse_links(r, topo, nodes)
    topology = Topology(
        path=path, name=name, prefix=prefix, mgmt_subnet=subnet, mgmt_gateway=gateway,
        mgmt_bridge=bridge, nodes=nodes, links=links, warnings=warnings,
    )
    _check_mgmt_addresses(r, topology, raw_nodes)
    for ns_name in (topology.long_name(n) for n in nodes):
        if len(ns_name) > 64:
            r.fail(f"namespace name {ns_name!r} is too long; shorten the lab or node name",
                   doc, "name", "name")
    return topology


def _parse_header(r: _Reader, doc: LineDict) -> tuple[str, str]:
    """Top-level fields, the lab name and the namespace/container name prefix."""
    for key in doc:
        if key not in {"name", "prefix", "mgmt", "topology", "settings", "debug"}:
            r.fail(f"unknown top-level field {key!r} (expected name, prefix, mgmt, topology)",
                   doc, key, str(key))
    if "name" not in doc:
        r.fail("missing `name` (the lab's name)", doc, None, "name")
    name = r.string(doc["name"], doc, "name", "name")
    if not NAME_RE.match(name):
        r.fail(f"{name!r} is not a valid lab name (letters, digits, '.', '_', '-')",
               doc, "name", "name")
    prefix = "clab"
    if "prefix" in doc:
        prefix = "" if doc["prefix"] is None else r.string(doc["prefix"], doc, "prefix",
                                                            "prefix")
        if prefix not in ("", "__lab-name") and not NAME_RE.match(prefix):
            r.fail(f"{prefix!r} is not a valid prefix", doc, "prefix", "prefix")

    return name, prefix


def _parse_mgmt(
    r: _Reader, mgmt: LineDict
) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address, str | None]:
    subnet = DEFAULT_MGMT_SUBNET
    raw_subnet = mgmt.get("ipv4-subnet")
    if raw_subnet not in (None, "auto"):
        text = r.string(raw_subnet, mgmt, "ipv4-subnet", "mgmt.ipv4-subnet")
        try:
            subnet = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            r.fail(f"{text!r} is not an IPv4 subnet such as 172.20.20.0/24", mgmt,
                   "ipv4-subnet", "mgmt.ipv4-subnet")
        if subnet.prefixlen > 29:
            r.fail(f"{text} is too small for a management network (use /29 or larger)",
                   mgmt, "ipv4-subnet", "mgmt.ipv4-subnet")
    gateway = subnet.network_address + 1
    if "ipv4-gw" in mgmt:
        text = r.string(mgmt["ipv4-gw"], mgmt, "ipv4-gw", "mgmt.ipv4-gw")
        try:
            gateway = ipaddress.IPv4Address(text)
        except ValueError:
            r.fail(f"{text!r} is not an IPv4 address", mgmt, "ipv4-gw", "mgmt.ipv4-gw")
        if gateway not in subnet or gateway in (subnet.network_address,
                                                subnet.broadcast_address):
            r.fail(f"gateway {gateway} is not a host address of {subnet}", mgmt, "ipv4-gw",
                   "mgmt.ipv4-gw")
    bridge = None
    if "bridge" in mgmt:
        bridge = r.string(mgmt["bridge"], mgmt, "bridge", "mgmt.bridge")
        if len(bridge) > IFNAME_MAX or not IFNAME_RE.match(bridge):
            r.fail(f"bridge name {bridge!r} must be 1-15 characters without '/', ':' or "
                   "spaces", mgmt, "bridge", "mgmt.bridge")
    return subnet, gateway, bridge


@dataclass
class _Levels:
    """The shared levels a node inherits from, least specific first."""

    defaults: LineDict
    kinds: LineDict
    groups: LineDict


class _Merged:
    """Node fields after merging; each remembers where it was written, for errors."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[Any, LineDict, str]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str) -> Any:
        return self.values[key][0] if key in self.values else None

    def at(self, key: str) -> tuple[LineDict, str, str]:
        _, level, label = self.values[key]
        return level, key, label


def _node_kind(r: _Reader, node: LineDict, group: LineDict, group_label: str,
               levels: _Levels, registry: KindRegistry, label: str) -> Kind:
    """The kind comes from the most specific level that names one."""
    for level, where in ((node, label), (group, group_label),
                         (levels.defaults, "topology.defaults")):
        if "kind" in level:
            name = r.string(level["kind"], level, "kind", f"{where}.kind")
            kind = registry.get(name)
            if kind is not None:
                return kind
            if registry.needs_containerlab(name):
                r.fail(f"kind {name!r} needs containerlab with Docker and its vendor image; "
                       f"the namespace backend builds only {', '.join(registry.names())}",
                       level, "kind", f"{where}.kind")
            r.fail(f"unknown kind {name!r} (expected one of {', '.join(registry.names())}, "
                   "or a containerlab kind with --backend containerlab)", level, "kind",
                   f"{where}.kind")
    r.fail("no `kind` (set it on the node, its group or topology.defaults)", node, None, label)
    raise AssertionError("unreachable")


def _merge(r: _Reader, levels: list[tuple[LineDict, str]], warnings: list[str]) -> _Merged:
    merged = _Merged()
    for level, label in levels:
        for key, raw in level.items():
            value = raw
            if key in NODE_FIELDS:
                if key in ("labels", "env", "sysctls") and key in merged:
                    combined = dict(merged.get(key))
                    combined.update(r.mapping(raw, level, key, f"{label}.{key}"))
                    value = _with_lines(combined, level, key)
                merged.values[key] = (value, level, f"{label}.{key}")
            elif key in IGNORED_NODE_FIELDS:
                warnings.append(f"{r.path}:{level.line_of(key)}: {label}.{key} is ignored by "
                                "the namespace backend")
            else:
                r.fail(f"unknown node field {key!r}", level, key, f"{label}.{key}")
    return merged


def _credentials(r: _Reader, merged: _Merged, kind: Kind) -> tuple[str, str]:
    if "credentials" not in merged:
        return kind.username, kind.password
    creds = r.mapping(merged.get("credentials"), *merged.at("credentials"))
    username, password = kind.username, kind.password
    if "username" in creds:
        username = r.string(creds["username"], creds, "username", "credentials.username")
        if not re.match(r"^[a-z_][a-z0-9_-]{0,30}$", username) or username == "root":
            r.fail(f"{username!r} is not a usable login name", creds, "username",
                   "credentials.username")
    if "password" in creds:
        password = r.string(creds["password"], creds, "password", "credentials.password")
        if not password or "\n" in password:
            r.fail("password must be non-empty and on one line", creds, "password",
                   "credentials.password")
    return username, password


def _frr_daemons(r: _Reader, merged: _Merged) -> list[str] | None:
    if "extras" not in merged:
        return None
    extras = r.mapping(merged.get("extras"), *merged.at("extras"))
    frr = r.mapping(extras.get("frr"), extras, "frr", "extras.frr")
    if "daemons" not in frr:
        return None
    daemons = r.strings(frr["daemons"], frr, "daemons", "extras.frr.daemons")
    for i, daemon in enumerate(daemons):
        if daemon not in FRR_DAEMONS + ALWAYS_ON_DAEMONS:
            r.fail(f"unknown FRR daemon {daemon!r} (expected one of {', '.join(FRR_DAEMONS)})",
                   frr["daemons"], i, f"extras.frr.daemons[{i}]")
    return daemons


def _parse_node(r: _Reader, name: str, node: LineDict, line: int, levels: _Levels,
                registry: KindRegistry, warnings: list[str]) -> Node:
    label = f"topology.nodes.{name}"
    group_name: str | None = None
    if "group" in node:
        group_name = r.string(node["group"], node, "group", f"{label}.group")
        if group_name not in levels.groups:
            r.fail(f"group {group_name!r} is not defined under topology.groups", node,
                   "group", f"{label}.group")
    group_label = f"topology.groups.{group_name}"
    group = (r.mapping(levels.groups[group_name], levels.groups, group_name, group_label)
             if group_name else LineDict())
    kind = _node_kind(r, node, group, group_label, levels, registry, label)
    kind_label = f"topology.kinds.{kind.name}"
    kind_map = r.mapping(levels.kinds.get(kind.name), levels.kinds, kind.name, kind_label)
    m = _merge(r, [(levels.defaults, "topology.defaults"), (kind_map, kind_label),
                   (group, group_label), (node, label)], warnings)

    image = r.string(m.get("image"), *m.at("image")) if "image" in m else None
    binds = ([_parse_bind(r, b, *m.at("binds"), i)
              for i, b in enumerate(r.strings(m.get("binds"), *m.at("binds")))]
             if "binds" in m else [])
    role: Role = kind.role or (
        "router" if is_frr_image(image) or any(b.target.startswith(FRR_DIR) for b in binds)
        else "host")

    startup_config = startup_source = None
    if "startup-config" in m:
        text = r.string(m.get("startup-config"), *m.at("startup-config"))
        startup_config, startup_source = _read_startup_config(r, text, *m.at("startup-config"))
        if role != "router":
            r.fail("startup-config is only applied to FRR routers; this node is a plain "
                   "Linux host (use an FRR image or kind: frr)", *m.at("startup-config"))

    mgmt_ip = None
    if "mgmt-ipv4" in m:
        text = r.string(m.get("mgmt-ipv4"), *m.at("mgmt-ipv4"))
        try:
            mgmt_ip = ipaddress.IPv4Address(text)
        except ValueError:
            r.fail(f"{text!r} is not an IPv4 address", *m.at("mgmt-ipv4"))

    username, password = _credentials(r, m, kind)
    return Node(
        name=name, kind=kind.name, role=role, image=image, group=group_name,
        mgmt_ipv4=mgmt_ip, startup_config=startup_config,
        startup_config_source=startup_source, binds=binds,
        exec=r.strings(m.get("exec"), *m.at("exec")) if "exec" in m else [],
        labels=r.str_map(m.get("labels"), *m.at("labels")) if "labels" in m else {},
        env=r.str_map(m.get("env"), *m.at("env")) if "env" in m else {},
        sysctls=r.str_map(m.get("sysctls"), *m.at("sysctls")) if "sysctls" in m else {},
        username=username, password=password, daemons=_frr_daemons(r, m), line=line,
    )


def _with_lines(combined: dict[str, Any], level: LineDict, key: str) -> LineDict:
    out = LineDict(combined)
    out.line = level.line_of(key)
    out.lines = {k: out.line for k in combined}
    return out


def _parse_bind(r: _Reader, text: str, level: LineDict, key: str, label: str,
                index: int) -> Bind:
    binds = level[key]
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        r.fail(f"bind {text!r} is not host-path:/container/path[:ro]", binds, index,
               f"{label}[{index}]")
    source = Path(parts[0])
    if not source.is_absolute():
        source = r.path.parent / source
    if parts[1].startswith(FRR_DIR) and not source.is_file():
        r.fail(f"bind source {parts[0]!r} does not exist (looked for {source})", binds, index,
               f"{label}[{index}]")
    return Bind(source=source, target=parts[1], line=line_of(binds, index) or 0)


def _read_startup_config(r: _Reader, text: str, level: LineDict, key: str,
                         label: str) -> tuple[str, str]:
    if "\n" in text:  # an embedded config blob, as containerlab allows
        return text, "embedded"
    source = Path(text)
    if not source.is_absolute():
        source = r.path.parent / source
    try:
        return source.read_text(encoding="utf-8"), str(source)
    except OSError:
        r.fail(f"startup-config file {text!r} not found (looked for {source})", level, key,
               label)
        raise AssertionError("unreachable") from None


def _parse_endpoint(r: _Reader, value: Any, where: Any, index: int, fieldname: str,
                    nodes: dict[str, Node]) -> Endpoint:
    node_at: tuple[Any, Any, str] = (where, index, fieldname)
    iface_at = node_at
    if isinstance(value, dict):
        node_at = (value, "node", f"{fieldname}.node")
        iface_at = (value, "interface", f"{fieldname}.interface")
        node = r.string(value.get("node"), *node_at)
        iface = r.string(value.get("interface"), *iface_at)
    else:
        text = r.string(value, where, index, fieldname)
        if text.count(":") != 1:
            r.fail(f"endpoint {text!r} is not node:interface", where, index, fieldname)
        node, iface = text.split(":")
    if node in ("host", "mgmt-net", "macvlan", "ovs-bridge", "bridge"):
        r.fail(f"endpoint {node}:{iface} connects to the host; the namespace backend only "
               "builds links between lab nodes", *node_at)
    if node not in nodes:
        r.fail(f"unknown node {node!r} in link (nodes are: {', '.join(nodes)})", *node_at)
    if not iface:
        r.fail("empty interface name", *iface_at)
    if len(iface) > IFNAME_MAX:
        r.fail(f"interface name {iface!r} is {len(iface)} characters; Linux allows at most "
               f"{IFNAME_MAX}", *iface_at)
    if not IFNAME_RE.match(iface) or iface in (".", ".."):
        r.fail(f"interface name {iface!r} may not contain '/', ':' or spaces", *iface_at)
    if iface in ("eth0", "lo"):
        r.fail(f"{iface} is reserved for {'management' if iface == 'eth0' else 'loopback'}"
               "; use eth1 and up for data links", *iface_at)
    return Endpoint(node, iface)


def _parse_links(r: _Reader, topo: LineDict, nodes: dict[str, Node]) -> list[Link]:
    raw_links = topo.get("links") or LineList()
    if not isinstance(raw_links, list):
        r.fail(f"expected a list of links, got {_type(raw_links)}", topo, "links",
               "topology.links")
    used: dict[Endpoint, int] = {}
    links: list[Link] = []
    for i, raw in enumerate(raw_links):
        fieldname = f"topology.links[{i}]"
        link = r.mapping(raw, raw_links, i, fieldname)
        link_type = link.get("type", "veth")
        if link_type != "veth":
            r.fail(f"link type {link_type!r} is not supported by the namespace backend "
                   "(veth only)", link, "type", f"{fieldname}.type")
        endpoints = link.get("endpoints")
        if not isinstance(endpoints, list) or len(endpoints) != 2:
            r.fail("a veth link has exactly two endpoints", link, "endpoints",
                   f"{fieldname}.endpoints")
        assert isinstance(endpoints, LineList)
        ends = [_parse_endpoint(r, e, endpoints, j, f"{fieldname}.endpoints[{j}]", nodes)
                for j, e in enumerate(endpoints)]
        for j, end in enumerate(ends):
            if end in used:
                r.fail(f"interface {end} is already used by the link on line {used[end]}",
                       endpoints, j, f"{fieldname}.endpoints[{j}]")
            used[end] = endpoints.line_of(j)
        mtu = None
        if "mtu" in link:
            mtu = link["mtu"]
            if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
                r.fail("mtu must be a whole number from 68 to 65535", link, "mtu",
                       f"{fieldname}.mtu")
        links.append(Link(ends[0], ends[1], mtu, raw_links.line_of(i)))
    return links


def _check_mgmt_addresses(r: _Reader, topo: Topology, raw_nodes: LineDict) -> None:
    seen: dict[ipaddress.IPv4Address, str] = {}
    for node in topo.nodes.values():
        ip = node.mgmt_ipv4
        if ip is None:
            continue
        where = raw_nodes[node.name] if isinstance(raw_nodes[node.name], dict) else raw_nodes
        key = "mgmt-ipv4" if isinstance(where, dict) and "mgmt-ipv4" in where else None
        label = f"topology.nodes.{node.name}.mgmt-ipv4"
        if ip not in topo.mgmt_subnet:
            r.fail(f"{ip} is outside the management subnet {topo.mgmt_subnet}", where, key,
                   label)
        if ip in (topo.mgmt_subnet.network_address, topo.mgmt_subnet.broadcast_address,
                  topo.mgmt_gateway):
            r.fail(f"{ip} is the network, broadcast or gateway address of "
                   f"{topo.mgmt_subnet}", where, key, label)
        if ip in seen:
            r.fail(f"{ip} is already the management address of {seen[ip]}", where, key, label)
        seen[ip] = node.name
