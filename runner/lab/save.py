"""`runner lab save`: `write memory` on every router, the saved configs copied back to the
topology's startup-config or frr.conf bind files (or a directory), as `containerlab save`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.errors import LabError
from runner.lab import labfiles
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.lab.system import run
from runner.lab.topology import Node, load_topology


@dataclass(frozen=True)
class Saved:
    node: str
    path: Path | None  # None: the node has no file to save to (embedded config)
    note: str = ""


def _target(node: Node, base: Path, to: Path | None) -> Path | None:
    if to is not None:
        return to / node.name / "frr.conf"
    bind = node.frr_file("frr.conf")
    if bind is not None:
        return bind.source
    if node.startup_config_source not in (None, "embedded"):
        return Path(str(node.startup_config_source))
    return None


def _write(path: Path, text: str, base: Path, inside_only: bool) -> None:
    """Replace the file's text in place (mode and owner kept); never through a symlink out of
    the topology's directory, never onto something that is not a regular file."""
    real = labfiles.resolve(str(path), base)
    labfiles.check_inside("saved config", str(path), real, base, not inside_only)
    if real.exists() and not real.is_file():
        raise LabError(f"{real} is not a regular file; not saving over it")
    real.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def save(labs: Labs, lab: LabState, to: Path | None = None,
         allow_outside_files: bool = False) -> list[Saved]:
    """Save every router's running config; where each went."""
    if lab.backend != "namespace":
        run(["containerlab", "save", "-t", lab.plan.topology], timeout=300)
        return [Saved(n, None, "saved by containerlab") for n, p in lab.plan.nodes.items()
                if p.kind_impl.saves_config]
    topo = load_topology(Path(lab.plan.topology))
    base = topo.path.parent
    results = []
    for node in (n for n in topo.nodes.values() if n.kind_impl.saves_config):
        if lab.faults.router_stopped(node.name):
            results.append(Saved(node.name, None, "stopped: not saved"))
            continue
        proc = labs.exec_in(lab, node.name, ["vtysh", "-c", "write memory"], timeout=60)
        if proc.returncode != 0:
            raise LabError(f"{node.name}: write memory failed: {proc.stdout.strip()}")
        conf = node.kind_impl.config_file(lab.plan.node_dir(node.name))
        if conf is None:
            raise LabError(f"{node.name}: its kind {node.kind!r} saves a config but keeps "
                           "no config file")
        text = conf.read_text(encoding="utf-8")
        target = _target(node, base, to)
        if target is None:
            results.append(Saved(node.name, None, "embedded or no startup config: saved in "
                                 "the lab only (use --to DIR to keep it)"))
            continue
        _write(target, text, base if to is None else target.parent,
               inside_only=to is None and not allow_outside_files)
        results.append(Saved(node.name, target))
    return results
