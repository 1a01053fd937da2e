"""The Kind protocol: everything the lab asks of a node's kind, so no caller tests a role."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, Protocol

# What a node is, as status, the inventory's `data.role` and a lab's saved plan show it.
Role = Literal["router", "host"]


class NodeFile(StrEnum):
    """Files `lab up` writes for a node besides its launcher."""

    FRR = "frr"  # its own /etc/frr: config, daemons file, vtysh.conf
    ACCOUNTS = "accounts"  # passwd, group, shadow with the lab's login user
    SSHD = "sshd"  # its own sshd's config and host keys


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

    @property
    def files(self) -> frozenset[NodeFile]:
        """What `lab up` writes for the node besides its launcher."""

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


ROUTER: Role = "router"
HOST: Role = "host"


def is_router(role: str) -> bool:
    """A role kept in a lab's plan (its JSON) names a router."""
    return role == ROUTER
