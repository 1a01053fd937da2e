"""The inventory `lab up` writes, from each router's kind, as all three drivers read it; the
kind registry's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.errors import TopologyError
from runner.inventory.loading import load_inventory
from runner.lab.inventory import CLAB_INVENTORY, write_client_files
from runner.lab.kinds import FrrKind, default_registry
from runner.lab.plan import make_plan
from runner.lab.topology import load_topology

TOPOLOGY = """
name: inv
topology:
  nodes:
    r1: {kind: frr, group: core}
    r2:
      kind: frrouting
      credentials: {username: netops, password: s3cret-pw}
    s1: {kind: eos_like, mgmt-ipv4: 172.20.20.50}
    h1: {kind: linux, image: alpine:3}
  groups:
    core: {}
"""

# A kind whose CLI is not IOS-like: its own platform for runner, netmiko and scrapli.
EOS_LIKE = FrrKind("eos_like", platform="arista_eos", netmiko_platform="arista_eos",
                   scrapli_platform="arista_eos")


def written_lab(tmp_path: Path) -> Path:
    registry = default_registry()
    registry.register(EOS_LIKE)
    path = tmp_path / "inv.clab.yml"
    path.write_text(TOPOLOGY, encoding="utf-8")
    topo = load_topology(path, registry)
    plan = make_plan(topo)
    Path(plan.lab_dir).mkdir()
    write_client_files(plan, topo.nodes)
    return Path(plan.lab_dir)


def read(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_platforms_come_from_each_routers_kind(tmp_path: Path) -> None:
    lab_dir = written_lab(tmp_path)
    defaults = read(lab_dir / "inventory" / "defaults.yaml")
    assert defaults["platform"] == "cisco_ios"  # what most routers (the FRR ones) share
    options = defaults["connection_options"]
    assert options["netmiko"]["platform"] == "cisco_ios"
    assert options["scrapli"]["platform"] == "cisco_iosxe"
    hosts = read(lab_dir / "inventory" / "hosts.yaml")
    assert sorted(hosts) == ["r1", "r2", "s1"]  # routers only
    assert hosts["s1"] == {
        "hostname": "172.20.20.50", "platform": "arista_eos",
        "connection_options": {"netmiko": {"platform": "arista_eos"},
                               "scrapli": {"platform": "arista_eos"}},
        "data": {"lab": "inv", "kind": "eos_like", "netns": "clab-inv-s1", "role": "router"}}
    assert "platform" not in hosts["r1"] and "connection_options" not in hosts["r1"]
    flat = read(lab_dir / CLAB_INVENTORY)
    assert {name: host["platform"] for name, host in flat.items()} == {
        "r1": "cisco_ios", "r2": "cisco_ios", "s1": "arista_eos"}


@pytest.mark.parametrize(("driver", "expected"), [
    ("netmiko", {"r1": "cisco_ios", "r2": "cisco_ios", "s1": "arista_eos"}),
    ("scrapli", {"r1": "cisco_iosxe", "r2": "cisco_iosxe", "s1": "arista_eos"}),
    ("asyncssh", {"r1": "cisco_ios", "r2": "cisco_ios", "s1": "arista_eos"}),
])
def test_every_driver_reads_the_written_inventories(tmp_path: Path, driver: str,
                                                    expected: dict[str, str]) -> None:
    lab_dir = written_lab(tmp_path)
    for inventory in (lab_dir / "inventory", lab_dir / CLAB_INVENTORY):
        inv = load_inventory(inventory)
        params = {name: inv.connect_params(name, driver) for name in inv.hosts}
        assert {n: p.driver_platform for n, p in params.items()} == expected, inventory
        assert params["r2"].username == "netops" and params["r2"].password == "s3cret-pw"
        assert params["r1"].username == "admin" and params["r1"].password == "admin"
        assert params["s1"].hostname == "172.20.20.50"
    extras = load_inventory(lab_dir / "inventory").connect_params("r1", driver).extras
    assert str(lab_dir / "known_hosts") in extras.values()


def test_kind_registry_refuses_a_duplicate_name_or_unknown_platform() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match="kind 'frr' is already registered"):
        registry.register(FrrKind("frr"))
    with pytest.raises(ValueError, match="kind 'frrouting' is already registered"):
        registry.register(FrrKind("frr2"), "frrouting")
    with pytest.raises(ValueError, match="kind 'x' is already registered"):
        registry.register(FrrKind("x"), "x")
    with pytest.raises(ValueError, match=r"platform 'junos' is not in platforms\.yaml"):
        registry.register(FrrKind("vjunos", platform="junos"))
    assert registry.names() == ["frr", "frrouting", "linux"]  # nothing half-registered


def test_kind_registry_names_the_supported_kinds() -> None:
    registry = default_registry()
    assert registry.get("frrouting") is registry.get("frr")
    with pytest.raises(TopologyError, match=r"unknown kind 'frrr' \(expected one of frr, "
                                            "frrouting, linux, or a containerlab kind"):
        registry.get("frrr")
    with pytest.raises(TopologyError, match="kind 'srl' needs containerlab with Docker and "
                                            "its vendor image; the namespace backend builds "
                                            "only frr, frrouting, linux"):
        registry.get("srl")
