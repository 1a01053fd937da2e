"""Nornir's inventory semantics, with Nornir itself as the oracle: its own test inventory loads
and every host resolves as `nornir.core.inventory` resolves it; null means unset and
inherits; containerlab's flat file loads as containerlab writes it; a host whose platform
runner cannot drive is an error naming it only when a job targets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from nornir import InitNornir
from nornir.core.inventory import Host

from runner.errors import InventoryError
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.inventory.targets import Targets
from runner.job.prepare import prepare
from tests.support.base import write_inventory

NORNIR_DATA = Path(__file__).parent / "data" / "nornir_inventory"
PLATFORMS = "arista_eos, cisco_ios, cisco_iosxe, cisco_nxos"
ALIASES_TOO = "their napalm, netmiko, scrapli and ansible names work too"
RUNNER_DRIVERS = ("netmiko", "scrapli", "asyncssh")
# napalm's names in Nornir's test inventory, as runner stores and shows them; `junos` is
# juniper_junos (runner has no settings for it) and `linux` no library's: both unchanged
CANONICAL = {"eos": "arista_eos"}


def nornir_oracle(directory: Path) -> dict[str, Host]:
    """The inventory as Nornir's own SimpleInventory plugin loads it."""
    nr = InitNornir(runner={"plugin": "serial"}, logging={"enabled": False}, inventory={
        "plugin": "SimpleInventory", "options": {
            "host_file": str(directory / "hosts.yaml"),
            "group_file": str(directory / "groups.yaml"),
            "defaults_file": str(directory / "defaults.yaml")}})
    return dict(nr.inventory.hosts)


def connection_names(directory: Path) -> set[str]:
    """Every connection_options key the files use, and runner's drivers."""
    import yaml

    names = set(RUNNER_DRIVERS)
    for name in ("hosts.yaml", "groups.yaml"):
        for entry in yaml.safe_load((directory / name).read_text(encoding="utf-8")).values():
            names |= set((entry or {}).get("connection_options") or {})
    defaults = yaml.safe_load((directory / "defaults.yaml").read_text(encoding="utf-8"))
    return names | set(defaults.get("connection_options") or {})


def test_nornirs_own_test_inventory_resolves_field_by_field_as_nornir_does() -> None:
    oracle = nornir_oracle(NORNIR_DATA)
    inv = load_inventory(NORNIR_DATA)
    assert list(inv.hosts) == list(oracle) and len(oracle) == 6
    connections = connection_names(NORNIR_DATA)
    assert {"paramiko", "dummy", "dummy2", "nornir_napalm.napalm"} <= connections
    for name, expected in oracle.items():
        host = inv.hosts[name]
        for attr in ("hostname", "port", "username", "password", "platform"):
            assert getattr(host, attr) == getattr(expected, attr), (name, attr)
        platform = CANONICAL.get(expected.platform, expected.platform)
        assert inv.platform_of(name) == platform, name
        assert [g.name for g in host.groups] == [g.name for g in expected.groups], name
        assert [g.name for g in host.extended_groups()] == \
            [g.name for g in expected.extended_groups()], name
        assert dict(host.items()) == dict(expected.items()), name
        for key in dict(expected.items()):
            assert host[key] == expected[key], (name, key)
        # what templates see of the host is the same resolution
        seen = inv.template_vars(name)
        assert (seen["hostname"], seen["platform"], seen["groups"], seen["data"]) == (
            expected.hostname, platform, [g.name for g in expected.groups],
            dict(expected.items())), name
        for connection in sorted(connections):
            assert host.get_connection_parameters(connection).dict() == \
                expected.get_connection_parameters(connection).dict(), (name, connection)
        for driver in RUNNER_DRIVERS:  # what a session of each driver is given
            want = expected.get_connection_parameters(driver)
            params = inv.connect_params(name, driver)
            assert (params.hostname, params.port, params.username, params.password,
                    params.extras) == (want.hostname, want.port, want.username,
                                       want.password, want.extras), (name, driver)


def test_the_oracle_comparison_sees_a_difference(tmp_path: Path) -> None:
    """The comparison above can fail: a changed value in one file is seen."""
    changed = tmp_path / "inv"
    changed.mkdir()
    for name in ("hosts.yaml", "groups.yaml", "defaults.yaml"):
        (changed / name).write_text((NORNIR_DATA / name).read_text(encoding="utf-8"),
                                    encoding="utf-8")
    groups = changed / "groups.yaml"
    groups.write_text(groups.read_text(encoding="utf-8").replace(
        "password: from_group1", "password: changed"), encoding="utf-8")
    oracle, inv = nornir_oracle(NORNIR_DATA), load_inventory(changed)
    assert inv.hosts["dev2.group_1"].password == "changed" != \
        oracle["dev2.group_1"].password == "from_group1"


