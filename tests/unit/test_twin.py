"""Twins planned from backups without root: FRR detection, interfaces, link inference,
masked secrets, refusals, the generated topology, and the CLI's input errors (nothing
created). The lab tier builds real twins (tests/lab/test_twin.py)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.errors import InputError
from runner.job.backups import BackupRepo
from runner.lab.converge import RouterRouting, bgp_peers, ospf_neighbors
from runner.lab.plan import make_plan
from runner.lab.state import LabIndex, LabState
from runner.lab.topology import Endpoint, load_topology
from runner.lab.twin import frrconf, links, masks
from runner.lab.twin.plan import build, pick_subnet
from runner.redact import MASK
from tests.support.base import LAB_DIR

PRACTICE = {r: (LAB_DIR / "practice" / r / "frr.conf").read_text(encoding="utf-8")
            for r in ("r1", "r2", "r3", "r4")}
SUBNET = ipaddress.IPv4Network("172.20.21.0/24")
FRR = "frr defaults traditional\nhostname {h}\nservice integrated-vtysh-config\n!\n"


def frr(host: str, *ifaces: tuple[str, str | None]) -> str:
    """An FRR config with these (interface, address or None) sections."""
    text = FRR.format(h=host)
    for name, address in ifaces:
        text += f"interface {name}\n" + (f" ip address {address}\n" if address else "") \
            + "exit\n!\n"
    return text


def inferred(configs: dict[str, str]) -> links.Inference:
    return links.infer({h: frrconf.interfaces(c) for h, c in configs.items()})


def test_frr_backups_are_told_from_others() -> None:
    assert all(frrconf.is_frr(c) for c in PRACTICE.values())
    without_version = PRACTICE["r1"].replace("frr version 8.4.4\n", "")
    assert frrconf.is_frr(without_version)  # backup jobs drop it as volatile
    ios = "version 15.2\nhostname sw1\n!\ninterface GigabitEthernet0/1\n ip address 10.0.0.1 " \
          "255.255.255.0\n!\nend\n"
    assert not frrconf.is_frr(ios)


def test_interfaces_and_addresses_are_read_from_a_practice_config() -> None:
    found = {i.name: [str(a) for a in i.addresses] for i in frrconf.interfaces(PRACTICE["r1"])}
    assert found == {"lo": ["10.255.0.1/32"], "eth1": ["10.0.12.0/31"],
                     "eth2": ["10.0.14.1/31"], "eth3": ["10.1.1.1/24"]}


def test_the_practice_ring_is_inferred_and_its_lans_are_stubs() -> None:
    found = inferred(PRACTICE)
    assert sorted(str(lk) for lk in found.links) == [
        "r1:eth1 -- r2:eth1  (10.0.12.0/31)", "r1:eth2 -- r4:eth2  (10.0.14.0/31)",
        "r2:eth2 -- r3:eth1  (10.0.23.0/31)", "r3:eth2 -- r4:eth1  (10.0.34.0/31)"]
    assert found.stubs == {Endpoint("r1", "eth3"): "10.1.1.0/24 is not a point-to-point subnet",
                           Endpoint("r3", "eth3"): "10.3.3.0/24 is not a point-to-point subnet"}
    assert found.notes == []


@pytest.mark.parametrize(("configs", "links_", "note"), [
    ({"a": frr("a", ("e1", "10.0.0.1/30")), "b": frr("b", ("e1", "10.0.0.2/30"))},
     ["a:e1 -- b:e1  (10.0.0.0/30)"], None),
    ({"a": frr("a", ("e1", "10.0.0.1/29")), "b": frr("b", ("e1", "10.0.0.6/29"))},
     ["a:e1 -- b:e1  (10.0.0.0/29)"], None),
    ({"a": frr("a", ("e1", "10.0.0.1/29")), "b": frr("b", ("e1", "10.0.0.2/29")),
      "c": frr("c", ("e1", "10.0.0.3/29"))},
     [], "10.0.0.0/29: 3 interfaces (a:e1, b:e1, c:e1), not a point-to-point link"),
    ({"a": frr("a", ("e1", "10.0.0.1/28")), "b": frr("b", ("e1", "10.0.0.2/28"))}, [], None),
    ({"a": frr("a", ("e1", "10.0.0.0/31"), ("e2", "10.0.0.1/31"))}, [],
     "both ends are on a"),
    ({"a": frr("a", ("e1", "10.0.0.0/31")), "b": frr("b", ("e1", "10.0.0.0/31"))}, [],
     "the same address 10.0.0.0"),
    # two subnets on one cable: one link
    ({"a": frr("a", ("e1", "10.0.0.0/31")) + "interface e1\n ip address 10.9.0.0/31\n",
      "b": frr("b", ("e1", "10.0.0.1/31")) + "interface e1\n ip address 10.9.0.1/31\n"},
     ["a:e1 -- b:e1  (10.0.0.0/31)"], None),
    # a peer already cabled elsewhere is not cabled twice
    ({"a": frr("a", ("e1", "10.0.0.0/31")) + "interface e1\n ip address 10.9.0.0/31\n",
      "b": frr("b", ("e1", "10.0.0.1/31")),
      "c": frr("c", ("e1", "10.9.0.1/31"))},
     ["a:e1 -- b:e1  (10.0.0.0/31)"], "a:e1 -- c:e1 not linked: a:e1 is already linked"),
    ({"a": frr("a", ("e1", None)), "b": frr("b", ("e1", None))}, [], None),
    ({"a": frr("a", ("eth0", "192.168.0.1/31")), "b": frr("b", ("eth0", "192.168.0.0/31"))},
     [], None),
])
def test_only_point_to_point_subnets_with_two_ends_on_two_routers_become_links(
        configs: dict[str, str], links_: list[str], note: str | None) -> None:
    found = inferred(configs)
    assert [str(lk) for lk in found.links] == links_
    if note is None:
        assert found.notes == []
    else:
        assert any(note in n for n in found.notes), found.notes
    linked = {e for lk in found.links for e in (lk.a, lk.b)}
    ends = {Endpoint(h, i.name) for h, c in configs.items() for i in frrconf.interfaces(c)
            if i.name not in frrconf.BUILT_IN}
    assert set(found.stubs) == ends - linked  # every other interface is a stub, with why
    assert all(found.stubs.values())


def test_masked_secrets_are_replaced_by_one_lab_value_and_listed() -> None:
    backup = (f"router bgp 65000\n neighbor 10.255.0.1 password {MASK}\n!\n"
              f"interface eth1\n ip ospf message-digest-key 1 md5 {MASK}\nexit\n")
    text, replaced = masks.unmask(backup)
    assert MASK not in text
    assert text.count(masks.LAB_SECRET) == 2
    assert [(r.line, r.command) for r in replaced] == [
        (2, "neighbor 10.255.0.1 password"), (5, "ip ospf message-digest-key 1 md5")]
    assert masks.unmask(PRACTICE["r1"]) == (PRACTICE["r1"], [])


def test_the_plan_refuses_what_it_cannot_make_faithful_naming_each_host() -> None:
    backups = {**PRACTICE,
               "sw1": "hostname sw1\ninterface GigabitEthernet0/1\n ip address 10.0.0.1 "
                      "255.255.255.0\n",
               "mx1": "system { host-name mx1; }\n",
               "r5": frr("r5", ("GigabitEthernet0/1", "10.0.0.1/31")),
               "r6": frr("r6", ("an-interface-name-too-long", "10.0.0.1/31")),
               "r7": frr("r7") + "interface eth1 vrf red\n ip address 10.0.0.1/31\nexit\n",
               "bad_name": frr("bad_name", ("eth1", "10.0.0.1/31"))}
    hosts = {h: "cisco_ios" for h in backups} | {"mx1": "juniper_junos", "r9": "cisco_ios"}
    plan = build("tw", SUBNET, backups, hosts)
    assert sorted(plan.nodes) == ["r1", "r2", "r3", "r4"]
    assert list(plan.simulated) == ["sw1"]  # IOS: a simulated device seeded with it
    assert plan.without_backup == ["r9"]
    problems = {p.host: p.reason for p in plan.problems}
    assert "sw1" not in problems
    assert problems["mx1"].startswith("platform juniper_junos has no twin")
    assert problems["r5"] == ("line 5 of its backup: interface 'GigabitEthernet0/1' cannot be "
                              "a Linux interface name (an FRR twin router's): no '/', ':' or "
                              "spaces")
    assert "at most 15" in problems["r6"]
    assert "VRFs (red)" in problems["r7"]
    assert "not a valid hostname" in problems["bad_name"]


def test_no_host_with_a_backup_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no host of the inventory has a backup"):
        build("tw", SUBNET, {"x": PRACTICE["r1"]}, {"r1": None})


def test_the_generated_topology_loads_and_plans_with_dummy_stubs(tmp_path: Path) -> None:
    plan = build("tw", SUBNET, PRACTICE, dict.fromkeys(PRACTICE, "cisco_ios"))
    for rel, text in plan.files().items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    path = tmp_path / "tw.clab.yml"
    path.write_text(plan.topology_text(), encoding="utf-8")
    topo = load_topology(path)
    assert sorted(topo.nodes) == ["r1", "r2", "r3", "r4"]
    assert all(n.kind == "frr" for n in topo.nodes.values())
    assert topo.nodes["r1"].startup_config == PRACTICE["r1"]
    assert len(topo.links) == 4
    assert sorted(str(s.end) for s in topo.stubs) == ["r1:eth3", "r3:eth3"]
    lab = make_plan(topo)
    assert lab.subnet == "172.20.21.0/24"
    assert lab.nodes["r1"].stubs == ["eth3"]
    assert sorted(lab.nodes["r1"].interfaces) == ["eth1", "eth2", "eth3"]
    assert lab.nodes["r2"].stubs == []
    assert "stubs" not in lab.to_json()["nodes"]["r2"]  # plans without stubs read as before


def test_links_come_from_a_containerlab_file_when_given(tmp_path: Path) -> None:
    topo = load_topology(LAB_DIR / "practice.clab.yml")
    plan = build("tw", SUBNET, PRACTICE, dict.fromkeys(PRACTICE, "cisco_ios"), topo)
    assert not plan.inferred
    assert sorted(f"{a} -- {b}" for a, b in plan.links) == [
        "r1:eth1 -- r2:eth1", "r2:eth2 -- r3:eth1", "r3:eth2 -- r4:eth1",
        "r4:eth2 -- r1:eth2"]
    assert plan.stubs == {Endpoint("r1", "eth3"): "its peer h1:eth1 is not in the twin",
                          Endpoint("r3", "eth3"): "its peer h2:eth1 is not in the twin"}


def test_a_free_subnet_is_picked_beside_other_labs_and_routes() -> None:
    taken = [ipaddress.IPv4Network("172.20.20.0/24"), ipaddress.IPv4Network("172.20.21.0/24"),
             ipaddress.IPv4Network("172.20.22.128/25")]
    assert pick_subnet(taken) == ipaddress.IPv4Network("172.20.23.0/24")
    with pytest.raises(InputError, match="--mgmt-subnet"):
        pick_subnet([ipaddress.IPv4Network("172.20.0.0/16")])


# ---- the CLI's input errors: one line, exit 2, nothing created ------------------------------


def twin_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNNER_HOME": str(tmp_path / "home"),
           "RUNNER_LAB_INDEX": str(tmp_path / "index")}
    return subprocess.run([sys.executable, "-m", "runner", "twin", *args], capture_output=True,
                          text=True, check=False, cwd=tmp_path, env=env)


@pytest.fixture
def production(tmp_path: Path) -> tuple[Path, Path]:
    """A backup repository of the practice routers and an inventory naming them."""
    backups = tmp_path / "backups"
    BackupRepo(backups).commit(PRACTICE, "runner backup run 1")
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    hosts = {h: {"hostname": f"192.0.2.{i}", "groups": ["routers"]}
             for i, h in enumerate(PRACTICE, 1)}
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    (inventory / "groups.yaml").write_text(yaml.safe_dump(
        {"routers": {"platform": "cisco_ios", "data": {"site": "ams"}}}), encoding="utf-8")
    return backups, inventory


def assert_refused(proc: subprocess.CompletedProcess[str], tmp_path: Path, text: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ")
    assert text in proc.stderr, proc.stderr
    assert not (tmp_path / "home" / "twins").exists() or \
        not any((tmp_path / "home" / "twins").iterdir())


def test_bad_backup_directories_are_refused(tmp_path: Path,
                                            production: tuple[Path, Path]) -> None:
    _, inventory = production
    proc = twin_cli(tmp_path, "up", "--from-backups", str(tmp_path / "nope"), "-i",
                    str(inventory))
    assert_refused(proc, tmp_path, "nope: not a directory")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "r1.cfg").write_text(PRACTICE["r1"], encoding="utf-8")
    proc = twin_cli(tmp_path, "up", "--from-backups", str(tmp_path / "plain"), "-i",
                    str(inventory))
    assert_refused(proc, tmp_path, "not a backup repository with backups in it")


@pytest.mark.parametrize(("subnet", "why"), [
    ("8.8.8.0/24", "is not private"), ("10.0.0.0/30", "too small"),
    ("nonsense", "is not an IPv4 subnet")])
def test_a_bad_management_subnet_is_refused(tmp_path: Path, production: tuple[Path, Path],
                                            subnet: str, why: str) -> None:
    backups, inventory = production
    proc = twin_cli(tmp_path, "up", "--from-backups", str(backups), "-i", str(inventory),
                    "--mgmt-subnet", subnet)
    assert proc.returncode == 2 and why in proc.stderr and "--mgmt-subnet" in proc.stderr
    assert not (tmp_path / "home" / "twins").exists()


def test_an_inventory_with_no_backed_up_host_is_refused(
        tmp_path: Path, production: tuple[Path, Path]) -> None:
    backups, _ = production
    other = tmp_path / "other"
    other.mkdir()
    (other / "hosts.yaml").write_text("sw9: {hostname: 192.0.2.9}\n", encoding="utf-8")
    proc = twin_cli(tmp_path, "up", "--from-backups", str(backups), "-i", str(other))
    assert_refused(proc, tmp_path, "no host of the inventory has a backup")


def test_a_backup_naming_an_interface_frr_cannot_create_is_refused(
        tmp_path: Path, production: tuple[Path, Path]) -> None:
    backups, inventory = production
    bad = PRACTICE["r2"].replace("interface eth2", "interface Ethernet1/2")
    BackupRepo(backups).commit({**PRACTICE, "r2": bad}, "runner backup run 2")
    proc = twin_cli(tmp_path, "up", "--from-backups", str(backups), "-i", str(inventory))
    assert_refused(proc, tmp_path, "1 host(s) cannot be made faithful in the twin; "
                   "--skip-unfaithful builds the others:\n  r2: line 19 of its backup: "
                   "interface 'Ethernet1/2' cannot be a Linux interface name")


def test_a_name_already_up_is_refused(tmp_path: Path, production: tuple[Path, Path]) -> None:
    backups, inventory = production
    other = tmp_path / "lab" / "busy.clab.yml"
    other.parent.mkdir()
    other.write_text("name: busy\ntopology:\n  nodes:\n    r1: {kind: frr}\n", encoding="utf-8")
    LabIndex(tmp_path / "index").save(LabState("namespace", make_plan(load_topology(other)),
                                               "up"))
    proc = twin_cli(tmp_path, "up", "--from-backups", str(backups), "-i", str(inventory),
                    "--name", "busy")
    assert_refused(proc, tmp_path, f"a lab named 'busy' is already up (from {other})")
    proc = twin_cli(tmp_path, "down", "busy")
    assert proc.returncode == 2
    assert "lab 'busy' is not a twin" in proc.stderr
    assert json.loads((tmp_path / "index" / "busy.json").read_text())["plan"]["lab"] == "busy"


def test_sync_and_down_of_a_twin_that_is_not_up(tmp_path: Path) -> None:
    proc = twin_cli(tmp_path, "sync", "ghost")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no twin named 'ghost' (`runner twin up` builds one)"
    proc = twin_cli(tmp_path, "down", "ghost")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "twin ghost is not up; nothing left to remove"


def test_the_twin_inventory_keeps_production_names_groups_and_data(
        tmp_path: Path, production: tuple[Path, Path]) -> None:
    """What `lab up` wrote (the twin's addresses and logins) with production's groups and
    data, so jobs that target production's groups target the twin's hosts."""
    from runner.inventory.loading import load_inventory
    from runner.lab.twin import inventory as twin_inventory

    _, prod_dir = production
    (prod_dir / "defaults.yaml").write_text("data: {ntp: 192.0.2.123}\npassword: prod-pw\n",
                                            encoding="utf-8")
    (prod_dir / "groups.yaml").write_text(yaml.safe_dump({
        "routers": {"platform": "cisco_ios", "password": "group-pw", "groups": ["ams"],
                    "data": {"role": "core"}},
        "ams": {"data": {"site": "ams"}}, "unused": {"data": {"x": 1}}}), encoding="utf-8")
    lab_dir = tmp_path / "clab-tw"
    (lab_dir / "inventory").mkdir(parents=True)
    (lab_dir / "inventory" / "hosts.yaml").write_text(yaml.safe_dump(
        {h: {"hostname": f"172.20.21.{i}", "data": {"lab": "tw", "kind": "frr"}}
         for i, h in enumerate(PRACTICE, 2)}), encoding="utf-8")
    (lab_dir / "inventory" / "defaults.yaml").write_text(yaml.safe_dump(
        {"username": "admin", "password": "admin", "platform": "cisco_ios",
         "data": {"lab": "tw"}}), encoding="utf-8")
    sim_inv = tmp_path / "sim" / "inventory"
    sim_inv.mkdir(parents=True)
    (sim_inv / "hosts.yaml").write_text(yaml.safe_dump(
        {"sw1": {"hostname": "127.77.0.1", "port": 40022, "groups": ["sim"]}}),
        encoding="utf-8")
    (sim_inv / "defaults.yaml").write_text(yaml.safe_dump(
        {"username": "admin", "password": "sim-pw", "platform": "cisco_ios",
         "connection_options": {"asyncssh": {"extras": {"known_hosts": "/sim/kh"}}}}),
        encoding="utf-8")
    hosts = yaml.safe_load((prod_dir / "hosts.yaml").read_text(encoding="utf-8"))
    hosts["sw1"] = {"hostname": "192.0.2.20", "groups": ["ams"], "data": {"rack": 4}}
    (prod_dir / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    written = twin_inventory.write(lab_dir / "inventory", "tw", load_inventory(prod_dir),
                                   lab=True, sim={"inventory": str(sim_inv)},
                                   sim_platforms={"sw1": "cisco_iosxe"})
    twin = load_inventory(written)
    assert sorted(twin.hosts) == sorted([*PRACTICE, "sw1"])
    sw1 = twin.hosts["sw1"]
    assert (sw1.hostname, sw1.port, sw1.password, sw1.platform) == (
        "127.77.0.1", 40022, "sim-pw", "cisco_iosxe")
    assert [g.name for g in sw1.groups] == ["ams"] and sw1["rack"] == 4
    assert sw1["kind"] == "simulated" and sw1["twin"] == "tw"
    assert sw1.get_connection_parameters("asyncssh").extras == {"known_hosts": "/sim/kh"}
    r1 = twin.hosts["r1"]
    assert r1.hostname == "172.20.21.2" and r1.password == "admin"
    assert [g.name for g in r1.groups] == ["routers"]
    assert r1["role"] == "core" and r1["site"] == "ams" and r1["ntp"] == "192.0.2.123"
    assert r1["lab"] == "tw" and r1["twin"] == "tw"
    assert "unused" not in twin.nornir.groups
    text = "".join(p.read_text(encoding="utf-8") for p in written.glob("*.yaml"))
    assert "prod-pw" not in text and "group-pw" not in text  # production's logins stay home


def test_the_report_names_bgp_peers_no_twin_router_has() -> None:
    from runner.lab.twin.service import Report

    plan = build("tw", SUBNET, PRACTICE, dict.fromkeys(PRACTICE, "cisco_ios"))
    report = Report(plan, "a" * 40, Path("backups"), routing=[
        RouterRouting("r1", {"10.255.0.2@eth1:10.0.12.0": "Full/-"},
                      {"10.255.0.2": "Established", "192.0.2.99": "Active"}),
        RouterRouting("r2", {}, {"10.255.0.1": "Established"})],
        faithful={"r1": "", "r2": "--- a\n+++ b\n"}, converged=False)
    assert report.outside() == {"r1": ["192.0.2.99"]}
    data = report.to_json()
    assert data["peers_outside"] == {"r1": ["192.0.2.99"]}
    assert data["configs_equal"] == ["r1"] and list(data["config_differs"]) == ["r2"]
    assert data["links"][0] == {"a": "r1:eth1", "b": "r2:eth1", "subnet": "10.0.12.0/31"}
    assert data["stubs"]["r1:eth3"] == "10.1.1.0/24 is not a point-to-point subnet"
    assert report.unfaithful == ["r2"]



def test_a_simulated_device_serves_its_backup_as_its_running_config() -> None:
    """A backup of a simulated device, masks replaced, seeds a device whose running config
    is that backup again once masked (what `twin up` checks for simulated devices)."""
    from runner.inventory import platforms
    from runner.job.diffing import normalize
    from runner.lab.sim import fleet as fleet_files
    from runner.lab.sim.cli import Device
    from runner.lab.twin import simulated
    from runner.redact import Redactor

    platform = platforms.get("cisco_ios")
    assert platform is not None
    mask = Redactor(patterns=platform.secrets).text
    backup = normalize(mask(Device.default("sw1", 7).running_config()), platform.volatile)
    assert MASK in backup  # the enable secret and SNMP community
    config, replaced = masks.unmask(backup)
    assert {r.command for r in replaced} == {
        "username admin privilege 15 secret 9", "snmp-server community"}
    served = simulated.served_config("sw1", config)
    assert normalize(Redactor([masks.LAB_SECRET], platform.secrets).text(served),
                     platform.volatile) == backup
    assert simulated.STATE == fleet_files.STATE
    plan = build("tw", SUBNET, {"sw1": backup}, {"sw1": "cisco_ios"})
    assert plan.nodes == {} and plan.simulated["sw1"].config == config
    assert plan.files() == {"sim-configs/sw1.cfg": config}


FRR_JSON = Path(__file__).parent / "data" / "frr_routing"


def frr_routing(node: str, suffix: str = "") -> RouterRouting:
    """A router's routing as FRR's real JSON says it (tests/unit/data/frr_routing)."""
    def load(what: str) -> dict[str, object]:
        data = json.loads((FRR_JSON / f"{node}-{what}{suffix}.json").read_text("utf-8"))
        assert isinstance(data, dict)
        return data

    return RouterRouting(node, ospf_neighbors(load("ospf")), bgp_peers(load("bgp")))


def test_frr_routing_json_is_read_as_the_lab_reads_it() -> None:
    r1 = frr_routing("r1")
    assert r1.ospf == {"10.255.0.2@eth1:10.0.12.0": "Full/-",
                       "10.255.0.4@eth2:10.0.14.1": "Full/-"}
    assert r1.bgp == {"10.255.0.2": "Established",
                      "10.255.0.3": "Established", "10.255.0.4": "Established"}
    down = frr_routing("r1", "-down")
    assert down.bgp["10.255.0.3"] == "Idle (Admin)"


def test_the_same_routing_as_production_has_no_difference() -> None:
    from runner.lab.twin.production import compare, comparisons

    for node in ("r1", "r3"):
        prod = frr_routing(node)
        assert compare(prod, prod) == []
    # a DR election that went the other way is no difference: Full is Full
    prod = RouterRouting("r1", {"10.255.0.2@eth1:10.0.12.0": "Full/DR"}, {})
    twin = RouterRouting("r1", {"10.255.0.2@eth1:10.0.12.0": "Full/Backup"}, {})
    assert compare(prod, twin) == []
    found = comparisons({"r1": prod}, [twin], {}, ["sw1"])
    assert found["r1"].same is True and not found["r1"].failed
    assert found["r1"].lines() == ["r1: same as production"]
    assert found["sw1"].same is None and not found["sw1"].failed
    assert found["sw1"].lines() == ["sw1: simulated: routing not compared (the fleet "
                                    "simulator runs no routing protocols)"]
    assert found["sw1"].to_json()["compared"] is False


def test_each_difference_with_production_is_named() -> None:
    """Production after the backup: r1 shut its BGP neighbour r3, r3 shut its link to r4;
    the twin, built from the backup, has both up."""
    from runner.lab.twin.production import comparisons

    twin = [frr_routing("r1"), frr_routing("r3")]
    prod = {n: frr_routing(n, "-down") for n in ("r1", "r3")}
    found = comparisons(prod, twin, {}, [])
    r1, r3 = found["r1"], found["r3"]
    assert r1.failed and r1.same is False
    assert r1.lines() == ["r1: DIFFERS from production:",
                          "  BGP 10.255.0.3 production Idle (Admin), twin Established"]
    assert r3.lines() == [
        "r3: DIFFERS from production:",
        "  OSPF 10.255.0.4@eth2:10.0.34.0 production has no such neighbour, twin Full/-",
        "  BGP 10.255.0.1 production Active, twin Established"]
    assert r3.to_json()["differences"][0] == {
        "protocol": "OSPF", "key": "10.255.0.4@eth2:10.0.34.0", "production": None,
        "twin": "Full/-", "expected": None}
    # the other way round: the twin lacks what production has
    back = comparisons({"r3": frr_routing("r3")}, [frr_routing("r3", "-down")], {}, [])
    assert "  OSPF 10.255.0.4@eth2:10.0.34.0 production Full/-, twin has no such " \
           "neighbour" in back["r3"].lines()


def test_peers_outside_the_twin_are_expected_differences_not_failures() -> None:
    from runner.lab.twin.production import comparisons

    prod = RouterRouting("r1", {}, {"10.255.0.2": "Established", "192.0.2.99": "Established"})
    twin = RouterRouting("r1", {}, {"10.255.0.2": "Established", "192.0.2.99": "Active"})
    found = comparisons({"r1": prod}, [twin], {"r1": ["192.0.2.99"]}, [])["r1"]
    assert not found.failed and found.same is True
    assert found.lines() == [
        "r1: same as production (apart from 1 expected difference(s))",
        "  BGP 192.0.2.99 production Established, twin Active (expected: no twin router "
        "has this address: it never comes up in the twin)"]
    assert found.to_json()["differences"] == []
    assert found.to_json()["expected_differences"][0]["key"] == "192.0.2.99"
    # a peer outside the twin that production does not have at all is drift, not expected
    drift = comparisons({"r1": RouterRouting("r1", {}, {"10.255.0.2": "Established"})},
                        [twin], {"r1": ["192.0.2.99"]}, [])["r1"]
    assert drift.failed
    assert drift.lines()[1] == "  BGP 192.0.2.99 production has no such peer, twin Active"


def test_a_production_host_that_cannot_be_read_is_said_not_skipped(tmp_path: Path) -> None:
    """A real session attempt: a port nothing listens on, a host with a password; the
    error class and message are reported, the password never."""
    from runner.inventory.loading import load_inventory
    from runner.lab.twin.production import comparisons, read
    from tests.support.base import free_port

    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(yaml.safe_dump({
        "r1": {"hostname": "127.0.0.1", "port": free_port(), "platform": "cisco_ios",
               "username": "admin", "password": "Prod-Pw-93ab",
               "data": {"driver": "asyncssh"}},
        "r2": {"hostname": "127.0.0.1", "port": free_port(), "platform": "cisco_ios",
               "username": "admin", "password": "Prod-Pw-93ab"}}), encoding="utf-8")
    found = read(load_inventory(inv), {"r1": ["ospfd", "bgpd"], "r2": ["bgpd"]})
    assert sorted(found) == ["r1", "r2"]
    for routing in found.values():
        assert routing.error is not None and routing.error.startswith("ConnectFailed: ")
        assert "Prod-Pw-93ab" not in routing.error
    result = comparisons(found, [RouterRouting("r1"), RouterRouting("r2")], {}, [])
    assert all(c.failed and not c.compared for c in result.values())
    assert result["r1"].lines()[0].startswith(
        "r1: NOT COMPARED: production could not be read: ConnectFailed: ")
    assert result["r1"].to_json()["same"] is None


def test_no_production_says_every_node_was_not_compared() -> None:
    from runner.lab.twin.production import NOT_ASKED, not_asked
    from runner.lab.twin.service import Report

    plan = build("tw", SUBNET, PRACTICE, dict.fromkeys(PRACTICE, "cisco_ios"))
    report = Report(plan, "a" * 40, Path("backups"), routing=[RouterRouting("r1")],
                    production=not_asked(plan.nodes, []), production_asked=False)
    data = report.to_json()
    assert data["production_compared"] is False
    assert sorted(data["production"]) == ["r1", "r2", "r3", "r4"]
    assert data["production"]["r1"]["note"] == NOT_ASKED
    assert report.unlike_production == []


def test_routing_that_did_not_converge_as_in_production_is_no_failure() -> None:
    """A twin whose not-up sessions are production's own (down there too, or a peer no
    twin router has) exits 0; one that differs, or whose production was not read, 1."""
    from runner.lab.twin import commands
    from runner.lab.twin.production import comparisons, not_asked
    from runner.lab.twin.service import Report

    plan = build("tw", SUBNET, {h: PRACTICE[h] for h in ("r1", "r3")},
                 {"r1": "cisco_ios", "r3": "cisco_ios"})
    down = [frr_routing("r1", "-down"), frr_routing("r3", "-down")]
    assert not any(r.converged for r in down)

    def report(production: dict[str, RouterRouting] | None) -> Report:
        made = Report(plan, "a" * 40, Path("backups"), routing=down,
                      faithful={"r1": "", "r3": ""}, converged=False)
        if production is None:
            made.production, made.production_asked = not_asked(plan.nodes, []), False
        else:
            made.production = comparisons(production, down, made.outside(), [])
        return made

    alike = report({r.node: r for r in down})
    assert alike.as_production and alike.to_json()["as_production"] is True
    commands._exit(alike)  # no SystemExit: exit 0
    for unlike in (report({"r1": frr_routing("r1"), "r3": down[1]}), report(None),
                   report({"r1": down[0], "r3": RouterRouting("r3", error="ConnectFailed: x")})):
        assert not unlike.as_production
        with pytest.raises(SystemExit) as exited:
            commands._exit(unlike)
        assert exited.value.code == 1


def test_a_twin_held_by_a_machine_that_died_is_free_again(tmp_path: Path) -> None:
    """A rehearsal's process group killed outright (the machine lost) while it holds a
    twin: the next user is refused while it lives, naming it, and gets the twin once it
    is gone (the kernel drops the lock with its holder; nothing to clean up by hand)."""
    import signal

    from runner.lab.twin import uselock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from runner.lab.twin import uselock\n"
         "with uselock.held(Path(sys.argv[1]), 'tw', 'a rehearsal of job ntp'):\n"
         "    print('held', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(InputError) as refused, \
                uselock.held(tmp_path, "tw", "`runner twin down tw`"):
            pass
        assert f"in use by a rehearsal of job ntp (pid {holder.pid}" in str(refused.value)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        waited: list[str] = []
        with uselock.waiting_for(tmp_path, "tw", "a rehearsal of job bgp", None,
                                 waited.append) as ours:
            assert ours and waited == []  # free at once: no wait for a dead holder
            assert "a rehearsal of job bgp" in uselock.lock_path(tmp_path, "tw").read_text()
        assert uselock.lock_path(tmp_path, "tw").read_text() == ""  # released, said so
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
