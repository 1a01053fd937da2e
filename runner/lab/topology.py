"""Containerlab topology files: load, merge defaults/kinds/groups into nodes, check, model."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import LabError, TopologyError
from runner.lab import daemonsfile, labfiles, rules
from runner.lab.kinds import Kind, KindRegistry, Role, default_registry
from runner.lab.schema import (
    IFNAME_MAX,
    IFNAME_RE,
    UNION_TAGS,
    EndpointRef,
    NodeFields,
    TopologyFile,
)
from runner.source.validation import Loc, YamlSource, describe
from runner.source.yamlsrc import line_of, load_yaml

DEFAULT_MGMT_SUBNET = ipaddress.IPv4Network("172.20.20.0/24")
FRR_DIR = "/etc/frr/"
# containerlab's special endpoints, which reach outside the lab, and what to do instead.
_CONTAINERLAB = "use --backend containerlab on a machine with Docker"
HOST_ENDPOINTS = {
    "host": "a veth into this host's own namespace; reach a router from the host over its "
            "management address instead (ssh, runner lab exec)",
    "mgmt-net": "the management bridge; every node already has eth0 on it",
    "macvlan": "it would put the lab on a physical network of this host, which a lab here "
               f"never touches; {_CONTAINERLAB}",
    "ovs-bridge": f"Open vSwitch bridges are not built here; {_CONTAINERLAB}",
    "bridge": f"a Linux bridge of the host; {_CONTAINERLAB}, or link the nodes directly",
}
FRR_FILE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"  # one file directly in /etc/frr, no '..'
_Source = YamlSource[TopologyError]


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
class Stub:
    """A `type: dummy` link: an interface of one node with no peer (always up)."""

    end: Endpoint
    mtu: int | None
    line: int


@dataclass(frozen=True)
class Bind:
    source: Path
    target: str
    line: int
    text: str | None = None  # an /etc/frr file's content, read once at load


@dataclass(frozen=True)
class FileAccess:
    """How a topology's own files (startup-config, bind sources) are treated at load.

    allow_outside: files outside the topology's directory too (`--allow-outside-files`);
    read: False when only names and addresses are wanted (status, down): nothing is opened.
    """

    allow_outside: bool = False
    read: bool = True


@dataclass
class Node:
    """One node after merging defaults, its kind's and its group's settings."""

    name: str
    kind: str
    # The node's behaviour (its kind's, or what a linux node's image makes it), its login
    # defaults and automation platforms: callers ask it, never compare names or roles.
    kind_impl: Kind
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
    sysctl_locs: dict[str, Loc]  # where each sysctl key was written, for errors
    username: str
    password: str
    daemons: list[str] | None  # extras.frr.daemons; None = not given
    line: int

    @property
    def role(self) -> Role:
        return self.kind_impl.role

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
    source: _Source | None = field(default=None, repr=False, compare=False)
    stubs: list[Stub] = field(default_factory=list)

    def error(self, message: str, loc: Loc) -> TopologyError:
        """An error at `loc` in the topology file, for checks made after loading it."""
        if self.source is None:
            return TopologyError(message, path=self.path)
        return self.source.error(message, loc)

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
        """Nodes that route (run FRR), in the file's order."""
        return [n for n in self.nodes.values() if n.kind_impl.routes]


def load_topology(path: Path, registry: KindRegistry | None = None,
                  files: FileAccess = FileAccess()) -> Topology:
    """Read and check a containerlab topology file; raise TopologyError naming file+line."""
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    try:
        info = os.stat(path)
    except OSError:
        info = None  # load_yaml says what is wrong
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise TopologyError("a topology file must be a regular file", path=path)
    if info is not None and info.st_size > labfiles.MAX_BYTES:
        raise TopologyError(f"a topology file is at most {labfiles.MAX_BYTES >> 20} MiB",
                            path=path)
    raw = load_yaml(path, TopologyError)
    return parse_topology(raw, path, registry or default_registry(), files)


