"""Bad inventory files: one InventoryError naming the file, the line and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import InventoryError
from runner.inventory.loading import load_inventory

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


CHAIN = "".join(f"g{i}: {{groups: [g{i + 1}]}}\n" for i in range(1500)) + "g1500: {}\n"
LAUGHS = "    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    {c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                 strict=True))

# The red-team pass of issue 12: each a traceback (RecursionError, ValueError) or a crash of
# the whole run before; now one error naming file, line and field, exit code 2, no device
# contacted (test_cli_hostile_inventory below).
HOSTILE = {
    "group_cycle": (
        "groups.yaml", "r1: {groups: [a]}\n", "a: {groups: [b]}\nb: {groups: [a]}\n",
        DEFAULTS, 2, "b.groups[0]: group cycle: a -> b -> a"),
    "group_in_itself": (
        "groups.yaml", "r1: {groups: [a]}\n", "a:\n  groups: [a]\n", DEFAULTS, 2,
        "a.groups[0]: group cycle: a -> a"),
    "group_cycle_of_three": (
        "groups.yaml", "r1: {groups: [x]}\n",
        "x: {}\na: {groups: [x, b]}\nb:\n  groups:\n    - c\nc:\n  groups:\n    - x\n    - a\n",
        DEFAULTS, 9, "c.groups[1]: group cycle: a -> b -> c -> a"),
    "groups_nested_1500_deep": (
        "groups.yaml", "r1: {groups: [g0]}\n", CHAIN, DEFAULTS, 1401,
        "g1400.groups[0]: groups nested deeper than 100 levels (g1400 -> g1401 -> ...)"),
    "password_a_number": (
        "hosts.yaml", "r1:\n  hostname: 10.0.0.1\n  password: 12345\n", "", DEFAULTS, 3,
        "r1.password: expected a string (got 12345)"),
    "hostname_a_list": (
        "hosts.yaml", "r1:\n  hostname: [10.0.0.1]\n", "", DEFAULTS, 2,
        "r1.hostname: expected a string (got a list)"),
    "username_a_number_in_defaults": (
        "defaults.yaml", "r1: {}\n", "", "platform: cisco_ios\nusername: 1234\n", 2,
        "defaults.username: expected a string (got 1234)"),
    "platform_a_number_in_group": (
        "groups.yaml", "r1: {groups: [core]}\n", "core:\n  platform: 7\n", DEFAULTS, 2,
        "core.platform: expected a string (got 7)"),
    "connection_password_a_number": (
        "hosts.yaml", "r1:\n  connection_options:\n    netmiko:\n      password: 1234\n", "",
        DEFAULTS, 4, "r1.connection_options.netmiko.password: expected a string (got 1234)"),
    "secret_a_number": (
        "hosts.yaml", "r1:\n  connection_options:\n    asyncssh:\n      extras:\n"
        "        secret: 5\n", "", DEFAULTS, 5,
        "r1.connection_options.asyncssh.extras.secret: expected a string (got 5)"),
    "strict_host_keys_not_a_boolean": (
        "groups.yaml", "r1: {groups: [core]}\n",
        "core:\n  connection_options:\n    asyncssh:\n      extras: {strict_host_keys: maybe}\n",
        DEFAULTS, 4, "core.connection_options.asyncssh.extras.strict_host_keys: expected true "
        "or false (got 'maybe')"),
    "scrapli_transport_unknown": (
        "defaults.yaml", "r1: {}\n", "",
        "platform: cisco_ios\nconnection_options:\n  scrapli:\n    extras:\n"
        "      transport: telnet\n", 5, "defaults.connection_options.scrapli.extras.transport: "
        "expected 'bin' or 'ssh2' (got 'telnet')"),
    "driver_a_list": (
        "hosts.yaml", "r1:\n  data: {driver: [netmiko]}\n", "", DEFAULTS, 2,
        f"r1.data.driver: expected a driver name: one of {DRIVERS} (got ['netmiko'])"),
    "nested_10000_levels": (
        "hosts.yaml", "r1:\n  data:\n    deep: " + "[" * 10000 + "]" * 10000 + "\n", "",
        DEFAULTS, 3, "r1.data.deep...: nested deeper than 100 levels"),
    "nested_10000_levels_in_defaults": (
        "defaults.yaml", "r1: {}\n", "", "platform: cisco_ios\ndata: " + "{a: " * 10000
        + "1" + "}" * 10000 + "\n", 2, "defaults.data.a...: nested deeper than 100 levels"),
    "billion_laughs": (
        "groups.yaml", "r1: {groups: [core]}\n", "core:\n  data:\n" + LAUGHS, DEFAULTS, 9,
        "core.data.g...: aliases expand this file to more than 1000000 values"),
    "port_5000_digits": (
        "hosts.yaml", "r1:\n  port: 1" + "0" * 5000 + "\n", "", DEFAULTS, 2,
        "r1.port: a number of 5001 characters is too long (at most 1000)"),
}
CASES.update(HOSTILE)


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


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_cli_hostile_inventory_exits_2_and_contacts_no_device(
        tmp_path: Path, case: tuple[str, str, str, str, int, str],
        listener: tuple[int, list[tuple[str, int]]]) -> None:
    port, seen = listener
    filename, hosts, groups, defaults, line, text = case
    # and a good host that points at the listener, which a run would contact
    inv = write_inventory(tmp_path, hosts + f"zz: {{hostname: 127.0.0.1, port: {port}}}\n",
                          groups, defaults)
    job = tmp_path / "job.yml"
    job.write_text("name: facts\nsteps:\n  - command: show version\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(job), "-i", str(inv)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {inv / filename}:{line}: {text}"), proc.stderr
    assert seen == []


STRING_EXTRAS = ["secret", "passphrase", "private_key_passphrase",
                 "auth_private_key_passphrase", "private_key_path", "key_file", "alt_key_file",
                 "known_hosts", "known_hosts_path"]
BOOLEAN_EXTRAS = ["strict_host_keys", "enable_strict_key", "ssh_strict", "system_host_keys",
                  "alt_host_keys", "use_keys", "allow_agent"]


@pytest.mark.parametrize("key", STRING_EXTRAS + BOOLEAN_EXTRAS)
def test_extras_runner_reads_are_typed_and_others_pass_through(tmp_path: Path,
                                                              key: str) -> None:
    bad, expected = ("[x]", "expected a string (got a list)") if key in STRING_EXTRAS \
        else ("maybe", "expected true or false (got 'maybe')")
    inv = write_inventory(tmp_path, f"r1:\n  connection_options:\n    netmiko:\n      extras:\n"
                                    f"        {key}: {bad}\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    assert str(info.value) == (f"{inv / 'hosts.yaml'}:5: r1.connection_options.netmiko.extras."
                               f"{key}: {expected}")
    (inv / "hosts.yaml").write_text(
        "r1:\n  connection_options:\n    netmiko:\n      extras: {fast_cli: false, "
        "global_delay_factor: 2, secret: s3cret, use_keys: yes}\n", encoding="utf-8")
    assert load_inventory(inv).connect_params("r1", "netmiko").extras == {
        "fast_cli": False, "global_delay_factor": 2, "secret": "s3cret", "use_keys": True}
