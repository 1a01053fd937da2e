"""Golden config's arithmetic, on hier_config: FRR's running config read through runner's FRR
driver (hier_config's IOS driver refuses it), compliance per feature with missing and extra
lines in their sections, ignore rules, ordered features, the remediation's commands; config
lines written flat read as the CLI's modes read them; what the store keeps of it."""

from __future__ import annotations

import pytest
from hier_config import Platform as HierPlatform
from hier_config import get_hconfig
from hier_config.exceptions import DuplicateChildError

from runner.errors import ConfigUnreadable
from runner.inventory import platforms
from runner.job import compliance, configtree
from runner.job.configtree import HConfigDriverFRR, driver_for, is_frr, structured
from runner.job.restore import restore_lines
from runner.job.spec import ComplianceSpec
from runner.records import DeviceResult, RunResult, StepResult
from runner.store import compliance as store
from runner.store.results import ResultsStore
from runner.vocab import ComplianceEvent, ComplianceState, DeviceStatus, StepKind
from tests.support.base import ROOT

IOS = platforms.get("cisco_ios")
assert IOS is not None
R1 = (ROOT / "lab" / "practice" / "r1" / "frr.conf").read_text(encoding="utf-8")
RUNNING = "Building configuration...\n\nCurrent configuration:\n!\n" + R1 + "end\n"
SIM = """!
version 15.9
hostname sim0001
interface GigabitEthernet0/1
 description link 1
 ip address 10.1.0.2 255.255.255.0
!
interface GigabitEthernet0/10
 description link 10
!
ntp server 192.0.2.123
snmp-server community s1mC0mmunity RO
ip prefix-list P seq 5 permit 10.0.0.0/8
ip prefix-list P seq 10 permit 172.16.0.0/12
end
"""


def spec(*features: dict[str, object], ignore: list[str] | None = None) -> ComplianceSpec:
    return ComplianceSpec.model_validate({"intended": "golden.j2", "features": list(features),
                                          "ignore": ignore or []})


def test_frr_config_needs_runners_driver_and_is_told_from_ios() -> None:
    with pytest.raises(DuplicateChildError):  # FRR's column-0 `exit` lines
        get_hconfig(HierPlatform.CISCO_IOS, RUNNING)
    assert is_frr(RUNNING) and not is_frr(SIM)
    assert isinstance(driver_for(IOS, RUNNING), HConfigDriverFRR)
    assert not isinstance(driver_for(IOS, SIM), HConfigDriverFRR)
    tree = configtree.parse(driver_for(IOS, RUNNING), RUNNING)
    bgp = tree.children.get("router bgp 65000")
    assert bgp is not None and "exit" not in [c.text for c in tree.children]
    assert bgp.children.get("address-family ipv4 unicast") is not None
    assert "frr version 8.4.4" not in [c.text for c in tree.children]


def test_frr_refuses_a_new_ospf_area_in_place_so_its_rollback_removes_first() -> None:
    moved = RUNNING.replace("interface eth1\n ip address 10.0.12.0/31\n ip ospf area 0",
                            "interface eth1\n ip address 10.0.12.0/31\n ip ospf area 1")
    assert restore_lines(IOS, moved, RUNNING) == [
        "interface eth1", " no ip ospf area 1", " ip ospf area 0", " exit"]
    # a description FRR replaces in place; a second address FRR adds beside the first
    described = RUNNING.replace("interface eth3\n", "interface eth3\n description old\n")
    renamed = described.replace("description old", "description new")
    assert restore_lines(IOS, renamed, described) == [
        "interface eth3", " description old", " exit"]
    two = RUNNING.replace(" ip address 10.1.1.1/24\n",
                          " ip address 10.1.1.1/24\n ip address 10.9.9.1/24\n")
    assert restore_lines(IOS, two, RUNNING) == [
        "interface eth3", " no ip address 10.9.9.1/24", " exit"]