NULLS_HOSTS = """\
r1:
  hostname: 10.0.0.1
  port:
  username:
  password:
  platform:
  groups: [edge, core]
  data:
  connection_options:
    netmiko:
      port:
      username: nm-user
      extras:
r2:
  hostname: 10.0.0.2
  groups:
  connection_options:
    scrapli: {port: }
"""
NULLS_GROUPS = """\
edge:
  port:
  groups: [wan]
  data: {tier: edge}
wan:
  port: 2222
  password: from-wan
core:
  port: 3333
  platform: arista_eos
  data: {tier: core, site: ams}
"""
NULLS_DEFAULTS = """\
port:
username: admin
password: from-defaults
platform: cisco_ios
data: {site: fra}
connection_options:
  netmiko:
    port:
    extras: {fast_cli: false}
"""


def test_null_means_unset_and_inherits_depth_first_then_defaults(tmp_path: Path) -> None:
    directory = write_inventory(tmp_path, NULLS_HOSTS, NULLS_GROUPS, NULLS_DEFAULTS)
    inv, oracle = load_inventory(directory), nornir_oracle(directory)
    r1, r2 = inv.hosts["r1"], inv.hosts["r2"]
    # edge (port unset) -> its parent wan (2222) before core (3333): depth first
    assert (r1.port, r1.password, r1.username, inv.platform_of("r1")) == (
        2222, "from-wan", "admin", "arista_eos")
    assert dict(r1.items()) == {"tier": "edge", "site": "ams"}
    assert (r2.port, r2.password, r2.groups, inv.platform_of("r2")) == (
        None, "from-defaults", [], "cisco_ios")
    params = inv.connect_params("r1", "netmiko")
    assert (params.port, params.username, params.password, params.extras) == (
        2222, "nm-user", "from-wan", {"fast_cli": False})
    assert inv.connect_params("r2", "scrapli").port == 22  # nothing anywhere: SSH's
    for name in ("r1", "r2"):
        for attr in ("hostname", "port", "username", "password", "platform"):
            assert getattr(inv.hosts[name], attr) == getattr(oracle[name], attr), (name, attr)
        assert dict(inv.hosts[name].items()) == dict(oracle[name].items())
        for driver in RUNNER_DRIVERS:
            assert inv.hosts[name].get_connection_parameters(driver).dict() == \
                oracle[name].get_connection_parameters(driver).dict()
    # a connection's options written without a value (Nornir's loader fails on it): none
    (directory / "hosts.yaml").write_text(NULLS_HOSTS.replace("scrapli: {port: }", "scrapli:"),
                                          encoding="utf-8")
    assert load_inventory(directory).connect_params("r2", "scrapli").port == 22


def test_a_platform_runner_does_not_drive_is_an_error_only_for_targeted_hosts(
        tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(
        tmp_path, "r1: {}\nsrv1:\n  groups: [servers]\nsw1:\n  platform: junos_xyz\n",
        "servers:\n  platform: linux\n", "platform: cisco_ios\n"))
    assert inv.select(Targets(hosts=["r1"])) == ["r1"]
    with pytest.raises(InventoryError) as info:
        inv.select(Targets(groups=["servers"]))
    assert str(info.value) == (
        f"{inv.source / 'groups.yaml'}:2: servers.platform: host 'srv1': platform 'linux' has "
        f"no settings in runner (runner drives {PLATFORMS}; {ALIASES_TOO})")
    with pytest.raises(InventoryError) as info:
        inv.select(Targets())
    assert str(info.value) == (
        f"{inv.source / 'groups.yaml'}:2: servers.platform: host 'srv1': platform 'linux' has "
        f"no settings in runner (runner drives {PLATFORMS}; {ALIASES_TOO}); 1 more targeted "
        "host(s) too: sw1")
    with pytest.raises(InventoryError) as info:
        inv.select(Targets(hosts=["sw1"]))
    assert str(info.value) == (
        f"{inv.source / 'hosts.yaml'}:5: sw1.platform: host 'sw1': unknown platform "
        "'junos_xyz': not a name of runner, napalm, netmiko, scrapli or ansible (runner "
        f"drives {PLATFORMS})")
    assert inv.select(Targets(platforms=["cisco_ios"])) == ["r1"]


