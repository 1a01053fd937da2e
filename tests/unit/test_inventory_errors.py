"""Bad inventory files: one InventoryError naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InventoryError
from runner.inventory import load_inventory

DEFAULTS = "platform: cisco_ios\n"
PLATFORMS = "arista_eos, cisco_ios, cisco_iosxe, cisco_nxos"
DRIVERS = "netmiko, scrapli, asyncssh"
HOST_FIELDS = "connection_options, data, groups, hostname, password, platform, port, username"


def write_inventory(tmp_path: Path, hosts: str, groups: str = "",
                    defaults: str = DEFAULTS) -> Path:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(hosts, encoding="utf-8")
    (inv / "groups.yaml").write_text(groups, encoding="utf-8")
    (inv / "defaults.yaml").write_text(defaults, encoding="utf-8")
    return inv


# (file with the error, hosts.yaml, groups.yaml, defaults.yaml, line, "field: message")
CASES = {
    "unknown_field": (
        "hosts.yaml", "r1:\n  hostname: 10.0.0.1\n  pasword: x\n", "", DEFAULTS, 3,
        f"r1.pasword: unknown field 'pasword' (expected {HOST_FIELDS})"),
    "unknown_field_in_group": (
        "groups.yaml", "r1: {groups: [core]}\n", "core:\n  platfrom: cisco_ios\n", DEFAULTS, 2,
        "core.platfrom: unknown field 'platfrom'"),
    "unknown_field_in_defaults": (
        "defaults.yaml", "r1: {}\n", "", "platform: cisco_ios\nusernme: admin\n", 2,
        "defaults.usernme: unknown field 'usernme'"),
    "unknown_connection_option": (
        "hosts.yaml", "r1:\n  connection_options:\n    netmiko:\n      platfrom: x\n", "",
        DEFAULTS, 4, "r1.connection_options.netmiko.platfrom: unknown field 'platfrom'"),
    "bad_port": (
        "hosts.yaml", "r1:\n  hostname: 10.0.0.1\n  port: 99999\n", "", DEFAULTS, 3,
        "r1.port: expected a TCP port number"),
    "port_not_a_number": (
        "hosts.yaml", "r1: {port: ssh}\n", "", DEFAULTS, 1,
        "r1.port: expected a TCP port number"),
    "port_boolean": (
        "defaults.yaml", "r1: {}\n", "", "platform: cisco_ios\nport: true\n", 2,
        "defaults.port: expected a TCP port number"),
    "groups_not_a_list": (
        "hosts.yaml", "r1:\n  groups: core\n", "core: {}\n", DEFAULTS, 2,
        "r1.groups: expected a list of group names"),
    "entry_not_a_mapping": (
        "hosts.yaml", "r1: [a]\n", "", DEFAULTS, 1, "r1: expected a mapping"),
    "data_not_a_mapping": (
        "hosts.yaml", "r1:\n  data: [site]\n", "", DEFAULTS, 2, "r1.data: expected a mapping"),
    "file_not_a_mapping": (
        "hosts.yaml", "- r1\n- r2\n", "", DEFAULTS, 1,
        "expected a mapping of names to entries"),
    "unknown_group": (
        "hosts.yaml", "r1: {}\nr2:\n  groups: [core, edge]\n", "core: {}\n", DEFAULTS, 3,
        "r2.groups[1]: group 'edge' is not defined in groups.yaml"),
    "unknown_parent_group": (
        "groups.yaml", "r1: {}\n", "g1: {}\ng2:\n  groups: [g1, g3]\n", DEFAULTS, 3,
        "g2.groups[1]: group 'g3' is not defined"),
    "unknown_platform": (
        "hosts.yaml", "r1:\n  hostname: 10.0.0.1\n  platform: junos_xyz\n", "", DEFAULTS, 3,
        f"r1.platform: unknown platform 'junos_xyz' (runner knows {PLATFORMS})"),
    "unknown_platform_in_group": (
        "groups.yaml", "r1: {groups: [core]}\n", "core:\n  platform: junos_xyz\n", DEFAULTS, 2,
        f"core.platform: unknown platform 'junos_xyz' (runner knows {PLATFORMS})"),
    "unknown_driver": (
        "hosts.yaml", "r1:\n  data:\n    driver: paramiko\n", "", DEFAULTS, 3,
        f"r1.data.driver: unknown driver 'paramiko' (expected one of {DRIVERS})"),
    "unknown_driver_in_group": (
        "groups.yaml", "r1: {groups: [core]}\n", "core:\n  data: {driver: napalm}\n", DEFAULTS,
        2, f"core.data.driver: unknown driver 'napalm' (expected one of {DRIVERS})"),
    "unknown_driver_in_defaults": (
        "defaults.yaml", "r1: {}\n", "", "platform: cisco_ios\ndata:\n  driver: ssh\n", 3,
        f"defaults.data.driver: unknown driver 'ssh' (expected one of {DRIVERS})"),
    "yaml_error": (
        "hosts.yaml", "r1:\n  hostname: [10.0.0.1\n  port: 22\n", "", DEFAULTS, 3,
        "invalid YAML"),
    "duplicate_host": (
        "hosts.yaml", "r1: {}\nr2: {}\nr1: {}\n", "", DEFAULTS, 3,
        "duplicate key 'r1' (first defined on line 1)"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_inventory_names_file_line_and_field(
        tmp_path: Path, case: tuple[str, str, str, str, int, str]) -> None:
    filename, hosts, groups, defaults, line, text = case
    inv = write_inventory(tmp_path, hosts, groups, defaults)
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    err = info.value
    assert err.exit_code == 2
    assert err.path == inv / filename, str(err)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{inv / filename}:{line}: "), str(err)
    assert text in str(err), str(err)


def test_missing_hosts_file(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    with pytest.raises(InventoryError, match="inventory file not found"):
        load_inventory(inv)


def test_containerlab_flat_file_is_checked_the_same_way(tmp_path: Path) -> None:
    flat = tmp_path / "nornir-simple-inventory.yml"
    flat.write_text("r1:\n  username: admin\n  password: admin\n  platform: cisco_ios\n"
                    "  hostname: 172.20.20.2\nr2:\n  hostname: 172.20.20.3\n  port: 0\n",
                    encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(flat)
    assert str(info.value) == f"{flat}:8: r2.port: expected a TCP port number"
    flat.write_text(flat.read_text(encoding="utf-8").replace("port: 0", "platform: cisco_ios"),
                    encoding="utf-8")
    inv = load_inventory(flat)
    assert inv.connect_params("r2", "scrapli").driver_platform == "cisco_iosxe"


def test_driver_is_inherited_through_groups_and_defaults(tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(
        tmp_path, "r1: {groups: [edge]}\nr2: {groups: [core]}\nr3: {data: {driver: netmiko}}\n",
        "core: {groups: [edge], data: {driver: scrapli}}\nedge: {}\n",
        "platform: cisco_ios\ndata: {driver: asyncssh}\n"))
    assert inv.driver_for("r1", "netmiko") == "asyncssh"
    assert inv.driver_for("r2", "netmiko") == "scrapli"
    assert inv.driver_for("r3", "scrapli") == "netmiko"
    assert inv.connect_params("r1", "asyncssh").driver_platform == "cisco_ios"
    assert inv.connect_params("r2", "scrapli").driver_platform == "cisco_iosxe"
    assert inv.connect_params("r3", "netmiko").driver_platform == "cisco_ios"


def test_no_driver_anywhere_means_the_jobs_default(tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(tmp_path, "r1: {}\n"))
    assert inv.driver_for("r1", "scrapli") == "scrapli"
