"""The practice lab end to end: routing converges, hosts ping across, SSH clients configure it."""

from __future__ import annotations

import json
import uuid

import paramiko
import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException
from nornir import InitNornir
from nornir_netmiko.tasks import netmiko_send_command
from scrapli import AuthOptions, Cli, TransportBinOptions, TransportSsh2Options

from runner.lab.converge import routing
from tests.support.lab import RunningLab, runner, status_json


def netmiko_session(lab: RunningLab, node: str, **kwargs: object) -> ConnectHandler:
    params: dict[str, object] = {
        "device_type": "cisco_ios", "host": lab.ip(node), "username": "admin",
        "password": "admin", "ssh_strict": True, "system_host_keys": False,
        "alt_host_keys": True, "alt_key_file": str(lab.known_hosts), "conn_timeout": 10,
    }
    params.update(kwargs)
    return ConnectHandler(**params)


def scrapli_session(lab: RunningLab, node: str, transport: str = "bin") -> Cli:
    options = (TransportBinOptions(known_hosts_path=str(lab.known_hosts), enable_strict_key=True)
               if transport == "bin" else
               TransportSsh2Options(known_hosts_path=str(lab.known_hosts)))
    return Cli(host=lab.ip(node), definition_file_or_name="cisco_iosxe",
               auth_options=AuthOptions(username="admin", password="admin"),
               transport_options=options)


def running_config(lab: RunningLab, node: str) -> str:
    return runner("lab", "exec", "--lab", str(lab.topology), node, "--",
                  "show", "running-config").stdout


def test_status_lists_every_node_healthy(practice_lab: RunningLab) -> None:
    st = status_json(practice_lab.topology)
    assert st["backend"] == "namespace"
    nodes = {n["name"]: n for n in st["nodes"]}  # type: ignore[attr-defined]
    assert set(nodes) == {"r1", "r2", "r3", "r4", "h1", "h2"}
    for name in ("r1", "r2", "r3", "r4"):
        n = nodes[name]
        assert n["role"] == "router" and n["running"] and n["ssh"] is True
        assert n["mgmt_ip"] == practice_lab.ip(name)
        assert set(n["daemons"]) >= {"watchfrr", "zebra", "staticd", "ospfd", "bgpd"}
        assert all(n["daemons"].values())
    assert nodes["h1"]["role"] == "host" and nodes["h1"]["ssh"] is None


def test_ospf_and_bgp_converge_and_carry_the_host_lans(practice_lab: RunningLab) -> None:
    r1 = routing(practice_lab.labs, practice_lab.state, "r1")
    assert r1.converged
    assert len(r1.ospf) == 2  # r2 and r4
    assert set(r1.bgp) == {"10.255.0.2", "10.255.0.3", "10.255.0.4"}
    routes = json.loads(runner("lab", "exec", "--lab", str(practice_lab.topology), "r1", "--",
                               "show", "ip", "route", "10.3.3.0/24", "json").stdout)
    entry = routes["10.3.3.0/24"][0]
    assert entry["protocol"] == "bgp" and entry["selected"] is True


def test_host_pings_the_other_host_across_the_routers(practice_lab: RunningLab) -> None:
    proc = runner("lab", "exec", "--lab", str(practice_lab.topology), "h1", "--",
                  "ping", "-c", "3", "-W", "2", "10.3.3.10")
    assert " 0% packet loss" in proc.stdout
    trace = runner("lab", "exec", "--lab", str(practice_lab.topology), "h1", "--",
                   "ip", "route", "get", "10.3.3.10").stdout
    assert "via 10.1.1.1" in trace


def test_exec_runs_vtysh_and_shell_inside_the_router(practice_lab: RunningLab) -> None:
    version = runner("lab", "exec", "--lab", str(practice_lab.topology), "r2", "--",
                     "show", "version").stdout
    assert "FRRouting 8" in version
    hostname = runner("lab", "exec", "--lab", str(practice_lab.topology), "--shell", "r2",
                      "--", "hostname").stdout
    assert hostname.strip() == "r2"
    bad = runner("lab", "exec", "--lab", str(practice_lab.topology), "r2", "--", "show",
                 "bogus", check=False)
    assert bad.returncode != 0


