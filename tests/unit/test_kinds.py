"""Lab kinds own their behaviour: one module per kind (frr, linux, vendor refusals) behind the
Kind protocol; no code outside runner/lab/kinds compares a role; a lab's saved plan gives
its nodes the same behaviour as the topology did, labs written before included."""

from __future__ import annotations

import ast
import grp
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner.errors import TopologyError
from runner.lab.kinds import (
    CONTAINERLAB_ONLY_KINDS,
    FrrKind,
    Kind,
    LinuxKind,
    NodeShape,
    default_registry,
    planned,
)
from runner.lab.kinds.base import KindBase
from runner.lab.kinds.frr import ROUTER_SYSCTLS
from runner.lab.kinds.frr.files import DEFAULT_FRR_CONF, VTYSH_BIN
from runner.lab.launcher import write_launcher
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

BEHAVIOUR = ("role", "sysctls", "own_namespaces", "cli", "waits_ready",
             "serves_ssh", "routes", "saves_config", "stoppable", "takes_startup_config",
             "shape")


def behaviour(kind: Kind) -> dict[str, Any]:
    return {name: getattr(kind, name) for name in BEHAVIOUR}


ROUTER = {"role": "router", "sysctls": ROUTER_SYSCTLS,
          "own_namespaces": True, "cli": "vtysh", "waits_ready": True, "serves_ssh": True,
          "routes": True, "saves_config": True, "stoppable": True,
          "takes_startup_config": True, "shape": NodeShape.ROUND}
HOST = {"role": "host", "sysctls": {}, "own_namespaces": False,
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


# ---- each kind writes its own files and boots its own part ------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files owned by frr and the lab user")


def _tree(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


@needs_root
def test_each_kind_writes_its_own_files_and_boot(tmp_path: Path) -> None:
    """A router's /etc/frr, account, sshd and boot.sh come from its kind; a host gets only
    the generic launcher, whose last line is a router's boot and nothing for a host."""
    (tmp_path / "r3.conf").write_text("hostname r3\n", encoding="utf-8")
    path = tmp_path / "k.clab.yml"
    path.write_text(TOPOLOGY, encoding="utf-8")
    topo = load_topology(path)
    plan = make_plan(topo)
    for name, node in topo.nodes.items():
        ndir = plan.node_dir(name)
        ndir.mkdir(parents=True)
        node.kind_impl.write_files(ndir, node, plan.nodes[name].daemons, "ssh-ed25519 AAAA k\n")
        write_launcher(plan, plan.nodes[name], node.sysctls)
    router = {"etc-frr/frr.conf", "etc-frr/daemons", "etc-frr/vtysh.conf", "etc/passwd",
              "etc/group", "etc/shadow", "etc/pam-frr", "home/.ssh/authorized_keys",
              "ssh/sshd_config", "ssh/ssh_host_ed25519_key", "ssh/ssh_host_ed25519_key.pub",
              "ssh/ssh_host_ecdsa_key", "ssh/ssh_host_ecdsa_key.pub", "boot.sh", "launch.sh",
              "log/vtysh-boot.log"}
    for name in ("r1", "r2", "r3"):
        ndir = plan.node_dir(name)
        assert _tree(ndir) == router, name
        launch = (ndir / "launch.sh").read_text(encoding="utf-8").splitlines()
        assert launch[-1] == f". {ndir / 'boot.sh'}"
        assert f"{name}:x:" not in (ndir / "etc" / "passwd").read_text(encoding="utf-8")
        assert (ndir / "etc" / "passwd").read_text(encoding="utf-8").splitlines()[-1]\
            .endswith(f":/home/admin:{VTYSH_BIN}")
    r1 = plan.node_dir("r1") / "etc-frr" / "frr.conf"
    assert r1.read_text(encoding="utf-8") == DEFAULT_FRR_CONF.format(name="r1")
    r3 = plan.node_dir("r3") / "etc-frr" / "frr.conf"
    assert r3.read_text(encoding="utf-8") == "hostname r3\n"  # the bound file's text
    h1 = plan.node_dir("h1")
    assert _tree(h1) == {"launch.sh", "log/vtysh-boot.log"}
    assert not any("boot.sh" in line
                   for line in (h1 / "launch.sh").read_text(encoding="utf-8").splitlines())


def test_a_host_writes_nothing_and_boots_nothing(tmp_path: Path) -> None:
    linux = LinuxKind()
    linux.write_files(tmp_path, None, [], "")  # type: ignore[arg-type]  # never read
    assert linux.boot(tmp_path, None) == []  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    assert linux.cli_argv("admin", ["ip", "addr"]) == ["ip", "addr"]
    assert linux.daemon_pids(tmp_path, ["bgpd"]) == {}
    assert linux.entry_pids(tmp_path, ["bgpd"]) == []
    assert linux.sshd_pid(tmp_path) is None and linux.config_file(tmp_path) is None
    uid, gid, groups = linux.exec_identity("admin")
    assert (gid, groups) == (uid, []) and uid >= 42000


@pytest.mark.skipif(not any(g.gr_name == "frrvty" for g in grp.getgrall()),
                    reason="FRR's groups are not on this host")
def test_a_routers_cli_runs_as_its_login_user_without_capabilities() -> None:
    frr = FrrKind()
    uid, gid, groups = frr.exec_identity("admin")
    assert gid == grp.getgrnam("frrvty").gr_gid and set(groups) == {
        grp.getgrnam("frr").gr_gid, gid}
    for spelling in ("vtysh", VTYSH_BIN):
        argv = frr.cli_argv("admin", [spelling, "-c", "show version"])
        assert argv[0] == "setpriv" and f"--reuid={uid}" in argv
        assert argv[-3:] == [VTYSH_BIN, "-c", "show version"]
    assert frr.cli_argv("admin", ["ip", "addr"]) == ["ip", "addr"]  # `--shell`: as given


def test_a_routers_pid_files_are_its_kinds(tmp_path: Path) -> None:
    frr = FrrKind()
    pids = frr.daemon_pids(tmp_path, ["bgpd"])
    assert list(pids) == ["watchfrr", "zebra", "staticd", "bgpd"]
    assert pids["bgpd"] == tmp_path / "run-frr" / "bgpd.pid"
    entry = frr.entry_pids(tmp_path, ["bgpd"])
    assert entry[0] == tmp_path / "run-frr" / "zebra.pid"
    assert entry[-1] == frr.sshd_pid(tmp_path) == tmp_path / "sshd.pid"
    assert frr.config_file(tmp_path) == tmp_path / "etc-frr" / "frr.conf"


def test_the_kinds_share_their_logins_and_platforms() -> None:
    """One place for the login and platform defaults: the kinds' shared base."""
    frr, linux = FrrKind(), LinuxKind()
    assert isinstance(frr, KindBase) and isinstance(linux, KindBase)
    assert {**frr.defaults(), "name": ""} == {**linux.defaults(), "name": ""}
    for kind_class in (FrrKind, LinuxKind):
        own = {k for k in vars(kind_class) if k in KindBase.__dataclass_fields__}
        assert own <= {"name"}, kind_class  # only the name is a kind's own default
    custom = LinuxKind("linux", username="ops", password="pw", platform="frr")
    router = custom.for_node("quay.io/frrouting/frr:8.4.4", frr_binds=False)
    assert isinstance(router, FrrKind)
    assert router.defaults() == custom.defaults()  # a linux node running FRR keeps them
