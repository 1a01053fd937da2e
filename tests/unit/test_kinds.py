"""Lab kinds own their behaviour: one module per kind (frr, linux, vendor refusals) behind the
Kind protocol; no code outside runner/lab/kinds compares a role; a lab's saved plan gives
its nodes the same behaviour as the topology did, labs written before included."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from runner.errors import TopologyError
from runner.lab.kinds import (
    CONTAINERLAB_ONLY_KINDS,
    FrrKind,
    Kind,
    LinuxKind,
    NodeFile,
    NodeShape,
    default_registry,
    planned,
)
from runner.lab.kinds.frr import ROUTER_SYSCTLS
from runner.lab.plan import LabPlan, make_plan
from runner.lab.topology import load_topology
from tests.support.base import ROOT

KINDS_DIR = ROOT / "runner" / "lab" / "kinds"
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)
# "host" is too common a word elsewhere (a job's host, an SSH host): `role == "host"` is
# found by its `role` side.
ROLE_WORDS = ("router",)


def _names_a_role(node: ast.expr, words: bool = True) -> bool:
    """`role`, `x.role`, or (words) the word "router" as an operand of its own: in a tuple
    of keywords it is the simulator's CLI, not a role."""
    if isinstance(node, ast.Name):
        return node.id == "role"
    if isinstance(node, ast.Attribute):
        return node.attr == "role"
    return words and isinstance(node, ast.Constant) and node.value in ROLE_WORDS


def role_comparisons(source: str, filename: str) -> list[str]:
    """Every comparison in `source` that tests a role (`role == ...`, `x.role != ...`,
    `... in (role, ...)`, `"router" == kind`), and every `match` on a role."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare) and any(isinstance(op, COMPARISONS)
                                                 for op in node.ops):
            operands = [node.left, *node.comparators]
            inner = [e for o in operands if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                     for e in o.elts]
            if any(_names_a_role(o) for o in operands) or \
                    any(_names_a_role(e, words=False) for e in inner):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Match) and _names_a_role(node.subject):
            found.append(f"{filename}:{node.lineno}: match {ast.unparse(node.subject)}")
    return found


def test_no_role_comparison_outside_the_kinds() -> None:
    """Behaviour hangs on a node's kind (node.kind_impl), never on its role's string."""
    found = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        if KINDS_DIR in path.parents:
            continue
        found += role_comparisons(path.read_text(encoding="utf-8"),
                                  str(path.relative_to(ROOT)))
    assert found == []


@pytest.mark.parametrize("line", [
    'if node.role == "router": pass',
    'if node.role != "router": pass',
    'routers = [n for n in nodes if n.role in ("router",)]',
    'if role == ROUTER: pass',
    'ok = "router" != kind_name',
    'if n.role == "host": pass',
    'ok = "router" in kinds',
    'ok = "x" in [n.role, "y"]',
    "match node.role:\n    case 'router': pass",
])
def test_the_role_scan_finds_each_spelling(line: str) -> None:
    assert len(role_comparisons(line, "probe.py")) == 1


def test_the_role_scan_leaves_other_comparisons_alone() -> None:
    assert role_comparisons('if kind.cli is None and who.name == "x": pass', "p.py") == []
    assert role_comparisons('ok = word in ("interface", "router")', "p.py") == []


# ---- each kind ------------------------------------------------------------------------

BEHAVIOUR = ("role", "files", "sysctls", "own_namespaces", "cli", "waits_ready",
             "serves_ssh", "routes", "saves_config", "stoppable", "takes_startup_config",
             "shape")


def behaviour(kind: Kind) -> dict[str, Any]:
    return {name: getattr(kind, name) for name in BEHAVIOUR}


ROUTER = {"role": "router", "files": frozenset(NodeFile), "sysctls": ROUTER_SYSCTLS,
          "own_namespaces": True, "cli": "vtysh", "waits_ready": True, "serves_ssh": True,
          "routes": True, "saves_config": True, "stoppable": True,
          "takes_startup_config": True, "shape": NodeShape.ROUND}
HOST = {"role": "host", "files": frozenset(), "sysctls": {}, "own_namespaces": False,
        "cli": None, "waits_ready": False, "serves_ssh": False, "routes": False,
        "saves_config": False, "stoppable": False, "takes_startup_config": False,
        "shape": NodeShape.BOX}


def test_the_frr_kind_is_a_router_whatever_its_image() -> None:
    frr = default_registry().get("frrouting")
    assert isinstance(frr, FrrKind) and frr.name == "frr"
    assert behaviour(frr) == ROUTER
    assert frr.for_node("alpine:3", frr_binds=False) is frr
    assert (frr.username, frr.password) == ("admin", "admin")
    assert (frr.platform, frr.netmiko_platform, frr.scrapli_platform) == (
        "cisco_ios", "cisco_ios", "cisco_iosxe")


@pytest.mark.parametrize(("image", "frr_binds", "expected"), [
    ("alpine:3", False, HOST),
    (None, False, HOST),
    ("quay.io/frrouting/frr:8.4.4", False, ROUTER),
    ("frrouting/frr", False, ROUTER),
    ("ghcr.io/me/frr-debian:10", False, ROUTER),
    ("registry.local/frr@sha256:0123", False, ROUTER),
    ("alpine:3", True, ROUTER),  # files bound into /etc/frr make it a router
    ("myfrrish:1", False, HOST),
])
def test_a_linux_node_is_a_router_when_it_runs_frr(image: str | None, frr_binds: bool,
                                                   expected: dict[str, Any]) -> None:
    linux = default_registry().get("linux")
    node = linux.for_node(image, frr_binds)
    assert behaviour(node) == expected
    # Still the linux kind, with its logins and platforms, whatever it runs.
    assert node.name == "linux" and node.username == linux.username
    assert node.platform == linux.platform


def test_daemons_come_from_the_kind() -> None:
    class Plain:
        startup_config = "router ospf6\n"
        daemons = None

        def frr_file(self, name: str) -> None:
            return None

    assert FrrKind().daemons(Plain()) == ["bgpd", "ospfd", "ospf6d"]
    assert LinuxKind().daemons(Plain()) == []


@pytest.mark.parametrize("name", ["srl", "nokia_srlinux", "ceos", "vr-sros", "cisco_xrd"])
def test_vendor_kinds_are_refused_with_what_to_do(name: str) -> None:
    assert name in CONTAINERLAB_ONLY_KINDS
    with pytest.raises(TopologyError) as caught:
        default_registry().get(name)
    assert str(caught.value) == (f"kind {name!r} needs containerlab with Docker and its "
                                 "vendor image; the namespace backend builds only frr, "
                                 "frrouting, linux")


@pytest.mark.parametrize("name", ["bridge", "ovs-bridge"])
def test_bridge_kinds_are_refused_as_host_bridges(name: str) -> None:
    with pytest.raises(TopologyError) as caught:
        default_registry().get(name)
    assert str(caught.value) == (
        f"kind {name!r} is a bridge of this host, which containerlab attaches containers "
        "to; the namespace backend links nodes only by veth pairs (link them directly, or "
        "use --backend containerlab)")


def test_a_vendor_kind_in_a_topology_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "v.clab.yml"
    path.write_text("name: v\ntopology:\n  nodes:\n    r1: {kind: frr}\n"
                    "    s1: {kind: srl}\n", encoding="utf-8")
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.line == 5 and "'srl' needs containerlab" in str(caught.value)


# ---- the plan keeps the behaviour ------------------------------------------------------

TOPOLOGY = """
name: k
topology:
  nodes:
    r1: {kind: frr}
    r2: {kind: linux, image: quay.io/frrouting/frr:8.4.4}
    r3: {kind: linux, binds: ["r3.conf:/etc/frr/frr.conf"]}
    h1: {kind: linux, image: alpine:3}
  links:
    - endpoints: [r1:eth1, h1:eth1]