NAPALM_STYLE = """\
r1: {hostname: 10.0.0.1, platform: ios}
r2: {hostname: 10.0.0.2, platform: cisco_iosxe}
r3: {hostname: 10.0.0.3, platform: cisco.ios.ios}
s1: {hostname: 10.0.0.4, platform: eos}
s2: {hostname: 10.0.0.5, platform: arista.eos.eos}
n1: {hostname: 10.0.0.6, platform: nxos_ssh}
n2: {hostname: 10.0.0.7, platform: cisco.nxos.nxos}
"""


@pytest.mark.parametrize(("host", "canonical", "netmiko", "scrapli"), [
    ("r1", "cisco_ios", "cisco_ios", "cisco_iosxe"),          # napalm
    ("r2", "cisco_iosxe", "cisco_ios", "cisco_iosxe"),        # scrapli (runner's own name too)
    ("r3", "cisco_ios", "cisco_ios", "cisco_iosxe"),          # ansible
    ("s1", "arista_eos", "arista_eos", "arista_eos"),         # napalm
    ("s2", "arista_eos", "arista_eos", "arista_eos"),         # ansible
    ("n1", "cisco_nxos", "cisco_nxos", "cisco_nxos"),         # napalm's ssh flavour
    ("n2", "cisco_nxos", "cisco_nxos", "cisco_nxos")])        # ansible
def test_platform_names_of_other_libraries_resolve_to_runners(
        tmp_path: Path, host: str, canonical: str, netmiko: str, scrapli: str) -> None:
    """What inventories written for napalm, scrapli or ansible say is runner's platform, by
    netutils' mapping: stored, shown and given to each driver as runner's."""
    inv = load_inventory(write_inventory(tmp_path, NAPALM_STYLE))
    assert inv.platform_of(host) == canonical
    assert inv.template_vars(host)["platform"] == canonical
    assert inv.connect_params(host, "netmiko").driver_platform == netmiko
    assert inv.connect_params(host, "scrapli").driver_platform == scrapli
    assert inv.connect_params(host, "asyncssh").platform == canonical
    # a job's platform filter may use any library's name, too
    assert host in inv.select(Targets(platforms=[canonical]))


def test_a_job_filter_and_where_take_other_libraries_names(tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(tmp_path, NAPALM_STYLE))
    assert Targets(platforms=["eos", "nxos"]).platforms == ["arista_eos", "cisco_nxos"]
    assert inv.select(Targets(platforms=["eos"])) == ["s1", "s2"]
    assert inv.select(Targets(where={"platform": "arista.eos.eos"})) == ["s1", "s2"]
    assert inv.select(Targets(where={"platform": ["ios", "nxos"]})) == ["r1", "r3", "n1", "n2"]


