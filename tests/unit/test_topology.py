"""Parsing and merging of valid topology files, and the deployment plan made from them."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.lab.kinds.frr import daemons_for
from runner.lab.plan import LabPlan, make_plan
from runner.lab.topology import load_topology
from tests.support.base import LAB_DIR, ROOT

PRACTICE = LAB_DIR / "practice.clab.yml"


def write(tmp_path: Path, text: str, name: str = "t.clab.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_practice_lab_parses_as_four_routers_and_two_hosts() -> None:
    topo = load_topology(PRACTICE)
    assert topo.name == "practice"
    assert sorted(n.name for n in topo.routers()) == ["r1", "r2", "r3", "r4"]
    hosts = sorted(n.name for n in topo.nodes.values() if n.role == "host")
    assert hosts == ["h1", "h2"]
    r1 = topo.nodes["r1"]
    assert r1.kind == "linux" and r1.group == "routers"
    assert r1.labels == {"role": "router"}
    assert r1.mgmt_ipv4 == ipaddress.IPv4Address("172.20.20.11")
    assert r1.frr_file("frr.conf") is not None
    assert r1.frr_file("frr.conf").source == LAB_DIR / "practice" / "r1" / "frr.conf"
    assert len(topo.links) == 6
    assert topo.long_name("r1") == "clab-practice-r1"
    assert topo.lab_dir == LAB_DIR / "clab-practice"


def test_merge_order_defaults_kinds_groups_node(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: m
topology:
  defaults:
    kind: linux
    labels: {a: defaults, b: defaults, c: defaults, d: defaults}
  kinds:
    linux:
      image: quay.io/frrouting/frr:8.4.4
      labels: {b: kind, c: kind, d: kind}
  groups:
    g:
      labels: {c: group, d: group}
  nodes:
    r1:
      group: g
      labels: {d: node}
    h1:
      image: alpine:3
""")
    topo = load_topology(path)
    r1 = topo.nodes["r1"]
    assert r1.labels == {"a": "defaults", "b": "kind", "c": "group", "d": "node"}
    assert r1.role == "router"  # an FRR image from the kind
    assert topo.nodes["h1"].role == "host"  # node's own image overrides the kind's


def test_frr_kind_embedded_config_extended_links_and_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: e
prefix: ""
mgmt: {ipv4-subnet: 10.99.0.0/28}
topology:
  nodes:
    a:
      kind: frr
      credentials: {username: netops, password: s3cret}
      startup-config: |
        hostname a
        router isis CORE
      extras: {frr: {daemons: [isisd, zebra]}}
    b: {kind: frrouting}
  links:
    - type: veth
      mtu: 9000
      endpoints:
        - {node: a, interface: eth1}
        - {node: b, interface: eth1}
""")
    topo = load_topology(path)
    a = topo.nodes["a"]
    assert a.role == "router" and a.username == "netops" and a.password == "s3cret"
    assert a.startup_config is not None and "router isis CORE" in a.startup_config
    assert topo.links[0].mtu == 9000
    assert topo.long_name("a") == "a"  # empty prefix: bare node names
    plan = make_plan(topo)
    assert plan.nodes["a"].daemons == ["isisd"]
    # No daemons given: what the config uses, plus the baseline.
    assert plan.nodes["b"].daemons == ["bgpd", "ospfd"]


def test_daemons_inferred_from_startup_config(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: d
topology:
  nodes:
    a:
      kind: frr
      startup-config: |
        router ospf6
        router isis X
        interface eth1
         ip ospf bfd
""")
    node = load_topology(path).nodes["a"]
    assert daemons_for(node) == ["bgpd", "ospfd", "ospf6d", "isisd", "bfdd"]


def test_bound_daemons_file_wins(tmp_path: Path) -> None:
    (tmp_path / "daemons").write_text("bgpd=no\nospfd=yes\nripd=yes\n", encoding="utf-8")
    path = write(tmp_path, """
name: d
topology:
  nodes:
    a:
      kind: linux
      image: frrouting/frr:v8.4.1
      binds: [daemons:/etc/frr/daemons]
""")
    plan = make_plan(load_topology(path))
    assert plan.nodes["a"].daemons == ["ospfd", "ripd"]


def test_plan_addresses_skip_gateway_and_static(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: p
mgmt: {ipv4-subnet: 172.20.40.0/24}
topology:
  defaults: {kind: frr}
  nodes:
    a: {}
    b: {mgmt-ipv4: 172.20.40.3}
    c: {}
    d: {}
""")
    plan = make_plan(load_topology(path))
    ips = {n: p.mgmt_ip for n, p in plan.nodes.items()}
    assert ips == {"a": "172.20.40.2", "b": "172.20.40.3", "c": "172.20.40.4",
                   "d": "172.20.40.5"}
    assert plan.gateway == "172.20.40.1"
    names = [plan.bridge, *(p.host_veth for p in plan.nodes.values())]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)
    assert LabPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_plan_runs_out_of_addresses(tmp_path: Path) -> None:
    nodes = "\n".join(f"    n{i}: {{}}" for i in range(7))
    path = write(tmp_path, f"""
name: full
mgmt: {{ipv4-subnet: 10.5.5.0/29}}
topology:
  defaults: {{kind: frr}}
  nodes:
{nodes}
""")
    with pytest.raises(ValueError, match="has no address left for node n5"):
        make_plan(load_topology(path))


def test_unsupported_runtime_fields_are_warnings_not_errors(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: w
topology:
  nodes:
    a: {kind: frr, memory: 1Gb, ports: ["80:80"]}
""")
    topo = load_topology(path)
    assert len(topo.warnings) == 2
    assert "topology.nodes.a.memory is ignored" in topo.warnings[0]


SHIPPED = sorted(LAB_DIR.glob("*.clab.yml"))
# containerlab's schema as vendored in tests/data/containerlab (README there: the commit)
CLAB_SCHEMA = ROOT / "tests" / "data" / "containerlab" / "clab.schema.json"
CLAB_SCHEMA_RELEASE = "v0.79.0"  # the first release that carries this schema


def clab_schema() -> dict[str, object]:
    """containerlab's schema (release CLAB_SCHEMA_RELEASE), its Go/ECMA letter-or-digit
    class spelled for Python's `re`.

    The JSON text holds `[\\\\p{N}\\\\p{L}]`; `[^\\\\W_]` is the same set (Unicode letters and
    digits) in a form jsonschema's `re`-based `pattern` check can compile.
    """
    text = CLAB_SCHEMA.read_text(encoding="utf-8").replace(r"[\\p{N}\\p{L}]", r"[^\\W_]")
    schema: dict[str, object] = json.loads(text)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_topologies_validate_against_containerlab_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.validate(data, clab_schema())
    load_topology(path)  # and runner deploys them as written


def test_schema_validation_can_fail() -> None:
    # The v0.79.0 schema has no `kind: frr`: why the shipped labs use linux + FRR image.
    bad = {"name": "x", "topology": {"nodes": {"r1": {"kind": "frr"}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, clab_schema())