def test_missing_and_extra_lines_per_feature_in_their_sections() -> None:
    drifted = RUNNING.replace(" neighbor CORE timers connect 5\n", "") \
        .replace(" neighbor 10.255.0.4 peer-group CORE\n",
                 " neighbor 10.255.0.4 peer-group CORE\n neighbor 10.255.0.4 description x\n")
    found = compliance.check(IOS, spec({"name": "bgp", "match": ["router bgp"]},
                                       {"name": "ospf", "match": ["router ospf"]}),
                             R1.splitlines(), drifted)
    assert found["ospf"].compliant and found["ospf"].remediation == []
    bgp = found["bgp"]
    assert not bgp.compliant
    assert bgp.missing == ["router bgp 65000", " neighbor CORE timers connect 5"]
    assert (bgp.missing_count, bgp.extra_count) == (1, 1)  # the context line aside
    assert bgp.extra == ["router bgp 65000", " neighbor 10.255.0.4 description x"]
    assert bgp.remediation == ["router bgp 65000", " no neighbor 10.255.0.4 description x",
                               " neighbor CORE timers connect 5", " exit"]
    assert "bgp: NOT compliant (1 missing, 1 extra)" in compliance.report(found)


def test_a_feature_matches_whole_words_and_ignore_rules_leave_lines_out() -> None:
    intended = ["interface GigabitEthernet0/1", " description uplink",
                " ip address 192.0.2.1 255.255.255.0"]
    links = {"name": "links", "match": ["interface GigabitEthernet0/1"]}
    found = compliance.check(IOS, spec(links), intended, SIM)["links"]
    assert "interface GigabitEthernet0/10" not in found.extra  # eth1 is not eth10
    assert found.missing == intended and found.missing_count == 2
    assert found.extra == ["interface GigabitEthernet0/1", " description link 1",
                           " ip address 10.1.0.2 255.255.255.0"]
    quiet = compliance.check(IOS, spec({**links, "ignore": ["^ip address "]},
                                       ignore=["^description "]), intended, SIM)["links"]
    assert quiet.compliant and quiet.missing == quiet.extra == []


def test_an_ordered_feature_in_another_order_is_rewritten_in_order() -> None:
    lines = ["ip prefix-list P seq 10 permit 172.16.0.0/12",
             "ip prefix-list P seq 5 permit 10.0.0.0/8"]
    unordered = {"name": "prefixes", "match": ["ip prefix-list P"]}
    assert compliance.check(IOS, spec(unordered), lines, SIM)["prefixes"].compliant
    ordered = compliance.check(IOS, spec({**unordered, "ordered": True}), lines,
                               SIM)["prefixes"]
    assert not ordered.compliant and ordered.order_differs
    assert ordered.remediation == [
        "no ip prefix-list P seq 5 permit 10.0.0.0/8",
        "no ip prefix-list P seq 10 permit 172.16.0.0/12", *lines]


def test_an_intended_config_written_flat_is_read_by_the_clis_modes() -> None:
    flat = ["interface GigabitEthernet0/1", "description link 1", "exit",
            "ntp server 192.0.2.123"]
    assert structured(flat, IOS) == ["interface GigabitEthernet0/1", " description link 1",
                                     "ntp server 192.0.2.123"]
    found = compliance.check(IOS, spec({"name": "ntp", "match": ["ntp server"]},
                                       {"name": "links", "match": ["interface"],
                                        "ignore": ["^ip address", "^interface .*/10$"]}),
                             flat, SIM)
    assert all(r.compliant for r in found.values()), compliance.report(found)
    # a line that opens no known mode, followed by `exit`, opened a section
    assert structured(["bfd-profile x", "detect-multiplier 3", "exit", "ntp server 1"],
                      IOS) == ["bfd-profile x", " detect-multiplier 3", "ntp server 1"]
    assert structured(["router bgp 1", "address-family ipv4 unicast", "network 1.0.0.0/8",
                       "exit-address-family", "neighbor x remote-as 1"], IOS) == [
        "router bgp 1", " address-family ipv4 unicast", "  network 1.0.0.0/8",
        " neighbor x remote-as 1"]


def test_a_config_hier_config_cannot_read_is_one_clear_device_error() -> None:
    broken = ["interface eth1", " ip ospf area 0", " ip ospf area 0"]  # a template's slip
    with pytest.raises(ConfigUnreadable, match="the intended config cannot be read as FRR "
                                               "config: Found a duplicate section"):
        compliance.check(IOS, spec({"name": "ospf", "match": ["interface"]}), broken,
                         RUNNING)