def parse_topology(raw: Any, path: Path, registry: KindRegistry,
                   files: FileAccess = FileAccess()) -> Topology:
    """The file's structure is validated first (pydantic); then what needs several fields:
    merging, kinds, groups, files it names, links between nodes, addresses."""
    if not isinstance(raw, dict):
        raise TopologyError(f"a topology file is a mapping with `name` and `topology`, got "
                            f"{describe(raw)}", path=path, line=line_of(raw))
    src = YamlSource(path, raw, TopologyError, union_tags=UNION_TAGS)
    doc = src.validate(TopologyFile)
    subnet = doc.mgmt.ipv4_subnet or DEFAULT_MGMT_SUBNET
    gateway = doc.mgmt.ipv4_gw or subnet.network_address + 1
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise src.error(f"gateway {gateway} is not a host address of {subnet}",
                        ("mgmt", "ipv4-gw"))

    warnings: list[str] = []
    nodes = {name: _node(src, doc, name, registry, warnings, files)
             for name in doc.topology.nodes}
    links, stubs = _links(src, doc, nodes)
    topology = Topology(
        path=path, name=doc.name, prefix=doc.prefix, mgmt_subnet=subnet, mgmt_gateway=gateway,
        mgmt_bridge=doc.mgmt.bridge, nodes=nodes, links=links,
        warnings=warnings, source=src, stubs=stubs,
    )
    _check_mgmt_addresses(src, topology)
    _check_sysctls(src, topology)
    for ns_name in (topology.long_name(n) for n in nodes):
        if len(ns_name) > 64:
            raise src.error(f"namespace name {ns_name!r} is too long; shorten the lab or node "
                            "name", ("name",))
    return topology


class _Merged:
    """Node fields after merging defaults < kind < group < node, as containerlab does; each
    value remembers where it was written, for errors."""

    def __init__(self, src: _Source, levels: list[tuple[NodeFields, Loc]],
                 warnings: list[str]) -> None:
        self.values: dict[str, tuple[Any, Loc]] = {}
        self.key_locs: dict[str, dict[str, Loc]] = {}  # maps: where each key was written
        for level, loc in levels:
            for name, info in NodeFields.model_fields.items():
                if name not in level.model_fields_set:
                    continue
                key = info.alias or name
                value = getattr(level, name)
                if name in ("labels", "env", "sysctls"):
                    if name in self.values:
                        value = {**self.get(name), **value}  # maps merge key by key
                    self.key_locs.setdefault(name, {}).update(
                        {k: (*loc, key, k) for k in getattr(level, name) or {}})
                self.values[name] = (value, (*loc, key))
            for key in level.model_extra or {}:
                field_name, line = src.locate((*loc, key))
                warnings.append(f"{src.path}:{line}: {field_name} is ignored by the namespace "
                                "backend")

    def get(self, name: str) -> Any:
        return self.values[name][0] if name in self.values else None

    def at(self, name: str) -> Loc:
        return self.values[name][1]


def _node_kind(src: _Source, doc: TopologyFile, node: NodeFields, node_loc: Loc,
               group: NodeFields, group_loc: Loc, registry: KindRegistry) -> Kind:
    """The kind comes from the most specific level that names one."""
    for level, loc in ((node, node_loc), (group, group_loc),
                       (doc.topology.defaults, ("topology", "defaults"))):
        if level.kind is not None:
            try:
                return registry.get(level.kind)
            except TopologyError as exc:
                raise src.error(exc.message, (*loc, "kind")) from None
    raise src.error("no `kind` (set it on the node, its group or topology.defaults)", node_loc)