def test_nornirs_test_inventory_with_a_job_on_group_1(tmp_path: Path) -> None:
    """Nornir's own test inventory, written for nornir_napalm: dev1 says `eos` (runner's
    arista_eos), dev2 `junos` (juniper_junos, which runner has no settings for)."""
    job = tmp_path / "job.yml"
    job.write_text("name: j\ntargets: {groups: [group_1]}\nsteps:\n  - command: show version\n",
                   encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        prepare(job, NORNIR_DATA, tmp_path)
    assert str(info.value) == (
        f"{NORNIR_DATA / 'hosts.yaml'}:42: dev2.group_1.platform: host 'dev2.group_1': platform "
        f"'junos' (juniper_junos) has no settings in runner (runner drives {PLATFORMS}; "
        f"{ALIASES_TOO})")
    job.write_text("name: j\ntargets: {groups: [group_1], platforms: [eos]}\n"
                   "steps:\n  - command: show version\n", encoding="utf-8")
    prep = prepare(job, NORNIR_DATA, tmp_path)
    assert isinstance(prep.inventory, FleetInventory)
    assert prep.hosts == ["dev1.group_1"]
    assert prep.inventory.platform_of("dev1.group_1") == "arista_eos"
    assert prep.inventory.connect_params("dev1.group_1", "netmiko").driver_platform == \
        "arista_eos"
    # `runner validate` names the platform as runner does (untested: it warns so)
    ran = subprocess.run([sys.executable, "-m", "runner", "validate", str(job), "-i",
                          str(NORNIR_DATA)], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "platform arista_eos (hosts dev1.group_1) is untested" in ran.stderr


def test_a_host_without_platform_is_named_only_when_targeted_or_takes_the_jobs(
        tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(tmp_path, "r1: {platform: cisco_ios}\n"
                                         "h1:\n  hostname: 10.0.0.9\nh2: {}\n"))
    assert inv.select(Targets(hosts=["r1"])) == ["r1"]
    with pytest.raises(InventoryError) as info:
        inv.select(Targets())
    assert str(info.value) == (
        f"{inv.source / 'hosts.yaml'}:2: h1: host 'h1' has no platform (set it on the host, "
        f"a group or defaults, or give the job a `platform:`; runner knows {PLATFORMS}); "
        "1 more targeted host(s) too: h2")
    assert info.value.exit_code == 2
    job_platform = inv.with_platform("arista_eos")
    assert job_platform.select(Targets()) == ["r1", "h1", "h2"]
    assert [job_platform.platform_of(h) for h in ("r1", "h1")] == ["cisco_ios", "arista_eos"]
    assert job_platform.connect_params("h1", "scrapli").driver_platform == "arista_eos"
    assert job_platform.select(Targets(platforms=["arista_eos"])) == ["h1", "h2"]
    assert inv.platform_of("h1") is None  # the loaded inventory itself is not changed


# containerlab's nornir-simple-inventory.yml, byte for byte as containerlab renders it
# (core/assets/inventory_nornir_simple.go.tpl; the expected outputs of its
# core/inventory_test.go, github.com/srl-labs/containerlab, BSD-3-Clause): credentials and
# hostname null where a kind or node has none, platform the kind's name (or its scrapli /
# napalm name, empty when the kind declares none), groups from `nornir-group` labels,
# defined nowhere.
CLAB_GROUPS = """---
node4:
    username:
    password:
    platform: linux
    hostname: 172.100.100.14
node1:
    username: admin
    password: NokiaSrl1!
    platform: nokia_srlinux
    hostname: 172.100.100.11
    groups:
      - spine
node2:
    username: admin
    password: NokiaSrl1!
    platform: nokia_srlinux
    hostname: 172.100.100.12
    groups:
      - extra_group
      - second_extra_group
node3:
    username: admin
    password: NokiaSrl1!
    platform: nokia_srlinux
    hostname: 172.100.100.13
    groups:
      - extra_group"""
CLAB_SCRAPLI = """---
node1:
    username: admin
    password: admin
    platform: arista_eos
    hostname:
node2:
    username: admin
    password: admin
    platform: arista_eos
    hostname:
node3:
    username: admin
    password: admin
    platform: arista_eos
    hostname:
node4:
    username:
    password:
    platform: linux
    hostname: """
# CLAB_NORNIR_PLATFORM_NAME_SCHEMA=napalm, kinds without a napalm name (an FRR router
# deployed as kind linux with the FRR image has one only in runner's own lab files)
CLAB_NULL_PLATFORM = """---
asa1:
    username: admin
    password: CiscoAsa1!
    platform:
    hostname: 172.20.20.5
frr1:
    username:
    password:
    platform:
    hostname: 172.20.20.6
ceos1:
    username: admin
    password: admin
    platform: eos
    hostname: 172.20.20.7"""


@pytest.mark.parametrize("text", [CLAB_GROUPS, CLAB_SCRAPLI, CLAB_NULL_PLATFORM],
                         ids=["groups", "scrapli-names", "null-platforms"])
def test_containerlabs_flat_inventory_loads_as_containerlab_writes_it(
        tmp_path: Path, text: str) -> None:
    flat = tmp_path / "nornir-simple-inventory.yml"
    flat.write_text(text, encoding="utf-8")
    inv = load_inventory(flat)
    assert len(inv.hosts) >= 3
    for name, host in inv.hosts.items():
        params = inv.connect_params(name, "netmiko")
        assert params.hostname == (host.hostname or name)
        assert (params.username, params.password) == (host.username, host.password)
    if text is CLAB_GROUPS:
        assert inv.hosts["node4"].username is None and inv.hosts["node4"].password is None
        assert sorted(inv.nornir.groups) == ["extra_group", "second_extra_group", "spine"]
        with pytest.raises(InventoryError, match=r"host 'node2': platform 'nokia_srlinux' "
                                                 r"\(nokia_srl\) has no settings in runner.*1 "
                                                 r"more targeted host\(s\) too: node3"):
            inv.select(Targets(groups=["extra_group"]))
    if text is CLAB_SCRAPLI:
        assert inv.select(Targets(platforms=["arista_eos"])) == ["node1", "node2", "node3"]
    if text is CLAB_NULL_PLATFORM:
        with pytest.raises(InventoryError) as info:
            inv.select(Targets(hosts=["frr1"]))
        assert str(info.value).startswith(f"{flat}:7: frr1: host 'frr1' has no platform")
        assert inv.with_platform("cisco_ios").select(Targets(hosts=["asa1", "frr1"])) == [
            "asa1", "frr1"]


def test_a_host_without_platform_through_the_cli(
        tmp_path: Path, listener: tuple[int, list[tuple[str, int]]]) -> None:
    """`runner run` on an inventory with hosts of other tools' platforms: targeting them
    is exit 2 naming the host, before any device is contacted; targeting a host runner
    can drive does contact it."""
    port, seen = listener
    flat = tmp_path / "nornir-simple-inventory.yml"
    flat.write_text(CLAB_NULL_PLATFORM.replace(
        "    hostname: 172.20.20.6", f"    hostname: 127.0.0.1\n    port: {port}"),
        encoding="utf-8")
    job = tmp_path / "job.yml"
    job.write_text("name: facts\ntargets: {hosts: [frr1]}\ntimeouts: {connect: 3}\n"
                   "steps:\n  - command: show version\n", encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
             str(job), "-i", str(flat), "--json", *args], capture_output=True, text=True,
            check=False, cwd=tmp_path)

    refused = run()
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        f"error: {flat}:7: frr1: host 'frr1' has no platform (set it on the host, a group or "
        f"defaults, or give the job a `platform:`; runner knows {PLATFORMS})"]
    assert seen == []
    job.write_text(job.read_text(encoding="utf-8").replace("name: facts\n",
                                                           "name: facts\nplatform: cisco_ios\n"),
                   encoding="utf-8")
    ran = run()
    assert ran.returncode == 1, ran.stderr  # the listener speaks no SSH: unreachable
    assert seen, "the host with the job's platform was contacted"