def _check_step(features: dict[str, bool], source: str = "running") -> StepResult:
    return StepResult("golden", StepKind.COMPLIANCE, parsed={"source": source, "features": {
        name: {"compliant": ok, "missing": [] if ok else ["ntp server 192.0.2.1"],
               "extra": [], "remediation": [] if ok else ["ntp server 192.0.2.1"]}
        for name, ok in features.items()}})


def _run(results: ResultsStore, run_id: str, devices: list[DeviceResult],
         remediates: str | None = None) -> list[store.Change]:
    run = RunResult(run_id, "golden", "2026-12-01T03:00:00.000+00:00", None, devices,
                    remediates=remediates)
    results.start_run(run, [d.host for d in devices])
    results.record_devices(run_id, devices)
    run.finished = f"2026-12-0{len(run_id) % 9 + 1}T03:00:09.000+00:00"
    results.finish_run(run)
    return store.record_run(results, run)


def test_the_store_keeps_the_latest_state_and_when_it_changed(tmp_path: object) -> None:
    results = ResultsStore(f"sqlite:///{tmp_path}/r.db")
    first = _run(results, "run00001", [
        DeviceResult("a", DeviceStatus.OK, steps=[_check_step({"ntp": True})]),
        DeviceResult("b", DeviceStatus.NON_COMPLIANT, steps=[_check_step({"ntp": False})])])
    assert [(c.host, c.event, c.status) for c in first] == [
        ("a", ComplianceEvent.FIRST, ComplianceState.COMPLIANT),
        ("b", ComplianceEvent.FIRST, ComplianceState.NON_COMPLIANT)]
    assert _run(results, "run00002", [  # unchanged: nothing new
        DeviceResult("b", DeviceStatus.NON_COMPLIANT, steps=[_check_step({"ntp": False})])
    ]) == []
    # a remediation that held: its check after the change counts
    fixed = _run(results, "run00003", [DeviceResult("b", DeviceStatus.CHANGED, steps=[
        _check_step({"ntp": False}), _check_step({"ntp": True})])], remediates="run00002")
    assert [(c.host, c.event) for c in fixed] == [("b", ComplianceEvent.FIXED)]
    # a remediation put back: the device is as it was found
    assert _run(results, "run00004", [DeviceResult("a", DeviceStatus.ROLLED_BACK, steps=[
        _check_step({"ntp": True}), _check_step({"ntp": False})])]) == []
    # a dry run's check of its preview is no observation
    assert _run(results, "run00005", [DeviceResult("a", DeviceStatus.CHANGED, steps=[
        _check_step({"ntp": True}), _check_step({"ntp": False}, "preview")])]) == []
    assert store.counts(results) == {("ntp", "compliant"): 2}
    events = store.history(results, host="b")
    assert [(e["event"], e["run_id"], e["remediates"]) for e in events] == [
        ("fixed", "run00003", "run00002"), ("first", "run00001", None)]
    row = store.latest(results, store.StateFilter(host="b"))[0]
    assert (row["status"], row["since_run"], row["run_id"]) == ("compliant", "run00003",
                                                               "run00003")


def test_drift_is_no_failure_and_has_its_own_exit_code() -> None:
    drift = RunResult("x", "golden", "t", None, [
        DeviceResult("a", DeviceStatus.OK), DeviceResult("b", DeviceStatus.NON_COMPLIANT)])
    assert drift.ok and drift.drift and drift.exit_code == 3
    drift.devices.append(DeviceResult("c", DeviceStatus.FAILED))
    assert not drift.ok and drift.exit_code == 1
    clean = RunResult("y", "golden", "t", None, [DeviceResult("a", DeviceStatus.OK)])
    assert clean.exit_code == 0
    record = DeviceResult("b", DeviceStatus.NON_COMPLIANT, steps=[_check_step({"ntp": False})])
    data = record.to_json()
    assert data["compliance"]["ntp"]["missing"] == ["ntp server 192.0.2.1"]
    assert DeviceResult.from_json(data).compliance == data["compliance"]