def test_netmiko_pushes_config_that_scrapli_reads_back(practice_lab: RunningLab) -> None:
    marker = f"netmiko-{uuid.uuid4().hex[:8]}"
    conn = netmiko_session(practice_lab, "r2")
    try:
        assert conn.find_prompt() == "r2#"
        conn.send_config_set(["interface lo", f"description {marker}"])
        saved = conn.save_config()
    finally:
        conn.disconnect()
    assert "[OK]" in saved
    with scrapli_session(practice_lab, "r2") as cli:
        result = cli.send_input("show running-config")
    assert f"description {marker}" in result.result
    # write memory reached the router's own startup config, not the shipped file
    saved_conf = practice_lab.lab_dir / "nodes" / "r2" / "etc-frr" / "frr.conf"
    assert marker in saved_conf.read_text(encoding="utf-8")
    assert marker not in (practice_lab.topology.parent / "practice" / "r2" / "frr.conf").read_text(
        encoding="utf-8")


@pytest.mark.parametrize("transport", ["bin", "ssh2"])
def test_scrapli_pushes_config_that_netmiko_reads_back(practice_lab: RunningLab,
                                                       transport: str) -> None:
    marker = f"scrapli-{transport}-{uuid.uuid4().hex[:8]}"
    with scrapli_session(practice_lab, "r3", transport) as cli:
        pushed = cli.send_inputs(["interface eth1", f"description {marker}"],
                                 requested_mode="configuration")
        assert not pushed.failed
        saved = cli.send_input("write memory", requested_mode="privileged_exec")
        assert not saved.failed and "[OK]" in saved.result
        rejected = cli.send_input("show bogus", requested_mode="privileged_exec")
        assert rejected.failed  # vtysh's "% Unknown command" is a failure indicator
    conn = netmiko_session(practice_lab, "r3")
    try:
        out = conn.send_command("show running-config")
    finally:
        conn.disconnect()
    assert f"description {marker}" in out
    assert f"description {marker}" in running_config(practice_lab, "r3")
    saved_conf = practice_lab.lab_dir / "nodes" / "r3" / "etc-frr" / "frr.conf"
    assert f"description {marker}" in saved_conf.read_text(encoding="utf-8")


def test_login_by_key_without_password(practice_lab: RunningLab) -> None:
    conn = netmiko_session(practice_lab, "r4", password=None, use_keys=True,
                           key_file=str(practice_lab.lab_dir / "id_ed25519"),
                           allow_agent=False)
    try:
        assert conn.find_prompt() == "r4#"
    finally:
        conn.disconnect()


def test_wrong_password_is_refused(practice_lab: RunningLab) -> None:
    with pytest.raises(NetmikoAuthenticationException):
        netmiko_session(practice_lab, "r4", password="wrong", use_keys=False,
                        allow_agent=False)


def test_host_keys_are_verified(practice_lab: RunningLab, tmp_path: pytest.TempPathFactory
                                ) -> None:
    # r1's address with r2's keys: a strict client must refuse to talk to r1.
    lines = practice_lab.known_hosts.read_text(encoding="utf-8").splitlines()
    r2_keys = [ln.split(" ", 1)[1] for ln in lines if ln.split(",")[1] == "r2"]
    forged = tmp_path / "known_hosts"  # type: ignore[operator]
    forged.write_text("".join(f"{practice_lab.ip('r1')} {k}\n" for k in r2_keys))
    with pytest.raises(paramiko.SSHException):
        netmiko_session(practice_lab, "r1", alt_key_file=str(forged))


def test_generated_inventory_drives_nornir(practice_lab: RunningLab) -> None:
    inv = practice_lab.lab_dir / "inventory"
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 4}},
        inventory={"plugin": "SimpleInventory", "options": {
            "host_file": str(inv / "hosts.yaml"), "group_file": str(inv / "groups.yaml"),
            "defaults_file": str(inv / "defaults.yaml")}},
        logging={"enabled": False},
    )
    assert sorted(nr.inventory.hosts) == ["r1", "r2", "r3", "r4"]
    assert nr.inventory.hosts["r1"].hostname == practice_lab.ip("r1")
    assert "routers" in nr.inventory.groups
    result = nr.run(task=netmiko_send_command, command_string="show version")
    try:
        assert not result.failed, {h: r.exception for h, r in result.items()}
        for host in nr.inventory.hosts:
            assert "FRRouting" in result[host][0].result
    finally:
        nr.close_connections()


def test_second_up_of_a_running_lab_is_refused(practice_lab: RunningLab) -> None:
    proc = runner("lab", "up", str(practice_lab.topology), check=False)
    assert proc.returncode == 1
    assert "already up" in proc.stderr
    assert status_json(practice_lab.topology)["nodes"]
