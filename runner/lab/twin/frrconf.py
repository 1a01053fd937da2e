"""What a twin reads from an FRR config backup: that it is FRR's, and its interfaces with
their IPv4 addresses (the stuff links are inferred from)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from runner.lab.schema import IFNAME_MAX, IFNAME_RE

# Lines only FRR's `show running-config` writes (the `frr version` line may have been
# dropped from a backup as volatile; `frr defaults` and the integrated config stay).
_FRR_MARKS = re.compile(r"^(?:frr (?:version|defaults) \S+|service integrated-vtysh-config)\s*$",
                        re.M)
_INTERFACE = re.compile(r"^interface (?P<name>\S+)(?: vrf (?P<vrf>\S+))?\s*$")
_ADDRESS = re.compile(r"^\s+ip address (?P<addr>\d+\.\d+\.\d+\.\d+/\d+)\b")
# Interfaces every twin router has without a link: loopback, and eth0 (its management).
BUILT_IN = ("lo", "eth0")


@dataclass
class Interface:
    """One `interface NAME` section of a config."""

    name: str
    line: int
    addresses: list[ipaddress.IPv4Interface] = field(default_factory=list)
    vrf: str | None = None


def is_frr(config: str) -> bool:
    """Whether the config is an FRR router's (vtysh's `show running-config`)."""
    return _FRR_MARKS.search(config) is not None


def interfaces(config: str) -> list[Interface]:
    """Every interface section, in the config's order (one entry per name)."""
    found: dict[str, Interface] = {}
    current: Interface | None = None
    for number, line in enumerate(config.splitlines(), 1):
        head = _INTERFACE.match(line)
        if head is not None:
            current = found.setdefault(head.group("name"), Interface(
                head.group("name"), number, vrf=head.group("vrf")))
            continue
        if current is None:
            continue
        if line and not line[0].isspace():  # `exit`, `!` or the next section
            current = None
            continue
        address = _ADDRESS.match(line)
        if address is not None:
            try:
                current.addresses.append(ipaddress.IPv4Interface(address.group("addr")))
            except ValueError:
                continue  # FRR would have refused it; it is no link's end either
    return list(found.values())


def ifname_problem(name: str) -> str | None:
    """Why a twin router cannot have an interface of this name (a Linux one), or None."""
    if not IFNAME_RE.match(name) or name in (".", ".."):
        return (f"interface {name!r} cannot be a Linux interface name (an FRR twin "
                "router's): no '/', ':' or spaces")
    if len(name) > IFNAME_MAX:
        return (f"interface {name!r} is {len(name)} characters; a Linux interface name (an "
                f"FRR twin router's) has at most {IFNAME_MAX}")
    return None
