"""What clients need to reach a lab: Nornir inventory, known_hosts, ssh_config, a login key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.lab.kinds import FrrKind, Kind
from runner.lab.plan import LabPlan, NodePlan
from runner.lab.system import run
from runner.lab.topology import Node

INVENTORY_DIR = "inventory"
CLAB_INVENTORY = "nornir-simple-inventory.yml"
KNOWN_HOSTS = "known_hosts"
SSH_CONFIG = "ssh_config"
CLIENT_KEY = "id_ed25519"
_NO_KIND: Kind = FrrKind("")  # platforms for defaults when a lab has no router


def client_public_keys(lab_dir: Path) -> str:
    """The lab's own key pair plus the invoking user's keys, as containerlab collects them."""
    key = lab_dir / CLIENT_KEY
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"runner-lab-{lab_dir.name}",
             "-f", str(key)])
    keys = [key.with_suffix(".pub").read_text(encoding="utf-8").strip()]
    for pub in sorted((Path.home() / ".ssh").glob("*.pub")):
        try:
            keys.append(pub.read_text(encoding="utf-8").strip())
        except OSError:
            continue
    return "\n".join(dict.fromkeys(k for k in keys if k)) + "\n"


def host_keys(plan: LabPlan, node: str) -> list[str]:
    ssh = plan.node_dir(node) / "ssh"
    return [" ".join(p.read_text(encoding="utf-8").split()[:2])
            for p in sorted(ssh.glob("ssh_host_*_key.pub"))]


def _dump(path: Path, data: Any, header: str) -> None:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    path.write_text(f"# {header}\n---\n{body}", encoding="utf-8")


def _common(values: list[str], fallback: str) -> str:
    """The value most routers share (the first seen on a tie), written once in defaults."""
    return Counter(values).most_common(1)[0][0] if values else fallback


def _write_ssh_files(plan: LabPlan, routers: list[NodePlan], address: Mapping[str, str],
                     keys: Mapping[str, list[str]] | None, *, client_key: bool) -> None:
    """known_hosts (every router's host keys, by address and names) and ssh_config."""
    lab_dir = Path(plan.lab_dir)
    known_hosts = lab_dir / KNOWN_HOSTS
    lines = []
    for node in routers:
        for key in (keys.get(node.name, []) if keys is not None
                    else host_keys(plan, node.name)):
            lines.append(f"{address[node.name]},{node.name},{node.netns} {key}")
    known_hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")

    ssh_config = []
    for node in routers:
        ssh_config += [
            f"Host {node.name} {node.netns}",
            f"    HostName {address[node.name]}",
            f"    User {node.username}",
            *([f"    IdentityFile {lab_dir / CLIENT_KEY}"] if client_key else []),
            f"    UserKnownHostsFile {known_hosts}",
            "    StrictHostKeyChecking yes",
            "",
        ]
    (lab_dir / SSH_CONFIG).write_text("\n".join(ssh_config), encoding="utf-8")


def write_client_files(plan: LabPlan, nodes: Mapping[str, Node], *,
                       addresses: Mapping[str, str] | None = None,
                       keys: Mapping[str, list[str]] | None = None,
                       client_key: bool = True, flat_file: bool = True) -> Path:
    """Write inventory/, the containerlab-style inventory, known_hosts and ssh_config.

    nodes: the topology's nodes (login password, and the kind's automation platforms).
    addresses, keys: each router's management address and host keys when another backend
    (containerlab) knows them, instead of the plan's and the node directories'.
    client_key: the lab's own key (id_ed25519) is authorised on the routers.
    flat_file: write nornir-simple-inventory.yml (containerlab writes its own).
    Returns the inventory directory.
    """
    lab_dir = Path(plan.lab_dir)
    lab_dir.mkdir(mode=0o700, exist_ok=True)
    routers = [n for n in plan.nodes.values() if n.kind_impl.serves_ssh]
    known_hosts = lab_dir / KNOWN_HOSTS
    address = {n.name: (addresses or {}).get(n.name) or n.mgmt_ip for n in routers}

    _write_ssh_files(plan, routers, address, keys, client_key=client_key)

    # Each router's platforms come from its kind: what most routers share goes in defaults,
    # a router of another kind carries its own.
    kinds = {node.name: nodes[node.name].kind_impl for node in routers}
    platform = _common([k.platform for k in kinds.values()], _NO_KIND.platform)
    netmiko = _common([k.netmiko_platform for k in kinds.values()], _NO_KIND.netmiko_platform)
    scrapli = _common([k.scrapli_platform for k in kinds.values()], _NO_KIND.scrapli_platform)
    default_user = "admin"
    default_password = "admin"  # noqa: S105 - containerlab's lab default
    hosts: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for node in routers:
        kind = kinds[node.name]
        host: dict[str, Any] = {"hostname": address[node.name], "groups": []}
        if node.group:
            host["groups"].append(node.group)
            groups.setdefault(node.group, {"data": {}})
        if node.username != default_user:
            host["username"] = node.username
        if nodes[node.name].password != default_password:
            host["password"] = nodes[node.name].password
        if kind.platform != platform:
            host["platform"] = kind.platform
        options = {driver: {"platform": own} for driver, own, common in (
            ("netmiko", kind.netmiko_platform, netmiko),
            ("scrapli", kind.scrapli_platform, scrapli)) if own != common}
        if options:
            host["connection_options"] = options
        host["data"] = {"lab": plan.lab, "kind": node.kind, "netns": node.netns,
                        "role": node.role, **node.labels}
        if not host["groups"]:
            del host["groups"]
        hosts[node.name] = host
    defaults = {
        "username": default_user,
        "password": default_password,
        "platform": platform,  # runner's name, which its asyncssh driver uses
        "port": 22,
        "connection_options": {
            "netmiko": {"platform": netmiko, "extras": {
                "ssh_strict": True, "system_host_keys": False,
                "alt_host_keys": True, "alt_key_file": str(known_hosts)}},
            "scrapli": {"platform": scrapli, "extras": {
                "known_hosts_path": str(known_hosts), "enable_strict_key": True}},
            "asyncssh": {"extras": {"known_hosts": str(known_hosts)}},
        },
        "data": {"lab": plan.lab, **({"ssh_key_file": str(lab_dir / CLIENT_KEY)}
                                     if client_key else {})},
    }
    inv = lab_dir / INVENTORY_DIR
    inv.mkdir(exist_ok=True)
    header = f"generated by `runner lab up` for lab {plan.lab}; rewritten on every up"
    _dump(inv / "hosts.yaml", hosts, header)
    _dump(inv / "groups.yaml", groups, header)
    _dump(inv / "defaults.yaml", defaults, header)

    # The flat file containerlab writes, for tools that expect it.
    written = [inv / "hosts.yaml", inv / "defaults.yaml"]
    if flat_file:
        clab = {node.name: {"username": node.username, "password": nodes[node.name].password,
                            "platform": kinds[node.name].platform,
                            "hostname": address[node.name]}
                for node in routers}
        _dump(lab_dir / CLAB_INVENTORY, clab, header)
        written.append(lab_dir / CLAB_INVENTORY)
    for path in written:
        path.chmod(0o600)  # credentials inside
    return inv
