"""The Kind protocol: everything the lab asks of a node's kind, so no caller tests a role;
the views of a node a kind works from; what every kind shares (logins, the lab's uid)."""

from __future__ import annotations

import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

# What a node is, as status, the inventory's `data.role` and a lab's saved plan show it.
Role = Literal["router", "host"]


class NodeShape(StrEnum):
    """How pictures (`lab graph`, the web page) draw a node."""

    ROUND = "round"  # a router: a circle
    BOX = "box"  # a host: a box


class Bound(Protocol):
    """A file bound into the node (topology.Bind): its target path, its text once read."""

    @property
    def target(self) -> str: ...

    @property
    def text(self) -> str | None: ...


class ConfigSource(Protocol):
    """What a node's kind reads to choose its daemons (topology.Node)."""

    @property
    def startup_config(self) -> str | None: ...

    @property
    def daemons(self) -> list[str] | None: ...  # extras.frr.daemons, None: not given

    def frr_file(self, name: str) -> Bound | None: ...


class NodeSource(ConfigSource, Protocol):
    """What a node's kind writes its files from (topology.Node): the kinds never import
    the topology, which imports them."""

    @property
    def name(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def binds(self) -> Sequence[Bound]: ...


class Planned(Protocol):
    """A node of a lab's plan as its kind boots it (plan.NodePlan)."""

    @property
    def name(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def daemons(self) -> list[str]: ...


# Every node's launcher creates log/ and this file in it, root-only, before its kind boots
# (empty on a host): a router's `vtysh -b` writes the config lines FRR rejects there.
BOOT_LOG = "vtysh-boot.log"


class Kind(Protocol):
    """A node kind's behaviour and defaults. Each module of runner.lab.kinds implements it;
    runner.lab asks a node's kind (node.kind_impl) instead of comparing names or roles."""

    @property
    def name(self) -> str:
        """The kind's name in a topology file (frr, linux)."""

    @property
    def role(self) -> Role:
        """What the node is, as shown in status and kept in a lab's plan."""

    # Login defaults and how clients drive its CLI: runner's platform (a platforms.yaml key,
    # which runner's own asyncssh driver uses), netmiko's device_type, scrapli's definition.
    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def netmiko_platform(self) -> str: ...

    @property
    def scrapli_platform(self) -> str: ...

    def daemons(self, node: ConfigSource) -> list[str]:
        """The FRR daemons it runs besides the always-on ones (none for a host)."""

    @property
    def sysctls(self) -> Mapping[str, str]:
        """Kernel settings its namespace needs before the topology's own."""

    @property
    def own_namespaces(self) -> bool:
        """Booted in its own UTS and mount namespaces (hostname, /etc/frr), which exec
        enters with nsenter; otherwise only the network namespace is its own."""

    @property
    def cli(self) -> str | None:
        """The CLI `lab exec` and exercise config lines go through (vtysh); None: argv runs
        as a program."""

    @property
    def waits_ready(self) -> bool:
        """`lab up` waits for its daemons and sshd; status shows their state."""

    @property
    def serves_ssh(self) -> bool:
        """It runs sshd: in the inventory, known_hosts and ssh_config, and status's SSH."""

    @property
    def routes(self) -> bool:
        """Its OSPF/BGP state is read (convergence, the live graph)."""

    @property
    def saves_config(self) -> bool:
        """`lab save` writes its running config back."""

    @property
    def stoppable(self) -> bool:
        """`lab stop/start` may stop its daemons or the whole node (impairments)."""

    @property
    def takes_startup_config(self) -> bool:
        """A startup-config is applied to it (else naming one is an error)."""

    @property
    def shape(self) -> NodeShape:
        """How pictures draw it."""

    def for_node(self, image: str | None, frr_binds: bool) -> Kind:
        """The behaviour of one node of this kind: the kind itself, or (linux) what the
        node's image and binds make it."""

    def write_files(self, ndir: Path, node: NodeSource, daemons: list[str],
                    pubkeys: str) -> None:
        """Write what the node needs besides its launcher into its directory `ndir` before
        it boots (a router: its /etc/frr, its login account, its sshd's config and host
        keys; a host: nothing); daemons: the plan's, pubkeys: the lab's authorized_keys."""

    def boot(self, ndir: Path, node: Planned) -> list[str]:
        """Lines the node's launcher runs once its interfaces and sysctls are set: its
        kind's own part (a router's boot.sh, written here); none for a host."""

    def exec_identity(self, username: str) -> tuple[int, int, list[int]]:
        """uid, gid and groups a topology's exec lines (and `lab exec` through its CLI) run
        as: the lab's login user, never a host account."""

    def cli_argv(self, username: str, command: list[str]) -> list[str]:
        """What `lab exec` runs in the node for `command`: through its CLI as the login user
        when the command names the CLI, else the command itself."""

    def daemon_pids(self, ndir: Path, daemons: list[str]) -> dict[str, Path]:
        """The pid file of each daemon `lab up` waits for and status shows, in status's
        order; daemons: the plan's (none for a host)."""

    def sshd_pid(self, ndir: Path) -> Path | None:
        """Its sshd's pid file (None: it serves no SSH)."""

    def entry_pids(self, ndir: Path, daemons: list[str]) -> list[Path]:
        """Pid files of its processes in its own namespaces, in the order exec and stop
        try them to enter those namespaces (none without own namespaces)."""

    def config_file(self, ndir: Path) -> Path | None:
        """Its running config once saved (`lab save` reads it, pictures its addresses);
        None: it keeps none."""


@dataclass(frozen=True)
class KindBase:
    """What each buildable kind shares: its name, the lab's login defaults (containerlab's)
    and the platforms clients drive it with (runner's platform, a platforms.yaml key, which
    runner's own asyncssh driver uses; netmiko's device_type; scrapli's definition). FRR's
    CLI answers like IOS: netmiko's cisco_ios and scrapli's cisco_iosxe drive vtysh."""

    name: str
    username: str = "admin"
    password: str = "admin"  # noqa: S105 - containerlab's published lab default, not a secret
    platform: str = "cisco_ios"
    netmiko_platform: str = "cisco_ios"
    scrapli_platform: str = "cisco_iosxe"

    def defaults(self) -> dict[str, str]:
        """Its name, logins and platforms: what another kind keeping them is made from."""
        return {f.name: getattr(self, f.name) for f in fields(KindBase)}


@cache
def lab_uid(username: str) -> int:
    """A uid no host account uses, so files owned by the lab user mean nothing outside."""
    used = {p.pw_uid for p in pwd.getpwall()}
    return next(uid for uid in range(42000, 60000) if uid not in used)


ROUTER: Role = "router"
HOST: Role = "host"


def is_router(role: str) -> bool:
    """A role kept in a lab's plan (its JSON) names a router."""
    return role == ROUTER
