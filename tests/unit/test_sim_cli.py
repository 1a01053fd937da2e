"""The simulator's IOS-style CLI: modes, abbreviations, error text, a configuration that
config commands really change, and output the usual parsers read."""

from __future__ import annotations

import asyncio
import gc
import itertools

import asyncssh
import pytest
from ntc_templates.parse import parse_output

from runner.errors import InputError
from runner.lab.sim.cli import INVALID, Device, pipe
from runner.lab.sim.fleet import build, parse_faults
from runner.lab.sim.limits import FDS_PER_DEVICE, RESERVE, Budget, spread
from runner.lab.sim.server import SIM_GC_THRESHOLD, serve
from runner.lab.sim.shell import Shell
from tests.support.base import free_port


@pytest.fixture
def shell() -> Shell:
    return Shell(Device.default("sim0007", 7))


def test_prompts_follow_the_mode_and_the_hostname(shell: Shell) -> None:
    assert shell.prompt == "sim0007#"
    shell.line("configure terminal")
    assert shell.prompt == "sim0007(config)#"
    shell.line("interface GigabitEthernet0/1")
    assert shell.prompt == "sim0007(config-if)#"
    shell.line("hostname edge-7")  # a global command leaves the sub-mode
    assert shell.prompt == "edge-7(config)#"
    shell.line("end")
    assert shell.prompt == "edge-7#"
    shell.line("disable")
    assert shell.prompt == "edge-7>"
    assert INVALID in shell.line("configure terminal").output  # not in user exec
    shell.line("enable")
    assert shell.line("exit").close


def test_abbreviations_expand_and_errors_read_like_ios(shell: Shell) -> None:
    brief = shell.line("sh ip int br").output
    assert brief.splitlines()[0].startswith("Interface") and "GigabitEthernet0/7" in brief
    bad = shell.line("show bogus").output.splitlines()
    assert bad == ["     ^", INVALID]  # the caret sits under the offending word
    assert shell.line("show").output == "% Incomplete command."
    assert shell.line("con t").output.startswith("Enter configuration commands")
    assert INVALID in shell.line("frobnicate the widgets").output


def test_config_commands_change_the_running_config_and_write_saves_it(shell: Shell) -> None:
    for line in ("configure terminal", "interface Gi0/1", " description uplink to core",
                 " shutdown", "interface Loopback0", " ip address 10.9.9.9 255.255.255.255",
                 "exit", "ntp server 192.0.2.99", "no snmp-server community s1mC0mmunity RO",
                 "end"):
        assert not shell.line(line).output.startswith("%"), line
    running = shell.line("show running-config").output
    assert "Current configuration :" in running
    gi1 = shell.line("show running-config | section GigabitEthernet0/1$").output
    assert gi1.splitlines() == ["interface GigabitEthernet0/1", " description uplink to core",
                                " ip address 10.1.0.8 255.255.255.0", " duplex auto",
                                " speed auto", " shutdown"]
    assert "ntp server 192.0.2.99" in running and "snmp-server community" not in running
    assert "interface Loopback0\n ip address 10.9.9.9 255.255.255.255" in running
    assert "192.0.2.99" not in shell.line("show startup-config").output
    assert shell.line("write memory").output == "Building configuration...\n[OK]"
    assert "192.0.2.99" in shell.line("show startup-config").output
    # undo: the sub-mode `no` removes the line again
    for line in ("conf t", "interface GigabitEthernet0/1", "no shutdown", "end"):
        shell.line(line)
    assert " shutdown" not in shell.line("sh run | section GigabitEthernet0/1$").output


def test_copy_asks_for_the_destination(shell: Shell) -> None:
    assert shell.line("copy running-config startup-config").output.endswith("? ")
    assert shell.line("").output == "Building configuration...\n[OK]"


def test_pipe_filters() -> None:
    text = "a 1\nb 2\n x\nc 3"
    assert pipe(text, "include [13]") == "a 1\nc 3"
    assert pipe(text, "exclude [13]") == "b 2\n x"
    assert pipe(text, "begin ^b") == "b 2\n x\nc 3"
    assert pipe(text, "section ^b") == "b 2\n x"


