"""The containerlab backend: hands the topology to `containerlab` when Docker is there."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from runner.errors import BackendUnavailable, LabError
from runner.lab import inventory, state
from runner.lab.backend import LabStatus, NodeStatus
from runner.lab.plan import make_plan
from runner.lab.system import run
from runner.lab.topology import Topology

NAME = "containerlab"


class ContainerlabBackend:
    """Runs `containerlab deploy/destroy/inspect`; usable only with a Docker engine."""

    name = NAME

    def __init__(self, index: state.LabIndex, binary: str = "containerlab") -> None:
        self.index = index
        self.binary = binary

    def unusable_reason(self) -> str | None:
        if shutil.which(self.binary) is None:
            return "containerlab is not installed"
        if shutil.which("docker") is None:
            return "docker is not installed"
        if run(["docker", "info"], check=False, timeout=15).returncode != 0:
            return "no Docker engine is running"
        return None

    def _require(self) -> None:
        reason = self.unusable_reason()
        if reason:
            raise BackendUnavailable(f"containerlab backend unavailable: {reason}")

    def up(self, topo: Topology, *, reconfigure: bool = False) -> LabStatus:
        self._require()
        argv = [self.binary, "deploy", "-t", str(topo.path)]
        if reconfigure:
            argv.append("--reconfigure")
        proc = run(argv, check=False, timeout=1800)
        if proc.returncode != 0:
            raise LabError(f"containerlab deploy failed: {proc.stderr.strip()[-2000:]}")
        lab = state.LabState(NAME, make_plan(topo), "up")
        self.index.save(lab)
        self._write_client_files(lab, topo)
        return self.status(lab)

    def _write_client_files(self, lab: state.LabState, topo: Topology) -> None:
        """The namespace backend's client files (inventory/, known_hosts, ssh_config) from
        what containerlab reports: each router's management address from `inspect`, its
        host keys from its container's /etc/ssh. containerlab's own
        nornir-simple-inventory.yml is left as it wrote it, and there is no lab key: the
        routers take the password, or the ~/.ssh keys containerlab authorised."""
        rows = {str(r.get("name", "")): r for r in self._inspect(lab)}
        addresses: dict[str, str] = {}
        keys: dict[str, list[str]] = {}
        for node in lab.plan.nodes.values():
            if not node.kind_impl.serves_ssh:
                continue
            row = rows.get(node.netns, {})
            ip = str(row.get("ipv4_address", "")).split("/")[0]
            if ip:
                addresses[node.name] = ip
            keys[node.name] = self._host_keys(node.netns)
        inventory.write_client_files(lab.plan, topo.nodes, addresses=addresses, keys=keys,
                                     client_key=False, flat_file=False)

    def _host_keys(self, container: str) -> list[str]:
        """The container's SSH host public keys (`type base64`), none if it has no sshd
        keys in /etc/ssh or does not answer."""
        try:
            proc = run(["docker", "exec", container, "sh", "-c",
                        "cat /etc/ssh/ssh_host_*_key.pub"], check=False, timeout=30)
        except subprocess.TimeoutExpired:
            return []
        if proc.returncode != 0:
            return []
        found = []
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2 and (fields[0].startswith(("ssh-", "ecdsa-"))):
                found.append(f"{fields[0]} {fields[1]}")
        return found

    def down(self, lab: state.LabState) -> None:
        self._require()
        proc = run([self.binary, "destroy", "-t", lab.plan.topology, "--cleanup"],
                   check=False, timeout=600)
        if proc.returncode != 0:
            raise LabError(f"containerlab destroy failed: {proc.stderr.strip()[-2000:]}")
        self.index.forget(lab.plan)

    def _inspect(self, lab: state.LabState) -> list[dict[str, Any]]:
        proc = run([self.binary, "inspect", "-t", lab.plan.topology, "--format", "json"],
                   check=False, timeout=60)
        if proc.returncode != 0:
            return []
        data = json.loads(proc.stdout or "{}")
        # Newer containerlab groups containers by lab name; older returns a flat list.
        if isinstance(data, dict):
            rows = data.get("containers") or [c for v in data.values() if isinstance(v, list)
                                              for c in v]
            return [r for r in rows if isinstance(r, dict)]
        return [r for r in data if isinstance(r, dict)]

    def status(self, lab: state.LabState) -> LabStatus:
        rows = {str(r.get("name", "")): r for r in self._inspect(lab)}
        nodes = []
        for node in lab.plan.nodes.values():
            row = rows.get(node.netns, {})
            ip = str(row.get("ipv4_address", "")).split("/")[0] or node.mgmt_ip
            nodes.append(NodeStatus(name=node.name, kind=node.kind, role=node.kind_impl.role,
                                    mgmt_ip=ip, running=row.get("state") == "running"))
        inv = Path(lab.plan.lab_dir) / "nornir-simple-inventory.yml"
        return LabStatus(lab=lab.plan.lab, backend=NAME, topology=lab.plan.topology,
                         lab_dir=lab.plan.lab_dir,
                         inventory=str(inv) if inv.exists() else None, nodes=nodes,
                         faults=lab.faults.to_json(), exercise=lab.exercise)

    def exec(self, lab: state.LabState, node: str, command: list[str],
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        self._require()
        if node not in lab.plan.nodes:
            raise LabError(f"lab {lab.plan.lab} has no node {node!r}")
        container = lab.plan.nodes[node].netns
        return subprocess.run(["docker", "exec", container, *command], capture_output=True,
                              text=True, timeout=timeout, check=False)
