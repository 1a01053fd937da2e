"""The interface every lab backend offers, and the status records it reports."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from runner.lab.faults import ROUTER
from runner.lab.state import LabState
from runner.lab.topology import Topology


@dataclass
class NodeStatus:
    name: str
    kind: str
    role: str
    mgmt_ip: str
    running: bool
    daemons: dict[str, bool] = field(default_factory=dict)
    ssh: bool | None = None  # None: the node runs no sshd (a plain host)
    stopped: list[str] = field(default_factory=list)  # daemons (or "router") stopped on purpose

    @property
    def healthy(self) -> bool:
        """Running as it should: what `runner lab stop` stopped is not a failure."""
        if not self.running:
            return False
        if ROUTER in self.stopped:
            return True
        return all(ok for d, ok in self.daemons.items() if d not in self.stopped) and (
            self.ssh is not False)


@dataclass
class LabStatus:
    lab: str
    backend: str
    topology: str
    lab_dir: str
    inventory: str | None
    nodes: list[NodeStatus]
    faults: dict[str, Any] = field(default_factory=dict)  # Faults.to_json()
    exercise: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Backend(Protocol):
    """A way to run a topology on this machine."""

    name: str

    def unusable_reason(self) -> str | None:
        """None when this backend can run here, else why not."""

    def up(self, topo: Topology, *, reconfigure: bool = False) -> LabStatus: ...

    def down(self, state: LabState) -> None: ...

    def status(self, state: LabState) -> LabStatus: ...

    def exec(self, state: LabState, node: str, command: list[str],
             timeout: float) -> subprocess.CompletedProcess[str]: ...