def _node(src: _Source, doc: TopologyFile, name: str, registry: KindRegistry,
          warnings: list[str], files: FileAccess) -> Node:
    topo = doc.topology
    node, node_loc = topo.nodes[name], ("topology", "nodes", name)
    group_name = node.group
    if group_name is not None and group_name not in topo.groups:
        raise src.error(f"group {group_name!r} is not defined under topology.groups",
                        (*node_loc, "group"))
    group_loc: Loc = ("topology", "groups", group_name or "")
    group = topo.groups[group_name] if group_name is not None else NodeFields()
    kind = _node_kind(src, doc, node, node_loc, group, group_loc, registry)
    kind_fields = topo.kinds.get(kind.name, NodeFields())
    m = _Merged(src, [(topo.defaults, ("topology", "defaults")),
                      (kind_fields, ("topology", "kinds", kind.name)),
                      (group, group_loc), (node, node_loc)], warnings)

    image: str | None = m.get("image")
    binds = [_bind(src, text, (*m.at("binds"), i), files, warnings)
             for i, text in enumerate(m.get("binds") or [])]
    kind_impl = kind.for_node(image, any(b.target.startswith(FRR_DIR) for b in binds))

    startup_config = startup_source = None
    if m.get("startup_config") is not None:
        startup_config, startup_source = _read_startup_config(
            src, m.get("startup_config"), m.at("startup_config"), files)
        if not kind_impl.takes_startup_config:
            raise src.error("startup-config is only applied to FRR routers; this node is a "
                            "plain Linux host (use an FRR image or kind: frr)",
                            m.at("startup_config"))

    if m.get("env") and not m.get("exec"):
        field_name, line = src.locate(m.at("env"))
        warnings.append(f"{src.path}:{line}: {field_name} is ignored by the namespace backend "
                        f"for node {name}: it sets the environment of `exec` commands only, "
                        "and the node has none")

    creds = m.get("credentials")
    extras = m.get("extras")
    return Node(
        name=name, kind=kind.name, kind_impl=kind_impl, image=image, group=group_name,
        mgmt_ipv4=m.get("mgmt_ipv4"), startup_config=startup_config,
        startup_config_source=startup_source, binds=binds, exec=list(m.get("exec") or []),
        labels=dict(m.get("labels") or {}), env=dict(m.get("env") or {}),
        sysctls=dict(m.get("sysctls") or {}),
        sysctl_locs=m.key_locs.get("sysctls", {}),
        username=(creds and creds.username) or kind.username,
        password=(creds and creds.password) or kind.password,
        daemons=list(extras.frr.daemons) if extras and extras.frr.daemons is not None
        else None,
        line=src.locate(node_loc)[1] or 0,
    )


def _bind(src: _Source, text: str, loc: Loc, files: FileAccess, warnings: list[str]) -> Bind:
    host_path, target = text.split(":")[:2]  # the form was checked with the file's structure
    base = src.path.parent
    line = src.locate(loc)[1] or 0
    if not target.startswith(FRR_DIR):
        # Not used here, but containerlab would mount it: the same rule on where it may be.
        if files.read:
            try:
                labfiles.check_inside("bind source", host_path,
                                      labfiles.resolve(host_path, base), base,
                                      files.allow_outside)
            except TopologyError as exc:
                raise src.error(exc.message, loc) from None
        warnings.append(f"{src.path}:{line}: bind to {target} is ignored by the namespace "
                        "backend (it uses only files bound into /etc/frr/)")
        return Bind(source=base / host_path, target=target, line=line)
    if not re.fullmatch(FRR_FILE_NAME, target.removeprefix(FRR_DIR)):
        raise src.error(f"bind target {target!r} must name a file directly in {FRR_DIR} "
                        "(such as /etc/frr/frr.conf)", loc)
    if not files.read:
        return Bind(source=base / host_path, target=target, line=line)
    try:
        source, content = labfiles.read_text("bind source", host_path, base,
                                             files.allow_outside)
    except TopologyError as exc:
        raise src.error(exc.message, loc) from None
    if target == FRR_DIR + "daemons":
        try:
            daemonsfile.parse(content)  # its options become command lines: refused early
        except LabError as exc:
            raise src.error(f"daemons file {host_path!r}: {exc}", loc) from None
    return Bind(source=source, target=target, line=line, text=content)


def _read_startup_config(src: _Source, text: str, loc: Loc,
                         files: FileAccess) -> tuple[str | None, str]:
    if "\n" in text:  # an embedded config blob, as containerlab allows
        return text, "embedded"
    if not files.read:
        return None, text
    try:
        source, content = labfiles.read_text("startup-config file", text, src.path.parent,
                                             files.allow_outside)
    except TopologyError as exc:
        raise src.error(exc.message, loc) from None
    return content, str(source)


