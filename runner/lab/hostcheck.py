"""Checks of a topology against this host, made by `lab up` before it creates anything."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from runner.lab import rules
from runner.lab.system import run
from runner.lab.topology import Topology

SUBNET_LOC = ("mgmt", "ipv4-subnet")


def route_conflict(subnet: ipaddress.IPv4Network, routes: Iterable[Mapping[str, Any]],
                   own_dev: str | None = None) -> str | None:
    """The host route or address `subnet` would hide, described; None when there is none.

    routes: `ip -j -4 route show table all`. Default routes, and the 0.0.0.0/1 +
    128.0.0.0/1 pair VPN clients install in their place, cover every subnet and are not
    conflicts; neither are broadcast entries, nor routes of own_dev (the bridge of the lab
    being reconfigured).
    """
    for route in routes:
        dst, dev = str(route.get("dst", "")), route.get("dev")
        if dst in ("", "default") or route.get("type") in ("broadcast", "multicast") or \
                (own_dev is not None and dev == own_dev):
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.prefixlen <= 1 or net.is_loopback or not net.overlaps(subnet):
            continue
        where = f" on {dev}" if dev else ""
        table = route.get("table")
        kind = "address" if route.get("type") == "local" else "route"
        in_table = f" (table {table})" if table and table != "main" else ""
        return f"{kind} {net}{where}{in_table}"
    return None


def host_routes() -> list[dict[str, Any]]:
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
                        or "[]")
    return [r for r in routes if isinstance(r, dict)]


def check_subnet(topo: Topology, own_dev: str | None = None) -> None:
    """TopologyError at mgmt.ipv4-subnet when the subnet overlaps a route of this host."""
    conflict = route_conflict(topo.mgmt_subnet, host_routes(), own_dev)
    if conflict is not None:
        raise topo.error(f"management subnet {topo.mgmt_subnet} overlaps the {conflict} of "
                         "this host; choose a free private subnet (`ip route` lists those "
                         "in use)", SUBNET_LOC)


def unnamespaced(keys: Iterable[str]) -> set[str]:
    """The sysctl keys a fresh network namespace lacks or may not write on this kernel:
    set from a node, they would fail, or (were the kernel to show them) change the host."""
    paths = {key: rules.sysctl_probe_path(key) for key in keys}
    if not paths:
        return set()
    script = 'for p in "$@"; do test -w "$p" || echo "$p"; done'
    out = run(["unshare", "--net", "sh", "-c", script, "probe", *sorted(set(paths.values()))])
    missing = set(out.stdout.split())
    return {key for key, path in paths.items() if path in missing}


def check_sysctls(topo: Topology) -> None:
    """TopologyError at the first sysctl this kernel does not keep per network namespace."""
    keys = {key for node in topo.nodes.values() for key in node.sysctls}
    bad = unnamespaced(keys)
    for node in topo.nodes.values():
        for key in node.sysctls:
            if key not in bad:
                continue
            path = rules.sysctl_probe_path(key)
            if not os.path.exists(path):
                problem = f"sysctl {key} does not exist on this kernel (no {path})"
            else:
                problem = (f"sysctl {key} is host-global on this kernel (a fresh network "
                           f"namespace has no writable {path}); setting it would fail or "
                           "change this machine's own value")
            raise topo.error(f"node {node.name}: {problem}", node.sysctl_locs[key])
