"""What a topology may ask of this host: node names, management subnets and sysctls."""

from __future__ import annotations

import ipaddress
import re

# A node's name is its router's hostname (hostname(1) refuses '_', '..', a leading '.' or
# '-') and part of its namespace name: dot-separated RFC 1123 labels, at most 63 characters.
HOSTNAME_MAX = 63
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")

# Management subnets: RFC 1918 only. 100.64.0.0/10 is refused too: carriers' CGNAT and
# Tailscale use it, so a lab there would hide real peers of a jump host.
PRIVATE_NETS = tuple(ipaddress.IPv4Network(n)
                     for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_SPECIAL = (
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback (the fleet simulator's range too)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network'"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "shared address space (CGNAT, Tailscale)"),
)

# Sysctls: only keys under net.*, the only tree with per-network-namespace values; which of
# those a namespace really has depends on the kernel and is checked at `lab up`.
SYSCTL_KEY_RE = re.compile(r"^net(\.[A-Za-z0-9_-]+)+$")
# Tables whose fourth part names an interface: net.ipv4.conf.eth1.forwarding.
_PER_INTERFACE = {("ipv4", "conf"), ("ipv4", "neigh"), ("ipv6", "conf"), ("ipv6", "neigh"),
                  ("mpls", "conf")}
_ANY_INTERFACE = ("all", "default", "lo", "eth0")


def hostname_problem(name: str) -> str | None:
    """Why `name` cannot be a node's name, or None."""
    if len(name) > HOSTNAME_MAX or not HOSTNAME_RE.match(name):
        return (f"node name {name!r} is not a valid hostname: use letters, digits and '-' "
                f"(not first or last), optionally in labels joined by single dots, at most "
                f"{HOSTNAME_MAX} characters")
    return None


def subnet_problem(subnet: ipaddress.IPv4Network) -> str | None:
    """Why `subnet` cannot be a management subnet, or None: private unicast only."""
    if any(subnet.subnet_of(net) for net in PRIVATE_NETS):
        return None
    what = next((why for net, why in _SPECIAL if subnet.subnet_of(net)), None)
    if what is None:
        covers = [why for net, why in _SPECIAL if subnet.overlaps(net)]
        what = "not private" + (f" (it overlaps {', '.join(covers)})" if covers else "")
    return (f"{subnet} is {what}; a management subnet must be private unicast, inside "
            f"{', '.join(map(str, PRIVATE_NETS))} (RFC 1918)")


def sysctl_interface(key: str) -> str | None:
    """The interface a per-interface key names (net.ipv4.conf.eth1.x -> eth1), else None."""
    parts = key.split(".")
    if len(parts) > 4 and (parts[1], parts[2]) in _PER_INTERFACE:
        return parts[3]
    return None


def sysctl_problem(key: str, value: str, interfaces: list[str]) -> str | None:
    """Why a node (with these data interfaces) cannot set `key` to `value`, or None."""
    if not re.match(r"^net[./]", key):
        return (f"sysctl {key} is not per network namespace: setting it in a node would change "
                "this machine's own value; only net.* keys (net.ipv4.*, net.ipv6.*, "
                "net.core.somaxconn, ...) can be set on a node")
    if not SYSCTL_KEY_RE.match(key):
        return (f"sysctl key {key!r} is not written as dotted parts of letters, digits, '_' "
                "and '-' (e.g. net.ipv4.ip_forward)")
    iface = sysctl_interface(key)
    if iface is not None and iface not in (*_ANY_INTERFACE, *interfaces):
        return (f"sysctl {key} names interface {iface}, which this node does not have "
                f"(it has {', '.join(['lo', 'eth0', *interfaces])}, or use all/default)")
    if not value or any(ord(c) < 32 for c in value):
        return f"sysctl {key}: the value must be non-empty text on one line"
    return None


def sysctl_probe_path(key: str) -> str:
    """The /proc/sys path that says whether a fresh namespace has `key` (its interface, if
    any, replaced by `default`, which every namespace has)."""
    parts = key.split(".")
    if sysctl_interface(key) not in (None, "all", "default", "lo"):
        parts[3] = "default"
    return "/proc/sys/" + "/".join(parts)
