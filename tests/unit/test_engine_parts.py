"""Pure parts of the engine: config preview, redaction, failure indicators, inventory
selection and errors, template rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InputError, RenderFailed
from runner.inventory import platforms
from runner.inventory.loading import load_inventory
from runner.inventory.targets import Targets
from runner.job.diffing import normalize, preview, unified
from runner.job.render import Templates
from runner.redact import MASK, Redactor

RUNNING = """Building configuration...

Current configuration:
!
frr version 8.4.4
hostname r1
interface lo
 description old
 ip address 10.0.0.1/32
exit
router bgp 65000
 neighbor 10.0.0.2 remote-as 65000
 neighbor 10.0.0.2 password TopSecret99
 !
 address-family ipv4 unicast
  network 10.1.1.0/24
 exit-address-family
exit
"""
IOS = platforms.get("cisco_ios")
assert IOS is not None


def _changes(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]


def test_a_preview_is_the_diff_a_real_run_records_additions_and_removals() -> None:
    assert preview(RUNNING, ["interface lo", "description old", "exit"], IOS).diff == ""
    assert preview(RUNNING, ["router bgp 65000", " address-family ipv4 unicast",
                             "  network 10.1.1.0/24", " exit-address-family"], IOS).diff == ""
    out = preview(RUNNING, ["interface lo", " description new", "exit",
                            "router bgp 65000", "address-family ipv4 unicast",
                            "network 10.9.9.0/24", "exit-address-family",
                            "no neighbor 10.0.0.2 remote-as 65000", "no bgp bestpath med"],
                  IOS)
    # the same unified diff as a real run's: a replaced value, a removal, an addition
    assert out.diff.startswith("--- running-config (before)\n+++ running-config (after)\n")
    assert _changes(out.diff) == [
        "- description old", "+ description new",
        "- neighbor 10.0.0.2 remote-as 65000", "+  network 10.9.9.0/24"]
    assert unified(RUNNING, out.after) == out.diff  # `after` is the config it would leave


def test_a_removed_section_goes_whole_and_a_new_one_is_made() -> None:
    out = preview(RUNNING, ["no interface lo", "interface eth1", "description old", "exit",
                            "ntp server 192.0.2.1"], IOS)
    assert _changes(out.diff) == [
        "-interface lo", "- description old", "- ip address 10.0.0.1/32", "-exit",
        "+interface eth1", "+ description old", "+exit", "+ntp server 192.0.2.1"]
    # a description in another section is not taken as present; `no X` of what is absent
    # changes nothing
    assert preview(RUNNING, ["no ntp server 192.0.2.99"], IOS).diff == ""


def test_normalize_drops_volatile_lines_and_unified_diff() -> None:
    text = normalize(RUNNING, IOS.volatile)
    assert "Building configuration" not in text and "Current configuration" not in text
    assert text.startswith("!\nfrr version")
    changed = text.replace("description old", "description new")
    diff = unified(text, changed)
    assert "-  description old" not in diff and "- description old" in diff
    assert "+ description new" in diff
    assert unified(text, text) == ""


def test_redactor_masks_known_values_and_secret_lines() -> None:
    r = Redactor(["Hunter2-pass", "abc"], IOS.secrets)
    text = r.text(RUNNING + "login failed for Hunter2-pass\nusername bob secret 5 $1$xyz\n"
                  "snmp-server community public RO\n enable secret s3cr3t\n")
    assert "Hunter2-pass" not in text and "TopSecret99" not in text
    assert f"neighbor 10.0.0.2 password {MASK}" in text
    assert f"username bob secret 5 {MASK}" in text
    assert f"snmp-server community {MASK} RO" in text
    assert f" enable secret {MASK}" in text
    assert "description old" in text  # ordinary lines untouched
    assert r.value({"a": ["Hunter2-pass", 1]}) == {"a": [MASK, 1]}
    # too short to mask inside words; where it stands as a credential, it is
    # (tests/unit/test_secrets.py)
    assert Redactor(["abc"]).text("abcdef tabc") == "abcdef tabc"


def test_failure_indicators() -> None:
    assert IOS.rejected("r1# show bogus\n% Unknown command: show bogus") == \
        "% Unknown command: show bogus"
    assert IOS.rejected("   ^\n% Invalid input detected at '^' marker.") is not None
    assert IOS.rejected(" description % Error budget\nall good") is None


def test_failure_indicators_are_found_as_the_line_pattern_finds_them() -> None:
    """rejected() looks for each indicator's first word before the line pattern: every
    platform's every indicator, where a line starts it, inside a line, cut short, in
    outputs with and without other lines, gives what the pattern alone gives."""
    clean = "Building configuration...\n!\nhostname r1\n description uplink 100%\n"
    for name in platforms.names():
        platform = platforms.get(name)
        assert platform is not None
        pattern = platforms._indicators(platform.failure_indicators)
        for indicator in platform.failure_indicators:
            cut = indicator.rsplit(" ", 1)[0] if " " in indicator else indicator[:-1]
            for output in (clean, f"{indicator}: x", f"{clean}  \t{indicator} at '^'\nr1#",
                           f"{clean}note {indicator}\n", f"{clean}{cut}\n", f"\r\n{indicator}",
                           indicator.lower(), ""):
                found = pattern.search(output)
                assert platform.rejected(output) == (found.group(0).strip() if found else
                                                     None), (name, indicator, output)


def write_inventory(tmp_path: Path, hosts: str, groups: str = "", defaults: str = "") -> Path:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(hosts, encoding="utf-8")
    (inv / "groups.yaml").write_text(groups, encoding="utf-8")
    (inv / "defaults.yaml").write_text(defaults, encoding="utf-8")
    return inv


def test_target_selection(tmp_path: Path) -> None:
    inv = load_inventory(write_inventory(tmp_path, """
