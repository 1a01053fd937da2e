"""Parsers at run time: TTP reads nothing but the template and the output it is given, runs
no code from a template, and keeps quiet; parser files stay inside templates/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import ParseFailed
from runner.job import ttpguard
from runner.job.parsing import parse
from runner.job.spec import ParserSpec
from tests.support.base import ROOT

SECRET = "root:$6$not-for-your-eyes:19000:0:99999:7:::"


def ttp_parse(output: str, template: str, templates: Path) -> object:
    # model_construct: as if the job's own check had been passed by (a file edited since)
    return parse(output, ParserSpec.model_construct(ttp=template), platform="cisco_ios",
                 command="show x", templates_dir=templates)


def test_device_output_that_names_a_file_is_parsed_as_text(tmp_path: Path) -> None:
    """TTP itself would read the file (or every file of a directory) the output names."""
    secret = tmp_path / "shadow"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    assert ttp_parse(str(secret), "{{ line }}", tmp_path) == [{"line": str(secret)}]
    assert ttp_parse(str(tmp_path), "{{ line }}", tmp_path) == [{"line": str(tmp_path)}]


def test_a_template_file_that_names_a_file_is_used_as_text(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("{{ user }}:{{ rest }}\n", encoding="utf-8")
    (tmp_path / "t.ttp").write_text(str(secret), encoding="utf-8")
    assert ttp_parse("root:x", "t.ttp", tmp_path) == [{}]


def test_a_template_swapped_for_a_symlink_after_validation_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("Value X (.+)\n\nStart\n  ^${X} -> Record\n", encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "t.textfsm").symlink_to(outside)
    with pytest.raises(ParseFailed, match=r"TextFSM template 't\.textfsm' is outside"):
        parse("a\n", ParserSpec(textfsm="t.textfsm"), platform="cisco_ios", command="show x",
              templates_dir=templates)


def test_a_template_file_edited_into_code_after_validation_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.ttp").write_text("<macro>\ndef f(d):\n    return d\n</macro>\n{{ x }}\n",
                                    encoding="utf-8")
    with pytest.raises(ParseFailed, match=r"TTP <macro> is not allowed"):
        ttp_parse("a", "t.ttp", tmp_path)


def test_ttp_says_nothing(tmp_path: Path) -> None:
    """A template line without a variable: TTP warns with the line (the issue's /etc/shadow
    lines came out this way). In a process of its own: pytest hooks into every logger."""
    script = (
        "import logging, pathlib, sys\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "from runner.job.spec import ParserSpec\n"
        "from runner.job.parsing import parse\n"
        "print(parse('hello world', ParserSpec(ttp=sys.argv[1] + '\\n{{ a }} {{ b }}'),\n"
        "            platform='cisco_ios', command='show x', templates_dir=pathlib.Path('.')))\n")
    proc = subprocess.run([sys.executable, "-c", script, SECRET], capture_output=True,
                          text=True, check=True, cwd=tmp_path, env={**os.environ,
                          "PYTHONPATH": str(ROOT)})
    assert proc.stdout == "[{'a': 'hello', 'b': 'world'}]\n"
    assert SECRET not in proc.stderr


LEGIT = [
    "FRRouting {{ version }} ({{ hostname }}) on {{ os | re('\\w+') }}({{ kernel | re('[^)]+') "
    "}}).",
    '<group name="interfaces.{{ interface }}">\ninterface {{ interface }}\n'
    ' description {{ description | ORPHRASE | default("none") }}\n'
    " ip address {{ ip }} {{ mask | to_ip }}\n shutdown {{ disabled | set(True) }}\n"
    "</group>",
    '<group name="vlans" contains="vlan" method="table">\n'
    "{{ vlan | to_int }} {{ name | contains('a', 'b') | exclude(Vlan) }} {{ state | "
    "equal(-1) }}\n</group>",
    "<template>\n<group name='bgp'>\nneighbor {{ peer | is_ip }} remote-as {{ asn }}\n"
    "</group>\n</template>",
]


@pytest.mark.parametrize("template", LEGIT)
def test_ordinary_templates_pass_the_guard(template: str) -> None:
    assert ttpguard.problem(template) is None


HOSTILE = {
    '{{ x | contains(__builtins__["__import__"]("os").system("id")) }}':
        "the arguments of 'contains' must be plain values",
    "{{ x | contains(open('/etc/shadow')) }}": "the arguments of 'contains' must be plain",
    "{{ x | contains('a'), print('b') }}": "must be plain values",
    "{{ x | contains(*a) }}": "must be plain values",
    "{{ x | contains(**a) }}": "must be plain values",
    "{{ x | contains('a' * 99999999) }}": "must be plain values",
    "{{ x | macro('f') }}": "function 'macro' is not allowed",
    "{{ x | chain('evil') }}": "function 'chain' is not allowed",
    '<group name="a" chain="evil">{{ x }}</group>': "function 'chain' is not allowed",
    '<group name="a" contains="x.__class__">{{ x }}</group>': "must be plain values",
    '<group name="a">{{ x | contains&#40;a.b&#41; }}</group>': "must be plain values",
    '<template base_path="/etc"><group>{{ x }}</group></template>':
        "<template> attributes are not allowed",
    '<input load="text">/etc/shadow</input>{{ x }}': "TTP <input> is not allowed",
    '<lookup name="l" load="python">x = 1</lookup>{{ x }}': "TTP <lookup> is not allowed",
    '<extend template="/etc/shadow"/>{{ x }}': "TTP <extend> is not allowed",
    '<doc>x</doc><group><group><vars>a = 1</vars></group></group>': "TTP <vars> is not",
    '<doc>{{ x | contains(__import__) }}</doc>{{ y }}': "must be plain values",
    '<!DOCTYPE t [<!ENTITY x SYSTEM "/etc/shadow">]><template>&x;{{ a }}</template>':
        "<!DOCTYPE> and <!ENTITY> are not allowed",
    "a < b {{ x }}": "TTP template is not valid",
}


@pytest.mark.parametrize(("template", "why"), HOSTILE.items(), ids=range(len(HOSTILE)))
def test_templates_that_run_code_or_read_files_are_refused(
        tmp_path: Path, template: str, why: str) -> None:
    assert why in (ttpguard.problem(template) or "")
    with pytest.raises(ParseFailed, match="TTP"):
        ttp_parse("a", template, tmp_path)