"""


def test_a_plan_gives_each_node_its_topology_behaviour(tmp_path: Path) -> None:
    (tmp_path / "r3.conf").write_text("hostname r3\n", encoding="utf-8")
    path = tmp_path / "k.clab.yml"
    path.write_text(TOPOLOGY, encoding="utf-8")
    topo = load_topology(path)
    plan = make_plan(topo)
    again = LabPlan.from_json(json.loads(json.dumps(plan.to_json())))
    for name, node in topo.nodes.items():
        assert behaviour(again.nodes[name].kind_impl) == behaviour(node.kind_impl), name
        assert again.nodes[name].daemons == node.kind_impl.daemons(node)
    assert {n: p.role for n, p in again.nodes.items()} == {
        "r1": "router", "r2": "router", "r3": "router", "h1": "host"}
    assert again.nodes["h1"].daemons == []
    assert [n.name for n in topo.routers()] == ["r1", "r2", "r3"]


def test_a_plan_written_before_kinds_had_behaviour_still_loads() -> None:
    """A lab index entry as runner wrote it before runner/lab/kinds existed."""
    node = {"netns": "", "mgmt_ip": "172.20.20.2", "host_veth": "rv0", "interfaces": [],
            "daemons": [], "username": "admin", "group": None, "labels": {}}
    old = {"lab": "old", "topology": "/x/old.clab.yml", "lab_dir": "/x/clab-old",
           "bridge": "rb0", "subnet": "172.20.20.0/24", "gateway": "172.20.20.1",
           "links": [], "nodes": {
               "r1": {**node, "name": "r1", "kind": "frr", "role": "router"},
               "r2": {**node, "name": "r2", "kind": "linux", "role": "router"},
               "h1": {**node, "name": "h1", "kind": "linux", "role": "host"}}}
    plan = LabPlan.from_json(old)
    assert behaviour(plan.nodes["r1"].kind_impl) == ROUTER
    assert behaviour(plan.nodes["r2"].kind_impl) == ROUTER
    assert behaviour(plan.nodes["h1"].kind_impl) == HOST
    assert plan.to_json() == old  # written back as it was read
    assert behaviour(planned("linux", "router")) == ROUTER
