"""Whether an exercise's goals hold on a running lab, each with the evidence seen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runner.errors import LabError
from runner.lab.converge import vtysh_json
from runner.lab.exercise.spec import Goal
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.vocab import GoalKind


@dataclass(frozen=True)
class Verdict:
    goal: Goal
    holds: bool
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return {"goal": self.goal.text, "holds": self.holds, "evidence": self.evidence}


def _reaches(labs: Labs, lab: LabState, goal: Goal) -> Verdict:
    proc = labs.exec_in(lab, goal.node, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1",
                                         goal.target], timeout=30)
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    summary = [ln for ln in lines if "transmitted" in ln or ln.startswith("rtt")]
    errors = [ln for ln in lines if "nreachable" in ln or "rohibited" in ln][:2]
    evidence = "; ".join(errors + summary) or (proc.stderr.strip() or "no answer from ping")
    return Verdict(goal, proc.returncode == 0, f"ping {goal.target}: {evidence}")


def _bgp(labs: Labs, lab: LabState, goal: Goal) -> Verdict:
    data = vtysh_json(labs, lab, goal.node, "show bgp summary", required=True)
    peers: dict[str, str] = {}
    for afi in data.values():
        if isinstance(afi, dict):
            for peer, info in afi.get("peers", {}).items():
                peers.setdefault(peer, str(info.get("state", "?")))
    if goal.target not in peers:
        have = ", ".join(f"{p} {s}" for p, s in sorted(peers.items())) or "none"
        return Verdict(goal, False, f"{goal.node} has no BGP neighbour {goal.target} "
                                    f"(its neighbours: {have})")
    state = peers[goal.target]
    return Verdict(goal, state == goal.state,
                   f"{goal.node}: BGP neighbour {goal.target} is {state}")


def _router_id(labs: Labs, lab: LabState, target: str) -> str:
    if target[0].isdigit() and target.count(".") == 3:
        return target
    data = vtysh_json(labs, lab, target, "show ip ospf", required=True)
    rid = data.get("routerId")
    if not rid:
        raise LabError(f"{target} runs no OSPF (no router id)")
    return str(rid)


def _ospf(labs: Labs, lab: LabState, goal: Goal) -> Verdict:
    rid = _router_id(labs, lab, goal.target)
    who = goal.target if goal.target == rid else f"{goal.target} ({rid})"
    data = vtysh_json(labs, lab, goal.node, "show ip ospf neighbor",
                      required=True)
    neighbors = data.get("neighbors", {})
    entries = neighbors.get(rid, []) if isinstance(neighbors, dict) else []
    if not entries:
        have = ", ".join(
            f"{nid} {e.get('nbrState', '?')} on {str(e.get('ifaceName', '?')).split(':')[0]}"
            for nid, es in sorted(neighbors.items()) for e in es) or "none"
        return Verdict(goal, False, f"{goal.node} has no OSPF neighbour {who} "
                                    f"(its neighbours: {have})")
    states = [(str(e.get("nbrState", "?")), str(e.get("ifaceName", "?")).split(":")[0])
              for e in entries]
    want = str(goal.state).lower()
    holds = any(s.split("/")[0].lower() == want for s, _ in states)
    seen = ", ".join(f"{s} on {iface}" for s, iface in states)
    return Verdict(goal, holds, f"{goal.node}: OSPF neighbour {who} is {seen}")


_CHECKS = {GoalKind.REACHES: _reaches, GoalKind.BGP: _bgp, GoalKind.OSPF: _ospf}


def evaluate(labs: Labs, lab: LabState, goal: Goal) -> Verdict:
    """One goal on the lab as it is now; a router that cannot answer fails it, saying so."""
    try:
        return _CHECKS[goal.kind](labs, lab, goal)
    except (LabError, json.JSONDecodeError) as exc:
        return Verdict(goal, False, str(exc))
