"""The frr kind: a router running the host's FRR daemons, vtysh as its login shell, sshd.
Its files (files.py) and its boot (boot.py) are written from here."""

from __future__ import annotations

import grp
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from runner.lab import confine
from runner.lab.kinds.base import (
    ROUTER,
    ConfigSource,
    Kind,
    KindBase,
    NodeShape,
    NodeSource,
    Planned,
    Role,
    lab_uid,
)
from runner.lab.kinds.frr import boot as frr_boot
from runner.lab.kinds.frr import files as frr_files
from runner.lab.schema import ALWAYS_ON_DAEMONS, FRR_DAEMONS

# Started when the topology says nothing about daemons: zebra/staticd always, what the
# startup config uses, and bgpd + ospfd so a practice lab can add BGP/OSPF live.
BASELINE_DAEMONS = ("bgpd", "ospfd")
# `router bgp` -> bgpd and so on: what a startup config needs running to apply.
_CONFIG_DAEMONS = (
    (re.compile(r"^\s*router bgp\b", re.M), "bgpd"),
    (re.compile(r"^\s*router ospf\b(?!6)", re.M), "ospfd"),
    (re.compile(r"^\s*(router ospf6|ipv6 ospf6)\b", re.M), "ospf6d"),
    (re.compile(r"^\s*(router isis|ip router isis|ipv6 router isis)\b", re.M), "isisd"),
    (re.compile(r"^\s*router rip\b", re.M), "ripd"),
    (re.compile(r"^\s*router ripng\b", re.M), "ripngd"),
    (re.compile(r"^\s*(router pim|ip pim)\b", re.M), "pimd"),
    (re.compile(r"^\s*mpls ldp\b", re.M), "ldpd"),
    (re.compile(r"^\s*router eigrp\b", re.M), "eigrpd"),
    (re.compile(r"^\s*router babel\b", re.M), "babeld"),
    (re.compile(r"^\s*(bfd\b|.*\bbfd$)", re.M), "bfdd"),
    (re.compile(r"^\s*pbr-map\b", re.M), "pbrd"),
    (re.compile(r"^\s*vrrp\b", re.M), "vrrpd"),
    (re.compile(r"^\s*router openfabric\b", re.M), "fabricd"),
    (re.compile(r"^\s*segment-routing\b", re.M), "pathd"),
    (re.compile(r"^\s*ip nhrp\b", re.M), "nhrpd"),
)
# igmp_max_memberships: the default 20 stalls OSPF on a hub with >20 neighbours.
ROUTER_SYSCTLS = MappingProxyType({"net.ipv4.ip_forward": "1",
                                   "net.ipv6.conf.all.forwarding": "1",
                                   "net.ipv4.igmp_max_memberships": "512"})
VTYSH = "vtysh"


def daemons_for(node: ConfigSource) -> list[str]:
    """FRR daemons to run, besides the always-on ones, in containerlab's order of sources:
    a bound daemons file, extras.frr.daemons, else what the config uses (and the baseline)."""
    bound = node.frr_file("daemons")
    if bound is not None and bound.text is not None:  # text: read once when loaded
        on = {m.group(1) for m in re.finditer(r"^\s*(\w+)\s*=\s*yes\b", bound.text, re.M)}
        return [d for d in FRR_DAEMONS if d in on]
    if node.daemons is not None:
        return [d for d in FRR_DAEMONS if d in node.daemons and d not in ALWAYS_ON_DAEMONS]
    config = node.startup_config or ""
    bound_conf = node.frr_file("frr.conf")
    if bound_conf is not None:
        config = bound_conf.text or ""
    wanted = set(BASELINE_DAEMONS)
    wanted.update(daemon for pattern, daemon in _CONFIG_DAEMONS if pattern.search(config))
    return [d for d in FRR_DAEMONS if d in wanted]


@dataclass(frozen=True)
class FrrKind(KindBase):
    """An FRR router; another kind name with its own logins and platforms may reuse it
    (a linux node running FRR)."""

    name: str = "frr"

    @property
    def role(self) -> Role:
        return ROUTER

    def daemons(self, node: ConfigSource) -> list[str]:
        return daemons_for(node)

    @property
    def sysctls(self) -> Mapping[str, str]:
        return ROUTER_SYSCTLS

    @property
    def own_namespaces(self) -> bool:
        return True

    @property
    def cli(self) -> str | None:
        return VTYSH

    @property
    def waits_ready(self) -> bool:
        return True

    @property
    def serves_ssh(self) -> bool:
        return True

    @property
    def routes(self) -> bool:
        return True

    @property
    def saves_config(self) -> bool:
        return True

    @property
    def stoppable(self) -> bool:
        return True

    @property
    def takes_startup_config(self) -> bool:
        return True

    @property
    def shape(self) -> NodeShape:
        return NodeShape.ROUND

    def for_node(self, image: str | None, frr_binds: bool) -> Kind:
        return self

    def write_files(self, ndir: Path, node: NodeSource, daemons: list[str],
                    pubkeys: str) -> None:
        frr_files.write_files(ndir, node, daemons, pubkeys)

    def boot(self, ndir: Path, node: Planned) -> list[str]:
        return frr_boot.write_boot(ndir, node)

    def exec_identity(self, username: str) -> tuple[int, int, list[int]]:
        """The login user in frrvty (vtysh's sockets) and frr (its 0640 vtysh.conf)."""
        frrvty, frr = grp.getgrnam("frrvty").gr_gid, grp.getgrnam("frr").gr_gid
        return lab_uid(username), frrvty, [frr, frrvty]

    def cli_argv(self, username: str, command: list[str]) -> list[str]:
        """vtysh runs as the router's login user without capabilities: what an SSH login
        may do, and no more, whoever wrote the lines (an exercise file, a person)."""
        if command[:1] not in ([VTYSH], [frr_files.VTYSH_BIN]):
            return command
        uid, gid, groups = self.exec_identity(username)
        return [*confine.setpriv(confine.NO_CAPS, uid=uid, gid=gid, groups=groups),
                frr_files.VTYSH_BIN, *command[1:]]

    def daemon_pids(self, ndir: Path, daemons: list[str]) -> dict[str, Path]:
        return {d: frr_files.pid_file(ndir, d) for d in ("watchfrr", "zebra", "staticd",
                                                         *daemons)}

    def sshd_pid(self, ndir: Path) -> Path | None:
        return ndir / frr_files.SSHD_PID

    def entry_pids(self, ndir: Path, daemons: list[str]) -> list[Path]:
        """zebra first: the daemon least often restarted."""
        names = ("zebra", "watchfrr", "staticd", *daemons)
        return [*(frr_files.pid_file(ndir, d) for d in names), ndir / frr_files.SSHD_PID]

    def config_file(self, ndir: Path) -> Path | None:
        return frr_files.config_file(ndir)


def is_frr_image(image: str | None) -> bool:
    """True for FRR images (frrouting/frr, quay.io/frrouting/frr:8.4.4, .../frr-debian...)."""
    if not image:
        return False
    repo = image.rsplit("@", 1)[0]
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0]
    return last == "frr" or last.startswith("frr-") or "frrouting" in repo
