"""Routing health of a lab's routers (OSPF neighbours, BGP sessions) and waiting for it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.errors import LabError
from runner.lab.service import Labs
from runner.lab.state import LabState


@dataclass
class RouterRouting:
    node: str
    ospf: dict[str, str] = field(default_factory=dict)  # neighbour id -> state
    bgp: dict[str, str] = field(default_factory=dict)  # peer -> state
    error: str | None = None

    @property
    def converged(self) -> bool:
        return (self.error is None
                and all(s.startswith("Full") for s in self.ospf.values())
                and all(s == "Established" for s in self.bgp.values()))

    def summary(self) -> str:
        if self.error:
            return f"{self.node}: {self.error}"
        full = sum(s.startswith("Full") for s in self.ospf.values())
        est = sum(s == "Established" for s in self.bgp.values())
        return (f"{self.node}: OSPF {full}/{len(self.ospf)} full, "
                f"BGP {est}/{len(self.bgp)} established")


def vtysh_json(labs: Labs, lab: LabState, node: str, command: str, *,
               required: bool = False) -> dict[str, Any]:
    """`COMMAND json` in a router's vtysh: its object; {} when it answers no JSON (the
    daemon is not configured), or with `required` a LabError quoting what it answered."""
    proc = labs.exec_in(lab, node, ["vtysh", "-c", f"{command} json"], timeout=30)
    text = proc.stdout.strip()
    if proc.returncode != 0 or (required and not text.startswith("{")):
        raise LabError(f"{node}: `{command}` answered: "
                       f"{(proc.stderr or proc.stdout).strip()[:200] or 'nothing'}")
    data = json.loads(text) if text.startswith("{") else {}
    return data if isinstance(data, dict) else {}


def ospf_neighbors(data: Mapping[str, Any]) -> dict[str, str]:
    """FRR's `show ip ospf neighbor json`: neighbour router-id@interface -> state."""
    out: dict[str, str] = {}
    neighbors = data.get("neighbors", {})
    if not isinstance(neighbors, dict):
        raise ValueError("`show ip ospf neighbor json` has no object of neighbors")
    for nid, entries in neighbors.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                out[f"{nid}@{entry.get('ifaceName', '')}"] = str(
                    entry.get("nbrState", entry.get("state", "")))
    return out


def bgp_peers(data: Mapping[str, Any]) -> dict[str, str]:
    """FRR's `show bgp summary json` (one object per address family): peer -> state."""
    out: dict[str, str] = {}
    for afi in data.values():
        if isinstance(afi, dict):
            for peer, info in afi.get("peers", {}).items():
                if isinstance(info, dict):
                    out[peer] = str(info.get("state", ""))
    return out


def routing(labs: Labs, lab: LabState, node: str) -> RouterRouting:
    result = RouterRouting(node)
    daemons = lab.plan.nodes[node].daemons
    try:
        if "ospfd" in daemons:
            result.ospf = ospf_neighbors(vtysh_json(labs, lab, node, "show ip ospf neighbor"))
        if "bgpd" in daemons:
            result.bgp = bgp_peers(vtysh_json(labs, lab, node, "show bgp summary"))
    except (LabError, ValueError) as exc:
        result.error = str(exc)
    return result


def wait_converged(labs: Labs, lab: LabState, timeout: float = 120, interval: float = 1.0,
                   stable_polls: int = 2) -> list[RouterRouting]:
    """Wait until every router's OSPF neighbours are Full and BGP peers Established.

    Converged must hold for `stable_polls` polls in a row, so a session that flaps right
    after coming up is not taken for a converged network.
    """
    routers = [n.name for n in lab.plan.nodes.values() if n.kind_impl.routes]
    deadline = time.monotonic() + timeout
    streak = 0
    while True:
        states = [routing(labs, lab, r) for r in routers]
        streak = streak + 1 if all(s.converged for s in states) else 0
        if streak >= stable_polls:
            return states
        if time.monotonic() > deadline:
            lines = "\n  ".join(s.summary() for s in states if not s.converged)
            raise LabError(f"lab {lab.plan.lab} did not converge within {timeout:.0f}s:\n"
                           f"  {lines}")
        time.sleep(interval)