def _endpoint(src: _Source, value: str | EndpointRef, loc: Loc,
              nodes: dict[str, Node]) -> Endpoint:
    if isinstance(value, EndpointRef):
        node, iface = value.node, value.interface
        node_at, iface_at = (*loc, "node"), (*loc, "interface")
    else:
        node, iface = value.split(":")
        node_at = iface_at = loc
    if node in HOST_ENDPOINTS:
        raise src.error(f"endpoint {node}:{iface} connects to the host; the namespace backend "
                        f"only builds links between lab nodes: {HOST_ENDPOINTS[node]}",
                        node_at)
    if node not in nodes:
        raise src.error(f"unknown node {node!r} in link (nodes are: {', '.join(nodes)})",
                        node_at)
    if not iface:
        raise src.error("empty interface name", iface_at)
    if len(iface) > IFNAME_MAX:
        raise src.error(f"interface name {iface!r} is {len(iface)} characters; Linux allows "
                        f"at most {IFNAME_MAX}", iface_at)
    if not IFNAME_RE.match(iface) or iface in (".", ".."):
        raise src.error(f"interface name {iface!r} may not contain '/', ':' or spaces",
                        iface_at)
    if iface in ("eth0", "lo"):
        raise src.error(f"{iface} is reserved for "
                        f"{'management' if iface == 'eth0' else 'loopback'}; use eth1 and up "
                        "for data links", iface_at)
    return Endpoint(node, iface)


def _links(src: _Source, doc: TopologyFile,
           nodes: dict[str, Node]) -> tuple[list[Link], list[Stub]]:
    """The veth links, and the dummy links' interfaces (no interface used twice)."""
    used: dict[Endpoint, int] = {}
    links: list[Link] = []
    stubs: list[Stub] = []
    for i, link in enumerate(doc.topology.links):
        loc: Loc = ("topology", "links", i)
        where: list[Loc]
        if link.endpoint is not None:  # type: dummy (the schema checked the shape)
            where = [(*loc, "endpoint")]
            ends = [_endpoint(src, link.endpoint, where[0], nodes)]
        else:
            assert link.endpoints is not None
            where = [(*loc, "endpoints", j) for j in range(len(link.endpoints))]
            ends = [_endpoint(src, e, at, nodes)
                    for e, at in zip(link.endpoints, where, strict=True)]
        for end, at in zip(ends, where, strict=True):
            line = src.locate(at)[1] or 0
            if end in used:
                raise src.error(f"interface {end} is already used by the link on line "
                                f"{used[end]}", at)
            used[end] = line
        if len(ends) == 1:
            stubs.append(Stub(ends[0], link.mtu, src.locate(loc)[1] or 0))
        else:
            links.append(Link(ends[0], ends[1], link.mtu, src.locate(loc)[1] or 0))
    return links, stubs


def _check_mgmt_addresses(src: _Source, topo: Topology) -> None:
    seen: dict[ipaddress.IPv4Address, str] = {}
    subnet = topo.mgmt_subnet
    for node in topo.nodes.values():
        ip = node.mgmt_ipv4
        if ip is None:
            continue
        loc = ("topology", "nodes", node.name, "mgmt-ipv4")
        if ip not in subnet:
            raise src.error(f"{ip} is outside the management subnet {subnet}", loc)
        if ip in (subnet.network_address, subnet.broadcast_address, topo.mgmt_gateway):
            raise src.error(f"{ip} is the network, broadcast or gateway address of {subnet}",
                            loc)
        if ip in seen:
            raise src.error(f"{ip} is already the management address of {seen[ip]}", loc)
        seen[ip] = node.name


def _check_sysctls(src: _Source, topo: Topology) -> None:
    """Only per-namespace keys: anything else would change this machine's own value."""
    interfaces: dict[str, list[str]] = {name: [] for name in topo.nodes}
    for link in topo.links:
        for end in (link.a, link.b):
            interfaces[end.node].append(end.iface)
    for stub in topo.stubs:
        interfaces[stub.end.node].append(stub.end.iface)
    for node in topo.nodes.values():
        for key, value in node.sysctls.items():
            problem = rules.sysctl_problem(key, value, interfaces[node.name])
            if problem is not None:
                raise src.error(f"node {node.name}: {problem}", node.sysctl_locs[key])
