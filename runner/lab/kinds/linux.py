"""The linux kind: a plain host in its own network namespace, or, with an FRR image or files
bound into /etc/frr, a router like the frr kind (as containerlab's linux nodes run FRR)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from runner.lab.kinds.base import HOST, ConfigSource, Kind, NodeFile, NodeShape, Role
from runner.lab.kinds.frr import FrrKind, is_frr_image


@dataclass(frozen=True)
class LinuxKind:
    """A Linux host: interfaces, addresses, the topology's exec lines; no daemons, no sshd,
    no CLI (lab exec runs a program in its namespace)."""

    name: str = "linux"
    username: str = "admin"
    password: str = "admin"  # noqa: S105 - containerlab's published lab default, not a secret
    platform: str = "cisco_ios"
    netmiko_platform: str = "cisco_ios"
    scrapli_platform: str = "cisco_iosxe"

    @property
    def role(self) -> Role:
        return HOST

    @property
    def files(self) -> frozenset[NodeFile]:
        return frozenset()

    def daemons(self, node: ConfigSource) -> list[str]:
        return []

    @property
    def sysctls(self) -> Mapping[str, str]:
        return MappingProxyType({})

    @property
    def own_namespaces(self) -> bool:
        return False

    @property
    def cli(self) -> str | None:
        return None

    @property
    def waits_ready(self) -> bool:
        return False

    @property
    def serves_ssh(self) -> bool:
        return False

    @property
    def routes(self) -> bool:
        return False

    @property
    def saves_config(self) -> bool:
        return False

    @property
    def stoppable(self) -> bool:
        return False

    @property
    def takes_startup_config(self) -> bool:
        return False

    @property
    def shape(self) -> NodeShape:
        return NodeShape.BOX

    def for_node(self, image: str | None, frr_binds: bool) -> Kind:
        """A router when it runs an FRR image or has files bound into /etc/frr."""
        if is_frr_image(image) or frr_binds:
            return self.as_router()
        return self

    def as_router(self) -> FrrKind:
        """This linux kind running FRR: a router keeping the kind's name and logins."""
        return FrrKind(self.name, self.username, self.password, self.platform,
                       self.netmiko_platform, self.scrapli_platform)
