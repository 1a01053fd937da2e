"""Twins' simulated devices as `runner lab status` rows: a twin of IOS-like hosts has no
namespace lab, yet it is up beside the others and should be listed with them."""

from __future__ import annotations

from pathlib import Path

import yaml

from runner.errors import LabNotFound
from runner.job.backups import host_of
from runner.lab.backend import LabStatus, NodeStatus
from runner.lab.inventory import INVENTORY_DIR
from runner.lab.netns import tcp_open
from runner.lab.schema import NAME_RE
from runner.lab.service import Labs
from runner.lab.twin import simulated
from runner.lab.twin.plan import SIM_CONFIG_DIR, twin_dir
from runner.settings import Settings

BACKEND = "sim"  # how the rows name what serves these nodes


def statuses(settings: Settings, ref: str | None = None) -> list[LabStatus]:
    """Every lab up (or `ref`'s) and every twin's simulated devices: `runner lab status`
    and the web's labs. LabNotFound when `ref` names neither."""
    try:
        found = Labs(settings).status(ref)
    except LabNotFound:
        twins = simulated_twins(settings.home, ref)
        if not twins:
            raise
        return twins
    if ref is None or any(st.lab == ref for st in found):
        found += simulated_twins(settings.home, ref)
    return found


def simulated_twins(home: Path, name: str | None = None) -> list[LabStatus]:
    """One status per twin whose simulator serves (only `name`'s when given)."""
    if name is not None and not NAME_RE.match(name):
        return []  # a topology file's path, not a twin's name
    home = home.resolve()  # as `runner twin` writes the paths it records
    root = twin_dir(home, "_").parent
    names = [name] if name else sorted(p.name for p in root.iterdir() if p.is_dir()) \
        if root.is_dir() else []
    found = []
    for twin in names:
        directory = twin_dir(home, twin)
        state = simulated.running(directory)
        if state is not None:
            found.append(_status(twin, directory))
    return found


def _status(name: str, directory: Path) -> LabStatus:
    hosts = sorted(host_of(p.name) for p in (directory / SIM_CONFIG_DIR).glob("*.cfg"))
    inventory = _inventory_of(directory)
    entries = _hosts(inventory)
    nodes = []
    for host in hosts:
        entry = entries.get(host, {})
        address, port = str(entry.get("hostname", "")), entry.get("port")
        reachable = bool(address) and isinstance(port, int) and tcp_open(address, port)
        nodes.append(NodeStatus(
            name=host, kind=str(entry.get("platform", "simulated")), role="simulated",
            mgmt_ip=f"{address}:{port}" if address else "", running=True, ssh=reachable))
    return LabStatus(lab=name, backend=BACKEND, topology="-", lab_dir=str(directory),
                     inventory=str(inventory) if inventory else None, nodes=nodes)


def _inventory_of(directory: Path) -> Path | None:
    """The twin's inventory: beside its simulator, or in its lab's directory when it also
    has routers (the one whose hosts file exists)."""
    for candidate in (directory / INVENTORY_DIR, *sorted(directory.glob(f"*/{INVENTORY_DIR}"))):
        if (candidate / "hosts.yaml").is_file():
            return candidate
    return None


def _hosts(inventory: Path | None) -> dict[str, dict[str, object]]:
    if inventory is None:
        return {}
    try:
        data = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} \
        if isinstance(data, dict) else {}