def test_prepare_takes_the_jobs_platform_for_hosts_without_one(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, "h1: {hostname: 10.0.0.9}\n")
    job = tmp_path / "job.yml"
    job.write_text("name: j\nplatform: cisco_nxos\nsteps:\n  - command: show version\n",
                   encoding="utf-8")
    prep = prepare(job, inv, tmp_path)
    assert isinstance(prep.inventory, FleetInventory)
    assert prep.inventory.platform_of("h1") == "cisco_nxos"
    assert prep.inventory.connect_params("h1", "netmiko").driver_platform == "cisco_nxos"


@pytest.mark.parametrize("platform", ["cisco_nxos", "arista_eos", "cisco_ios"])
def test_untested_platforms_warn_when_targeted(
        tmp_path: Path, listener: tuple[int, list[tuple[str, int]]], platform: str) -> None:
    """cisco_nxos and arista_eos are IOS's settings that no test has run against such a
    device (platforms.yaml `tested: false`): a run targeting them says so on stderr, and
    runs; a tested platform does not warn."""
    from runner.inventory import platforms

    assert platforms.untested() == ["arista_eos", "cisco_nxos"]
    port, seen = listener
    inv = write_inventory(
        tmp_path, f"d1: {{hostname: 127.0.0.1, port: {port}, platform: {platform}}}\n"
                  "d2: {hostname: 10.0.0.9, platform: cisco_ios}\n")
    job = tmp_path / "job.yml"
    job.write_text("name: j\ntargets: {hosts: [d1]}\ntimeouts: {connect: 3}\n"
                   "steps:\n  - command: show version\n", encoding="utf-8")
    ran = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(job), "-i", str(inv), "--json"], capture_output=True, text=True, check=False,
        cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr  # the listener speaks no SSH: unreachable
    assert seen, "the host was contacted"
    warning = (f"WARNING runner.inventory.fleet: platform {platform} (hosts d1) is untested: its "
               "settings in platforms.yaml are IOS's and no test has run against such a device")
    assert (warning in ran.stderr.splitlines()) == (platform != "cisco_ios"), ran.stderr
