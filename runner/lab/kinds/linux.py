"""The linux kind: a plain host in its own network namespace, or, with an FRR image or files
bound into /etc/frr, a router like the frr kind (as containerlab's linux nodes run FRR)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from runner.lab.kinds.base import (
    HOST,
    ConfigSource,
    Kind,
    KindBase,
    NodeShape,
    NodeSource,
    Planned,
    Role,
    lab_uid,
)
from runner.lab.kinds.frr import FrrKind, is_frr_image


@dataclass(frozen=True)
class LinuxKind(KindBase):
    """A Linux host: interfaces, addresses, the topology's exec lines; no daemons, no sshd,
    no CLI (lab exec runs a program in its namespace). Its launcher is the generic one:
    it writes no files of its own and boots nothing more."""

    name: str = "linux"

    @property
    def role(self) -> Role:
        return HOST

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

    def write_files(self, ndir: Path, node: NodeSource, daemons: list[str],
                    pubkeys: str) -> None:
        return None

    def boot(self, ndir: Path, node: Planned) -> list[str]:
        return []

    def exec_identity(self, username: str) -> tuple[int, int, list[int]]:
        """The login user's uid, as its own group, in no other group."""
        uid = lab_uid(username)
        return uid, uid, []

    def cli_argv(self, username: str, command: list[str]) -> list[str]:
        return command

    def daemon_pids(self, ndir: Path, daemons: list[str]) -> dict[str, Path]:
        return {}

    def sshd_pid(self, ndir: Path) -> Path | None:
        return None

    def entry_pids(self, ndir: Path, daemons: list[str]) -> list[Path]:
        return []

    def config_file(self, ndir: Path) -> Path | None:
        return None

    def as_router(self) -> FrrKind:
        """This linux kind running FRR: a router keeping the kind's name and logins."""
        return FrrKind(**self.defaults())