def test_ntc_templates_parse_what_the_simulator_prints(shell: Shell) -> None:
    version = parse_output(platform="cisco_ios", command="show version",
                           data=shell.line("show version").output)[0]
    assert version["hostname"] == "sim0007" and version["version"] == "15.9(3)M4"
    assert version["serial"] == ["9SIM00000007"]
    brief = parse_output(platform="cisco_ios", command="show ip interface brief",
                         data=shell.line("show ip interface brief").output)
    assert {r["interface"]: r["status"] for r in brief}["GigabitEthernet0/7"] == \
        "administratively down"
    assert brief[1]["ip_address"] == "10.1.0.8"


def test_fleet_layout_and_fault_selection() -> None:
    fleet = build(600, "127.100.0.250", 2022, parse_faults(["slow=10%", "refuse=3"]), 7,
                  "admin", "pw", 1.0)
    addresses = [d.address for d in fleet.devices]
    assert len(set(addresses)) == 600 and addresses[:7] == [
        "127.100.0.250", "127.100.0.251", "127.100.0.252", "127.100.0.253", "127.100.0.254",
        "127.100.1.1", "127.100.1.2"]  # .0 and .255 are skipped
    faults = [d.fault for d in fleet.devices]
    assert faults.count("slow") == 60 and faults.count("refuse") == 3
    again = build(600, "127.100.0.250", 2022, parse_faults(["slow=10%", "refuse=3"]), 7,
                  "admin", "pw", 1.0)
    assert [d.fault for d in again.devices] == faults  # same seed, same devices
    assert fleet.devices[0].name == "sim0001" and fleet.devices[-1].name == "sim0600"


@pytest.mark.parametrize(("values", "message"), [
    (["slow"], "expected NAME=PERCENT% or NAME=COUNT"),
    (["melt=5%"], "NAME one of slow, refuse, drop, hang"),
    (["slow=120%"], "at most 100%"),
])
def test_bad_fault_options_are_input_errors(values: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_faults(values)


def test_a_fleet_must_stay_on_loopback() -> None:
    with pytest.raises(InputError, match="stays on loopback"):
        build(10, "127.255.255.250", 2022, {}, 1, "a", "b", 1.0)
    with pytest.raises(InputError, match="faulty devices"):
        build(10, "127.100.0.1", 2022, parse_faults(["slow=8", "drop=8"]), 1, "a", "b", 1.0)


def test_enable_asks_for_the_secret_when_one_is_set() -> None:
    shell = Shell(Device.default("sim0009", 9), enable_secret="s3cret")
    assert shell.prompt == "sim0009>" and shell.line("show privilege").output.endswith(" 1")
    assert shell.line("enable").output == "Password: " and shell.awaiting_secret
    assert shell.line("guess").output == "% Bad secrets" and shell.prompt == "sim0009>"
    shell.line("enable")
    assert shell.line("s3cret").output == "" and shell.prompt == "sim0009#"
    assert shell.line("show privilege").output == "Current privilege level is 15"


def test_the_fleet_is_spread_evenly_within_the_open_files_limit() -> None:
    budget = Budget(limit=20_000, hard=20_000)  # this machine's hard limit
    assert budget.per_process == (20_000 - RESERVE) // FDS_PER_DEVICE
    assert spread(1000, None, budget) == [range(0, 1000)]  # small fleets: one process
    assert spread(budget.per_process, None, budget) == [range(0, budget.per_process)]
    parts = spread(100_000, None, budget)
    assert len(parts) == -(-100_000 // budget.per_process)  # as few as the limit allows
    assert parts[0].start == 0 and parts[-1].stop == 100_000
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
    sizes = [len(p) for p in parts]
    assert max(sizes) <= budget.per_process and max(sizes) - min(sizes) <= 1
    assert [len(p) for p in spread(250, 100, budget)] == [84, 84, 82]


def test_a_listening_fleet_is_kept_out_of_collections_and_collected_rarely() -> None:
    """Once the listeners are up the simulator freezes what exists and collects young
    rarely (full collections of a fleet's objects took a quarter of its CPU)."""
    fleet = build(3, "127.100.3.1", free_port(), {}, 1, "admin", "pw", 1.0)
    key = asyncssh.generate_private_key("ssh-ed25519")
    threshold = gc.get_threshold()

    async def listen() -> tuple[tuple[int, int, int], int]:
        acceptors = await serve(fleet, key)
        try:
            return gc.get_threshold(), gc.get_freeze_count()
        finally:
            for acceptor in acceptors:
                acceptor.close()

    gc.unfreeze()  # as a fresh process: nothing frozen yet (an earlier test may have)
    try:
        seen_threshold, frozen = asyncio.run(listen())
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert seen_threshold == SIM_GC_THRESHOLD and frozen > 0
