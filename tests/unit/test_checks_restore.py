"""Checks (`expect:`) and the config arithmetic behind rollback (hier_config's): the inverse of
a change, section by section, config equality, a dry run's preview."""

from __future__ import annotations

import pytest

from runner.errors import CheckFailed
from runner.inventory import platforms
from runner.job.checks import check, problem
from runner.job.diffing import preview
from runner.job.restore import digest, restore_lines, same_config

IOS = platforms.get("cisco_ios")
assert IOS is not None

NEIGHBORS = [{"neighbor_id": "10.255.0.2", "state": "Full/DR"},
             {"neighbor_id": "10.255.0.4", "state": "Init/DROther"}]
CONTEXT = {"output": "Neighbor ID ...", "parsed": NEIGHBORS,
           "host": {"name": "r1", "data": {"role": "core"}}, "vars": {"peers": 2}}


def failure(condition: str) -> str:
    with pytest.raises(CheckFailed) as info:
        check(condition, CONTEXT)
    return str(info.value)


def test_a_true_condition_passes_and_may_use_host_and_vars() -> None:
    check("parsed | length == vars.peers and host.data.role == 'core'", CONTEXT)
    check("'Neighbor' in output", CONTEXT)


def test_a_false_condition_names_itself_and_the_values_it_saw() -> None:
    text = failure("parsed | rejectattr('state', 'search', 'Full') | list | length == 0")
    assert text == ("check \"parsed | rejectattr('state', 'search', 'Full') | list | "
                    "length == 0\" is false: saw 1 == 0")
    assert failure("parsed | length >= 3 or 'Full' in output") == (
        "check \"parsed | length >= 3 or 'Full' in output\" is false: saw 2 >= 3; "
        "\"Full\" in \"Neighbor ID ...\"")
    check("parsed[1].state", CONTEXT)  # a truthy value passes
    check("parsed | selectattr('state', 'match', 'Full') | list | length == 1", CONTEXT)
    assert "saw []" in failure("parsed | selectattr('state', 'eq', 'Down') | list")


def test_a_condition_that_cannot_be_evaluated_is_a_check_failure_with_the_reason() -> None:
    assert failure("parsed[5].state == 'x'") == (
        "check \"parsed[5].state == 'x'\" could not be evaluated: list object has no "
        "element 5")
    assert failure("parsed.state == 'Full'") == (
        "check \"parsed.state == 'Full'\" could not be evaluated: 'list object' has no "
        "attribute 'state'")


@pytest.mark.parametrize(("condition", "problem_text"), [
    ("parsed | length ==", "not a Jinja2 expression"),
    ("neighbours | length > 0", "unknown name 'neighbours'"),
    ("parsed | lenght > 0", "No filter named 'lenght'"),
    ("parsed is fullish", "No test named 'fullish'"),
    ("parsed | selectattr('state', 'equal', 'x') | list", "no Jinja2 test named 'equal'"),
])
def test_validation_finds_what_can_be_found_before_a_device_is_touched(
        condition: str, problem_text: str) -> None:
    why = problem(condition)
    assert why is not None and problem_text in why


def test_the_sandbox_holds() -> None:
    assert "could not be evaluated" in failure("output.__class__.__mro__[1].__subclasses__()")


FRR = """!
frr version 8.4.4
hostname r1
!
interface eth1
 description to-r2
 ip address 10.0.12.1/30
exit
!
router ospf
 ospf router-id 10.255.0.1
 network 10.0.0.0/8 area 0
exit
!
router bgp 65000
 neighbor 10.255.0.2 remote-as 65000
 !
 address-family ipv4 unicast
  network 10.1.1.0/24
 exit-address-family
exit
!
end
"""


def test_the_inverse_of_a_change_section_by_section() -> None:
    changed = FRR.replace(" network 10.0.0.0/8 area 0", " network 10.0.0.0/8 area 1") \
        .replace(" description to-r2", " description broken") \
        .replace("  network 10.1.1.0/24", "  network 10.1.1.0/24\n  network 10.9.9.0/24") \
        .replace("end\n", "route-map X permit 10\n match tag 5\nexit\n!\nend\n") \
        .replace("hostname r1\n", "")
    assert restore_lines(IOS, changed, FRR) == [
        "no route-map X permit 10",
        "hostname r1",
        # FRR replaces a description in place: no `no description broken` first
        "interface eth1", " description to-r2", " exit",
        "router ospf", " no network 10.0.0.0/8 area 1", " network 10.0.0.0/8 area 0",
        " exit",
        # an address family is left with its own exit
        "router bgp 65000", " address-family ipv4 unicast", "  no network 10.9.9.0/24",
        "  exit-address-family", " exit"]
    assert restore_lines(IOS, FRR, FRR) == []
    assert not same_config(IOS, changed, FRR) and same_config(IOS, FRR, FRR)


def test_a_removed_section_comes_back_whole_and_no_lines_are_undone() -> None:
    without = FRR.replace("interface eth1\n description to-r2\n ip address 10.0.12.1/30\n"
                          "exit\n", "")
    assert restore_lines(IOS, without, FRR) == [
        "interface eth1", " description to-r2", " ip address 10.0.12.1/30", " exit"]
    negated = FRR.replace("hostname r1\n", "hostname r1\nno ip forwarding\n")
    assert restore_lines(IOS, negated, FRR) == ["ip forwarding"]


def test_equality_ignores_where_a_device_lists_a_restored_section() -> None:
    moved = FRR.replace("router ospf\n ospf router-id 10.255.0.1\n network 10.0.0.0/8 area 0"
                        "\nexit\n!\n", "") + \
        "router ospf\n ospf router-id 10.255.0.1\n network 10.0.0.0/8 area 0\nexit\n"
    assert same_config(IOS, moved, FRR) and digest(IOS, moved) == digest(IOS, FRR)
    assert digest(IOS, FRR.replace("area 0", "area 1")) != digest(IOS, FRR)
    assert "hostname" not in digest(IOS, FRR)


def test_a_dry_run_simulates_the_change_for_its_rollback_preview() -> None:
    after = preview(FRR, ["interface eth1", " description new", "no hostname r1",
                          "ntp server 192.0.2.1"], IOS).after
    assert restore_lines(IOS, after, FRR) == [
        "no ntp server 192.0.2.1", "hostname r1",
        "interface eth1", " description to-r2", " exit"]