a1: {groups: [site_a, core], data: {role: spine, site: {name: ams}}}
a2: {groups: [site_a], data: {role: leaf}}
b1: {groups: [site_b], platform: arista_eos, data: {role: leaf}}
b2: {groups: [site_b], data: {role: spine, driver: scrapli}}
""", "site_a: {}\nsite_b: {data: {site: {name: fra}}}\ncore: {groups: [site_a]}\n",
        "platform: cisco_ios\n"))
    assert inv.select(Targets()) == ["a1", "a2", "b1", "b2"]
    assert inv.select(Targets(groups=["site_a"])) == ["a1", "a2"]
    assert inv.select(Targets(hosts=["b1"], groups=["core"])) == ["a1", "b1"]
    assert inv.select(Targets(where={"role": "spine"})) == ["a1", "b2"]
    assert inv.select(Targets(where={"site.name": ["fra"]})) == ["b1", "b2"]
    assert inv.select(Targets(platforms=["arista_eos"])) == ["b1"]
    assert inv.select(Targets(exclude=["a2"]), limit="a*,site_b") == ["a1", "b1", "b2"]
    assert inv.driver_for("b2", "netmiko") == "scrapli"
    assert inv.driver_for("a1", "netmiko") == "netmiko"
    assert inv.connect_params("b1", "scrapli").driver_platform == "arista_eos"
    with pytest.raises(InputError, match="host 'zz' is not in the inventory"):
        inv.select(Targets(hosts=["zz"]))


@pytest.mark.parametrize(("hosts", "groups", "message", "line"), [
    ("r1: {groups: [nope]}\n", "", "group 'nope' is not defined in groups.yaml", 1),
    ("r1:\n  hostname: 10.0.0.1\n  pasword: x\n", "", "unknown field 'pasword'", 3),
    ("r1: {port: 99999}\n", "", "expected a TCP port number", 1),
    ("r1: [a]\n", "", "expected a mapping", 1),
    ("r1: {}\n", "g1: {groups: [g2]}\n", "group 'g2' is not defined", 1),
])
def test_inventory_errors_name_file_and_line(tmp_path: Path, hosts: str, groups: str,
                                             message: str, line: int) -> None:
    inv = write_inventory(tmp_path, hosts, groups, "platform: cisco_ios\n")
    with pytest.raises(InputError) as info:
        load_inventory(inv)
    assert message in str(info.value)
    assert info.value.line == line
    assert info.value.path is not None and info.value.path.parent == inv


def test_templates_strict_sandboxed_and_platform_first(tmp_path: Path) -> None:
    (tmp_path / "cisco_ios").mkdir()
    (tmp_path / "ntp.j2").write_text("flat {{ server }}\n", encoding="utf-8")
    (tmp_path / "cisco_ios" / "ntp.j2").write_text(
        "ntp server {{ server }}\n{% if host.name == 'r1' %}ntp source lo{% endif %}\n",
        encoding="utf-8")
    (tmp_path / "evil.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                      encoding="utf-8")
    t = Templates(tmp_path)
    assert t.render("ntp.j2", "cisco_ios", {"server": "1.1.1.1", "host": {"name": "r1"}}) == \
        ["ntp server 1.1.1.1", "ntp source lo"]
    assert t.render("ntp.j2", "arista_eos", {"server": "2.2.2.2"}) == ["flat 2.2.2.2"]
    with pytest.raises(RenderFailed, match="'server' is undefined"):
        t.render("ntp.j2", "cisco_ios", {"host": {"name": "r2"}})
    with pytest.raises(RenderFailed, match="unsafe"):
        t.render("evil.j2", "cisco_ios", {})
    assert t.check("../etc/passwd") is not None


def test_a_template_leading_out_of_the_templates_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("enable secret s3cret-on-the-jump-host\n", encoding="utf-8")
    (root / "leak.j2").symlink_to(secret)
    (root / "includes.j2").write_text("{% include 'leak.j2' %}\n", encoding="utf-8")
    templates = Templates(root)
    assert "leads out of" in (templates.check("leak.j2") or "")
    for name in ("leak.j2", "includes.j2"):
        with pytest.raises(RenderFailed) as info:
            templates.render(name, "cisco_ios", {})
        assert "leads out of the templates directory" in str(info.value)
        assert "s3cret" not in str(info.value)


def test_config_lines_render_as_templates_do_and_are_checked_first(tmp_path: Path) -> None:
    templates = Templates(tmp_path)
    context = {"site": "ams", "vars": {"site": "ams"},
               "host": {"name": "r1", "hostname": "10.0.0.1", "platform": "cisco_ios",
                        "groups": ["core"], "data": {}}}
    assert templates.render_lines([
        "snmp-server location {{ vars.site }}-{{ host.name }}", "ntp server 192.0.2.1",
        "{% if 'edge' in host.groups %}logging host 192.0.2.9{% endif %}",
        "{{ site }}"], context) == ["snmp-server location ams-r1", "ntp server 192.0.2.1",
                                    "ams"]
    with pytest.raises(RenderFailed, match=r"config line 1 .*has no attribute 'nope'"):
        templates.render_lines(["{{ vars.nope }}"], context)
    known = {"site"}
    assert templates.line_problem("location {{ vars.site }} {{ site }} {{ host.name }}",
                                  known) is None
    assert templates.line_problem("{{ steps['show version'].output }}", known) is None
    for line, said in (("{{ vars.location }}", "unknown name 'location'"),
                       ("{{ vars['location'] }}", "unknown name 'location'"),
                       ("{{ location }}", "unknown name 'location'"),
                       ("{{ host.site }}", "unknown name 'host.site'"),
                       ("{{ site ", "template syntax error"),
                       ("{% for x in %}", "template syntax error")):
        problem = templates.line_problem(line, known)
        assert problem is not None and said in problem, (line, problem)


def test_one_device_key_whatever_the_inventory_calls_the_device() -> None:
    from runner.execution.control.keys import device_key, lease_key

    assert device_key("10.0.0.1", 22) == "10.0.0.1:22"
    assert device_key("Core-R1.Example.NET.", 22) == device_key("core-r1.example.net", 22)
    assert device_key("2001:db8::1", 830) == "[2001:db8::1]:830"
    assert device_key("10.0.0.1", 22) != device_key("10.0.0.1", 2022)
    assert lease_key(device_key("10.0.0.1", 22)) == "runner:lease:10.0.0.1:22"


def test_an_occurrence_follows_its_preview_then_the_run_that_carried_it_out() -> None:
    from runner.store.occurrences import occurrence_status

    waiting = "awaiting_approval"
    assert occurrence_status(waiting, "awaiting_approval", None) == "awaiting_approval"
    assert occurrence_status(waiting, "rejected", None) == "rejected"
    assert occurrence_status(waiting, "expired", None) == "expired"
    assert occurrence_status(waiting, "approved", None) == "approved"
    assert occurrence_status(waiting, "approved", "running") == "approved"
    assert occurrence_status(waiting, "approved", "ok") == "done"
    assert occurrence_status(waiting, "approved", "failed") == "failed"
    assert occurrence_status(waiting, "approved", "interrupted") == "interrupted"
    assert occurrence_status(waiting, "failed", None) == "failed"  # the preview itself
    # occurrences without approval keep what the scheduler recorded
    assert occurrence_status("done", "ok", None) == "done"
    assert occurrence_status("missed", None, None) == "missed"


def test_no_path_runs_a_change_that_needs_approval_without_it(tmp_path: Path) -> None:
    """execute()'s own guard, for any caller that does not make a preview first (every
    entry point does: runner run, schedule run, serve, the web, approve)."""
    from runner.errors import ApprovalRequired
    from runner.job.approval import gate, override
    from runner.job.prepare import prepare
    from runner.job.run import RunOptions, check_approval

    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text("r1: {hostname: 127.0.0.1, platform: cisco_ios}\n")
    job = tmp_path / "nightly.yml"
    job.write_text("name: nightly\nschedule: {cron: '30 2 * * *', approval: required}\n"
                   "steps:\n  - config: {lines: [ntp server 192.0.2.1]}\n")
    prep = prepare(job, inventory, tmp_path)
    with pytest.raises(ApprovalRequired, match="only through an approved preview"):
        check_approval(prep, RunOptions())
    # half an approval is none: an approved change without its decision, or the reverse
    with pytest.raises(ApprovalRequired):
        check_approval(prep, RunOptions(approves="p", approved={}))
    with pytest.raises(ApprovalRequired):
        check_approval(prep, RunOptions(override={"reason": "nobody said who"}))
    check_approval(prep, RunOptions(dry_run=True))
    check_approval(prep, RunOptions(override=override("a@b", None)))
    check_approval(prep, RunOptions(approves="p", approved={}, decision={"by": "a@b"}))
    options = RunOptions()
    assert gate(prep.job.spec, options) is True and options.preview_window == 8 * 3600
    check_approval(prep, options)  # a preview now
    assert gate(prep.job.spec, RunOptions(override=override("a@b", "P1"))) is False
